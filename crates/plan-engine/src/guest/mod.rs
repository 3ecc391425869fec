//! The guest's filesystems as plan-script commands see them.
//!
//! A guest path (`/etc/hostname`) is routed by the mount table to a [`GuestFs`]: a
//! kernel-mounted filesystem confined with `openat2(RESOLVE_IN_ROOT)` ([`dir::DirFs`]), or a
//! FAT filesystem read and written in user space ([`fat::FatFs`]) where the kernel has no vfat.
//! Paths are normalized lexically first: `..` never climbs above `/`.
//!
//! Data is read and written only in regular files: a FIFO, socket or device in the guest (or
//! in the scratch directory) is refused with an error naming it, and never opened in a way
//! that could block. Whole-file reads are bounded ([`GuestFs::read`]'s `max`); copies stream.
//! Trees are walked at most [`MAX_DEPTH`] deep, directories listed up to [`MAX_ENTRIES`].

pub mod dir;
pub mod fat;

use std::io::{self, Read};

/// How deep a tree operation (`rm-rf`, `cp-a`, `copy-in`, `copy-out`) descends.
pub const MAX_DEPTH: usize = 256;

/// The most entries one directory listing returns.
pub const MAX_ENTRIES: usize = 200_000;

/// A failure of a guest operation, in guestfish's words.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: is a {kind}, not a regular file; plan scripts read and write regular files only"
    )]
    NotRegular { path: String, kind: &'static str },
    #[error(
        "{path}: larger than {max} bytes, the most a command holds in memory (cat, download to -, \
         pipes, compress-out); copy it with download to a local file, copy-out or cp instead"
    )]
    TooLarge { path: String, max: u64 },
    #[error("{path}: nested more than {MAX_DEPTH} directories deep")]
    TooDeep { path: String },
    #[error("{path}: has more than {MAX_ENTRIES} entries")]
    TooManyEntries { path: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

impl GuestError {
    /// The same error with its path (relative to a filesystem's root) shown as the guest
    /// path under `mount_point` (`""` for `/`, else e.g. `/boot/efi`).
    pub fn under(self, mount_point: &str) -> Self {
        let full = |path: String| match (mount_point, path.as_str()) {
            ("", "") => "/".to_string(),
            (m, "") => m.to_string(),
            (m, p) => format!("{m}/{p}"),
        };
        match self {
            Self::Io { path, source } => Self::Io {
                path: full(path),
                source,
            },
            Self::NotRegular { path, kind } => Self::NotRegular {
                path: full(path),
                kind,
            },
            Self::TooLarge { path, max } => Self::TooLarge {
                path: full(path),
                max,
            },
            Self::TooDeep { path } => Self::TooDeep { path: full(path) },
            Self::TooManyEntries { path } => Self::TooManyEntries { path: full(path) },
            other => other,
        }
    }

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
    /// Opens a regular file for reading.
    fn open_read(&mut self, path: &str) -> Result<Box<dyn Read + '_>, GuestError>;
    /// Creates or truncates (or appends to) a regular file and fills it from `src`; returns
    /// the bytes written.
    fn write_from(
        &mut self,
        path: &str,
        src: &mut dyn Read,
        append: bool,
    ) -> Result<u64, GuestError>;
    /// A whole regular file of at most `max` bytes.
    fn read(&mut self, path: &str, max: u64) -> Result<Vec<u8>, GuestError> {
        let mut data = Vec::new();
        self.open_read(path)?
            .take(max.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(GuestError::io(path))?;
        if data.len() as u64 > max {
            return Err(GuestError::TooLarge {
                path: path.to_string(),
                max,
            });
        }
        Ok(data)
    }
    /// Creates or truncates (or appends to) a regular file with `data`.
    fn write(&mut self, path: &str, mut data: &[u8], append: bool) -> Result<(), GuestError> {
        self.write_from(path, &mut data, append).map(|_| ())
    }
    fn mkdir(&mut self, path: &str) -> Result<(), GuestError>;
    /// Removes a file, symlink or empty directory; with `recursive`, a whole tree.
    fn remove(&mut self, path: &str, recursive: bool) -> Result<(), GuestError>;
    fn chmod(&mut self, mode: u32, path: &str) -> Result<(), GuestError>;
    /// Entry names of a directory, sorted (at most [`MAX_ENTRIES`]).
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

/// The names a directory listing yields, without `.` and `..`; more than [`MAX_ENTRIES`] is
/// an error naming `path`.
pub fn bounded_names(
    path: &str,
    names: impl IntoIterator<Item = Result<String, GuestError>>,
) -> Result<Vec<String>, GuestError> {
    let mut kept = Vec::new();
    for name in names {
        let name = name?;
        if name == "." || name == ".." {
            continue;
        }
        if kept.len() == MAX_ENTRIES {
            return Err(GuestError::TooManyEntries {
                path: path.to_string(),
            });
        }
        kept.push(name);
    }
    Ok(kept)
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
