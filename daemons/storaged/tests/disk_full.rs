//! A full data directory: the daemon on a 48 MiB tmpfs answers ENOSPC to the writer that
//! filled it, keeps every other volume intact, keeps serving, and frees the space when the
//! volume is deleted. Needs root (to mount the tmpfs); skips with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use nbd_wire::ENOSPC;

/// A tmpfs mounted for the test; unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at));
        if !out.status.success() {
            eprintln!("SKIPPED: cannot mount a tmpfs here");
            return None;
        }
        Some(Self(at.to_path_buf()))
    }

    fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).unwrap();
        s.blocks_available() * s.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a process still holding a file cannot keep the mount alive.
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn enospc_reaches_the_client_and_the_store_survives() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&tmp.path().join("mnt"), "48m") else {
        return;
    };
    // Declared after the mount, so the daemon is killed before the unmount.
    let d = Daemon::start_in(tmp.path(), &fs.0.join("data"));
    d.create("big", "1G");
    d.create("small", "1M");
    d.export("big");
    d.export("small");
    let mut small = vec![0u8; MIB as usize];
    Rng::new(1).fill(&mut small);
    let mut c = d.nbd("small");
    c.write(0, &small).unwrap();
    c.flush().unwrap();
    c.disconnect();

    // Fill the file system through the big volume.
    let mut c = d.nbd("big");
    let mut rng = Rng::new(2);
    let mut chunk = vec![0u8; MIB as usize];
    let mut written = 0u64;
    let enospc = loop {
        rng.fill(&mut chunk);
        match c.write(written, &chunk) {
            Ok(()) => written += MIB,
            Err(NbdError::Errno(ENOSPC)) => break true,
            Err(e) => panic!("write at {written}: expected ENOSPC, got {e}"),
        }
        if written >= 128 * MIB {
            break false;
        }
    };
    assert!(
        enospc,
        "wrote {written} bytes to a 48 MiB file system without ENOSPC"
    );
    assert!(
        (32 * MIB..48 * MIB).contains(&written),
        "ENOSPC after {written} bytes"
    );
    // The connection is still usable after the error.
    assert_eq!(c.read(0, 4096).unwrap(), {
        let mut first = vec![0u8; MIB as usize];
        Rng::new(2).fill(&mut first);
        first.truncate(4096);
        first
    });
    c.disconnect();
    if tool("qemu-io").is_some() {
        let out = run(Command::new("qemu-io")
            .args(["-f", "raw", "-c", "write -P 0x33 900M 1M"])
            .arg(d.uri("big")));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("No space left on device"),
            "qemu-io did not see ENOSPC: {text}"
        );
    }

    // The other volume is intact and the daemon still serves.
    let mut c = d.nbd("small");
    assert_eq!(sha256(&c.read(0, small.len()).unwrap()), sha256(&small));
    c.disconnect();
    assert_eq!(d.names().len(), 2);
    d.verify_clean();

    // Deleting the big volume gives the space back; then writes succeed again.
    let free_full = fs.free_bytes();
    d.ok(&["volume", "delete", "big"]);
    let free_after = fs.free_bytes();
    assert!(
        free_after >= free_full + 32 * MIB,
        "delete freed {} bytes",
        free_after - free_full
    );
    let mut c = d.nbd("small");
    c.write(0, &[9; 65536]).unwrap();
    c.flush().unwrap();
    c.disconnect();
    d.verify_clean();
}
