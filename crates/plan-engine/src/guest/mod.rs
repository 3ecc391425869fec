//! The guest's filesystems as plan-script commands see them.
//!
//! A guest path (`/etc/hostname`) is routed by the mount table to a [`GuestFs`]: a
//! kernel-mounted filesystem confined with `openat2(RESOLVE_IN_ROOT)` ([`dir::DirFs`]), or a
//! FAT filesystem read and written in user space ([`fat::FatFs`]) where the kernel has no vfat.
//! Paths are normalized lexically first: `..` never climbs above `/`.

pub mod dir;
pub mod fat;

use std::io;

/// A failure of a guest operation, in guestfish's words.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

impl GuestError {
    pub fn io(path: &str) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// What `statvfs` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statvfs {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

/// One mounted guest filesystem. Paths are relative to its root and already normalized
/// (no `.`, no `..`, no empty components; `""` is the root itself).
pub trait GuestFs: std::fmt::Debug {
    fn read(&mut self, path: &str) -> Result<Vec<u8>, GuestError>;
    /// Creates or truncates (or appends to) a regular file.
    fn write(&mut self, path: &str, data: &[u8], append: bool) -> Result<(), GuestError>;
    fn mkdir(&mut self, path: &str) -> Result<(), GuestError>;
    /// Removes a file, symlink or empty directory; with `recursive`, a whole tree.
    fn remove(&mut self, path: &str, recursive: bool) -> Result<(), GuestError>;
    fn chmod(&mut self, mode: u32, path: &str) -> Result<(), GuestError>;
    /// Entry names of a directory, sorted.
    fn list(&mut self, path: &str) -> Result<Vec<String>, GuestError>;
    fn symlink(&mut self, target: &str, link: &str) -> Result<(), GuestError>;
    fn hardlink(&mut self, target: &str, link: &str) -> Result<(), GuestError>;
    /// Creates an empty file or updates its times.
    fn touch(&mut self, path: &str) -> Result<(), GuestError>;
    /// `Some(true)` for a directory, `Some(false)` for anything else, `None` if absent.
    /// Does not follow a final symlink.
    fn kind(&mut self, path: &str) -> Result<Option<bool>, GuestError>;
    /// Copies a file or tree keeping modes, owners, times and symlinks (`cp -a`).
    fn copy(&mut self, src: &str, dst: &str) -> Result<(), GuestError>;
    fn rename(&mut self, src: &str, dst: &str) -> Result<(), GuestError>;
    fn statvfs(&mut self) -> Result<Statvfs, GuestError>;
    /// Where the kernel has this filesystem mounted, for `command` and `sh`.
    fn host_root(&self) -> Option<&std::path::Path>;
}

/// Normalizes a guest path: components without `.`, `..` clamped at the root.
pub fn normalize(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_is_clamped_at_the_root() {
        assert_eq!(normalize("/../../etc/./x//y/.."), vec!["etc", "x"]);
        assert!(normalize("/").is_empty());
        assert!(normalize("../..").is_empty());
    }
}
