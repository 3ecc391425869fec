//! Gives PID 1 a root that is a mount point with a parent, once, at the very start.
//!
//! The kernel's rootfs (where the initramfs is unpacked) has no parent mount, so nothing
//! running on it can `pivot_root`, and the plan-script sandbox (deployd) builds each run's
//! root with `pivot_root`. Init bind-mounts `/` onto a directory of itself, moves that bind
//! mount over `/`, `chroot`s into it and executes itself again: the new root is the same
//! files (nothing is copied), but it is a mount stacked on rootfs, so `pivot_root` works
//! below it. The new image of init knows it from [`REROOTED_ENV`].

use std::ffi::CString;

/// Set in the environment of the re-executed init.
pub const REROOTED_ENV: &str = "STREAMER_REROOTED";
/// Where the bind mount of the root is made before it moves over `/`.
const STAGING: &str = "/.newroot";

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// True when `/` is the kernel's initramfs root and this process has not moved it yet.
pub fn needed() -> bool {
    if std::env::var_os(REROOTED_ENV).is_some() {
        return false;
    }
    let Ok(root) = CString::new("/") else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into `st`; the path is a valid C string.
    if unsafe { libc::statfs(root.as_ptr(), &mut st) } != 0 {
        return false;
    }
    let t = st.f_type as i64;
    t == RAMFS_MAGIC || t == TMPFS_MAGIC
}

/// Makes a bind mount of the root the new `/` and executes init again. Returns only on
/// failure (then boot goes on from rootfs, with the sandbox unable to run plan scripts).
pub fn reroot() -> std::io::Error {
    match try_reroot() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_reroot() -> std::io::Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(STAGING)?;
    crate::sys::mount("/", STAGING, "", libc::MS_BIND, None)?;
    std::env::set_current_dir(STAGING)?;
    crate::sys::mount(".", "/", "", libc::MS_MOVE, None)?;
    let dot = c".";
    // SAFETY: chroot into the current directory (the new root), a valid C string.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    Err(std::process::Command::new("/init")
        .args(args)
        .env(REROOTED_ENV, "1")
        .exec())
}
