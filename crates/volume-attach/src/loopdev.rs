//! Loop devices: one per partition or logical volume, each a window (offset + size limit) on
//! the disk file, because partition scanning is off on our hosts (`max_part=0`).
//!
//! This is the only module of `attach` that calls `ioctl`. Every device is configured with
//! `LO_FLAGS_AUTOCLEAR`, so the kernel frees it when its last user goes away, even if this
//! process dies without cleaning up.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

// <linux/loop.h>
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// How many times a free device is looked for when another process takes it first.
const ATTEMPTS: usize = 32;

/// A loop device this process configured; it stays bound while this value (its open file)
/// lives or while something has it mounted.
#[derive(Debug)]
pub struct LoopDevice {
    file: File,
    path: PathBuf,
}

impl LoopDevice {
    /// Binds a free loop device to `len` bytes of `backing` starting at `offset`.
    pub fn attach(
        backing: &File,
        backing_path: &Path,
        offset: u64,
        len: u64,
        read_only: bool,
    ) -> io::Result<LoopDevice> {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/loop-control")?;
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: offset,
            lo_sizelimit: len,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 },
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        };
        let name = backing_path.as_os_str().as_encoded_bytes();
        let n = name.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..n].copy_from_slice(&name[..n]);
        let mut last = io::Error::other("no free loop device");
        for _ in 0..ATTEMPTS {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns a number.
            let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let file = OpenOptions::new()
                .read(true)
                .write(!read_only)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)?;
            match configure(&file, backing, &info) {
                Ok(()) => return Ok(LoopDevice { file, path }),
                // Another process bound the device between GET_FREE and CONFIGURE.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the device's cached blocks to the backing file and flushes that file.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Unbinds the device now (or, if it is still mounted, when the last user closes it).
    pub fn detach(self) -> io::Result<()> {
        clear_fd(&self.file)
    }
}

fn configure(dev: &File, backing: &File, info: &LoopInfo64) -> io::Result<()> {
    let cfg = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: *info,
        reserved: [0; 8],
    };
    // SAFETY: `cfg` is a fully initialised `struct loop_config` that outlives the call; the
    // kernel only reads it.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &cfg as *const LoopConfig,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) {
        return Err(e);
    }
    // Kernels before 5.8 have no LOOP_CONFIGURE.
    // SAFETY: LOOP_SET_FD takes a file descriptor by value.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `info` is a fully initialised `struct loop_info64`; the kernel only reads it.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            info as *const LoopInfo64,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        let _ = clear_fd(dev);
        return Err(e);
    }
    Ok(())
}

fn clear_fd(dev: &File) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) };
    if r != 0 {
        let e = io::Error::last_os_error();
        // ENXIO: already unbound (autoclear got there first).
        if e.raw_os_error() != Some(libc::ENXIO) {
            return Err(e);
        }
    }
    Ok(())
}

/// Unbinds the loop device at `path` (a leftover of a crashed process).
pub fn clear(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    clear_fd(&f)
}

/// Every bound loop device with its backing file, from sysfs.
pub fn bound() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            out.push((
                PathBuf::from(format!("/dev/{name}")),
                PathBuf::from(b.trim_end_matches('\n')),
            ));
        }
    }
    out.sort();
    out
}
