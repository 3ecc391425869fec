//! Moves the root filesystem out of the initramfs's rootfs into an ordinary tmpfs mount,
//! once, at the very start of PID 1.
//!
//! The kernel's rootfs cannot be `pivot_root`ed away from, and the plan-script sandbox
//! (deployd) builds each run's root with `pivot_root`. So init copies the unpacked
//! initramfs into a tmpfs (deleting each file from rootfs as it goes, so memory is not held
//! twice), moves that mount over `/`, `chroot`s into it and executes itself again, as
//! `switch_root` does. The new image of init knows it from [`REROOTED_ENV`].

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Set in the environment of the re-executed init.
pub const REROOTED_ENV: &str = "STREAMER_REROOTED";
/// Where the tmpfs is mounted while the files move.
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

/// Moves every entry of `from` (except `skip`, a direct child) into `to`: directories are
/// recreated, files copied then removed, symlinks and device nodes recreated; modes and
/// owners are kept.
pub fn move_tree(from: &Path, to: &Path, skip: Option<&Path>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        if Some(src.as_path()) == skip {
            continue;
        }
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            move_tree(&src, &dst, None)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode()))?;
            let _ = std::fs::remove_dir(&src);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            std::fs::remove_file(&src)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
            std::fs::remove_file(&src)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let c = CString::new(dst.as_os_str().as_bytes())?;
            // SAFETY: mknod with a valid path and the source's own mode and device number.
            if unsafe { libc::mknod(c.as_ptr(), meta.mode(), meta.rdev()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::fs::remove_file(&src)?;
        } else {
            continue;
        }
        let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// Copies the root into a tmpfs, makes it `/` and executes init again. Returns only on
/// failure (then boot goes on from rootfs, with the sandbox unable to run plan scripts).
pub fn reroot() -> std::io::Error {
    match try_reroot() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_reroot() -> std::io::Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt;
    let staging = Path::new(STAGING);
    std::fs::create_dir_all(staging)?;
    crate::sys::mount("tmpfs", STAGING, "tmpfs", 0, Some("mode=0755"))?;
    move_tree(Path::new("/"), staging, Some(staging))?;
    std::env::set_current_dir(staging)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn move_tree_moves_files_links_and_modes_and_skips_the_staging_dir() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let f = from.path();
        std::fs::create_dir_all(f.join("usr/bin")).unwrap();
        std::fs::write(f.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            f.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/bin", f.join("bin")).unwrap();
        std::fs::create_dir(f.join("tmp")).unwrap();
        std::fs::set_permissions(f.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::create_dir(f.join("stage")).unwrap();
        std::fs::write(f.join("stage/keep"), "x").unwrap();

        move_tree(f, to.path(), Some(&f.join("stage"))).unwrap();
        let t = to.path();
        assert_eq!(
            std::fs::read_to_string(t.join("usr/bin/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        assert_eq!(
            std::fs::metadata(t.join("usr/bin/tool")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(t.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::metadata(t.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert!(!t.join("stage").exists());
        // The source is emptied as it goes, except what was skipped.
        assert!(!f.join("usr").exists() && !f.join("bin").exists());
        assert!(f.join("stage/keep").exists());
    }
}
