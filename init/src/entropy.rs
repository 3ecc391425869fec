//! Entropy at boot. The daemons need the kernel's random generator ready (TLS keys,
//! session tokens, password salts): a library that polls /dev/random would otherwise wait
//! for ever on a virtual machine without a hardware generator. So init
//! 1. asks for random bytes with a blocking getrandom(2), which makes the kernel (5.18 and
//!    later) generate jitter entropy until its generator is initialised, and
//! 2. once the data partition is mounted, mixes in and credits the seed saved at the last
//!    boot (RNDADDENTROPY), then replaces it, so the next boot starts with fresh entropy
//!    and the same seed is never used twice.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the seed lives on the data partition.
pub const SEED_FILE: &str = "/data/random-seed";
/// Seed size in bytes (4096 bits, the kernel's pool size).
pub const SEED_BYTES: usize = 512;

/// RNDADDENTROPY = _IOW('R', 0x03, int[2]).
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;

/// Blocks until the kernel's generator is initialised; returns how long that took.
pub fn wait_for_crng() -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: `buf` is valid and writable for its length; flags 0 = block until ready.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(start.elapsed());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Fresh random bytes from the (initialised) kernel generator.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid and writable for its length.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        filled += r as usize;
    }
    Ok(buf)
}

/// The `struct rand_pool_info` RNDADDENTROPY takes: entropy bits, byte count, bytes.
pub fn pool_info(seed: &[u8], credit_bits: i32) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + seed.len());
    v.extend_from_slice(&credit_bits.to_ne_bytes());
    v.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
    v.extend_from_slice(seed);
    v
}

/// Mixes `seed` into the kernel's pool, crediting `credit_bits` of entropy (root only).
pub fn add_entropy(seed: &[u8], credit_bits: i32) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    let info = pool_info(seed, credit_bits);
    // SAFETY: `info` is a complete rand_pool_info of the length it declares, alive for the
    // call; the fd is open.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            RNDADDENTROPY,
            info.as_ptr(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes a new seed through a temporary file, fsync and rename: a crash leaves the old
/// seed or the new one, never a torn file.
pub fn save_seed(path: &Path) -> std::io::Result<()> {
    let seed = random_bytes(SEED_BYTES)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)?;
        f.write_all(&seed)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Credits the saved seed (if any). Returns what was done, for the log. The caller then
/// replaces it with [`save_seed`], so that no seed is credited twice.
pub fn credit_seed(path: &Path) -> std::io::Result<String> {
    match std::fs::read(path) {
        Ok(seed) if !seed.is_empty() => {
            let bits = i32::try_from(seed.len() * 8).unwrap_or(i32::MAX);
            add_entropy(&seed, bits)?;
            Ok(format!(
                "credited {} bytes from {}",
                seed.len(),
                path.display()
            ))
        }
        Ok(_) => Ok("seed file empty".to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("no seed yet".to_owned()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_info_layout() {
        let v = pool_info(&[1, 2, 3], 24);
        assert_eq!(&v[0..4], &24i32.to_ne_bytes());
        assert_eq!(&v[4..8], &3i32.to_ne_bytes());
        assert_eq!(&v[8..], &[1, 2, 3]);
    }

    #[test]
    fn seeds_are_replaced_and_never_reused() {
        wait_for_crng().unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("seed");
        save_seed(&p).unwrap();
        let first = std::fs::read(&p).unwrap();
        assert_eq!(first.len(), SEED_BYTES);
        save_seed(&p).unwrap();
        let second = std::fs::read(&p).unwrap();
        assert_ne!(first, second);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn crediting_a_seed_works_as_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: RNDADDENTROPY needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("seed");
        assert!(credit_seed(&p).unwrap().starts_with("no seed yet"));
        save_seed(&p).unwrap();
        std::fs::write(d.path().join("empty"), "").unwrap();
        assert_eq!(
            credit_seed(&d.path().join("empty")).unwrap(),
            "seed file empty"
        );
        assert!(credit_seed(&p).unwrap().starts_with("credited 512 bytes"));
    }
}
