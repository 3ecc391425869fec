//! A kernel-mounted guest filesystem, every access confined to it.
//!
//! All paths are resolved with `openat2(..., RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a
//! descriptor of the mount's root: symbolic links, absolute or relative, resolve inside the
//! guest as they would after a `chroot`, and `..` cannot leave it. Operations on a final
//! component (unlink, mkdir, symlink, link) act through the descriptor of its parent directory,
//! so a symlink in the final position is never followed out of the guest.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fchmod, fstatat, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};

use super::{GuestError, GuestFs, Statvfs, normalize};

/// A confined view of a mounted guest filesystem.
#[derive(Debug)]
pub struct DirFs {
    root: OwnedFd,
    host: PathBuf,
    /// Owner given to what this view creates.
    owner: Option<(u32, u32)>,
}

fn how(flags: OFlag, mode: Mode) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn rel(path: &str) -> String {
    let parts = normalize(path);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

fn split(path: &str) -> Result<(String, String), GuestError> {
    let mut parts = normalize(path);
    let name = parts
        .pop()
        .ok_or_else(|| GuestError::Other(format!("{path}: not allowed on the root directory")))?;
    let parent = if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    };
    Ok((parent, name))
}

impl DirFs {
    /// Confines access to the filesystem mounted at `host`.
    pub fn open(host: &Path) -> Result<Self, GuestError> {
        let root = nix::fcntl::open(
            host,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| GuestError::io(&host.display().to_string())(e.into()))?;
        Ok(Self {
            root,
            host: host.to_path_buf(),
            owner: None,
        })
    }

    /// The same view, giving what it creates to `uid`:`gid`.
    pub fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    fn own(&self, path: &str) -> Result<(), GuestError> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let (dir, name) = self.parent(path)?;
        nix::unistd::fchownat(
            dir.as_fd(),
            name.as_str(),
            Some(uid.into()),
            Some(gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| GuestError::io(path)(e.into()))
    }

    /// The host path of directory `path` of the guest, resolved inside the guest (so a
    /// symlinked mount point cannot lead outside it).
    pub fn resolve_dir(&self, path: &str) -> Result<PathBuf, GuestError> {
        let fd = self.open_at(path, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        std::fs::read_link(&link).map_err(GuestError::io(path))
    }

    fn open_at(&self, path: &str, flags: OFlag, mode: Mode) -> Result<OwnedFd, GuestError> {
        openat2(self.root.as_fd(), rel(path).as_str(), how(flags, mode))
            .map_err(|e| GuestError::io(path)(e.into()))
    }

    fn parent(&self, path: &str) -> Result<(OwnedFd, String), GuestError> {
        let (parent, name) = split(path)?;
        let fd = self.open_at(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
        Ok((fd, name))
    }

    fn remove_tree(&self, dir: &OwnedFd, name: &str, path: &str) -> Result<(), GuestError> {
        let st = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| GuestError::io(path)(e.into()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let child = openat2(
                dir.as_fd(),
                name,
                OpenHow::new()
                    .flags(
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    )
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
            )
            .map_err(|e| GuestError::io(path)(e.into()))?;
            for entry in entries(&child, path)? {
                self.remove_tree(&child, &entry, &format!("{path}/{entry}"))?;
            }
            unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
                .map_err(|e| GuestError::io(path)(e.into()))
        } else {
            unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| GuestError::io(path)(e.into()))
        }
    }
}

/// Names in an open directory, sorted, without `.` and `..`.
fn entries(dir: &OwnedFd, path: &str) -> Result<Vec<String>, GuestError> {
    let fd = nix::unistd::dup(dir.as_fd()).map_err(|e| GuestError::io(path)(e.into()))?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| GuestError::io(path)(e.into()))?;
    let mut names: Vec<String> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

impl GuestFs for DirFs {
    fn read(&mut self, path: &str) -> Result<Vec<u8>, GuestError> {
        let fd = self.open_at(path, OFlag::O_RDONLY, Mode::empty())?;
        let mut data = Vec::new();
        File::from(fd)
            .read_to_end(&mut data)
            .map_err(GuestError::io(path))?;
        Ok(data)
    }

    fn write(&mut self, path: &str, data: &[u8], append: bool) -> Result<(), GuestError> {
        split(path)?;
        let mode = if append {
            OFlag::O_APPEND
        } else {
            OFlag::O_TRUNC
        };
        let fd = self.open_at(
            path,
            OFlag::O_WRONLY | OFlag::O_CREAT | mode,
            Mode::from_bits_truncate(0o644),
        )?;
        File::from(fd)
            .write_all(data)
            .map_err(GuestError::io(path))?;
        self.own(path)
    }

    fn mkdir(&mut self, path: &str) -> Result<(), GuestError> {
        let (dir, name) = self.parent(path)?;
        mkdirat(dir.as_fd(), name.as_str(), Mode::from_bits_truncate(0o755))
            .map_err(|e| GuestError::io(path)(e.into()))?;
        self.own(path)
    }

    fn remove(&mut self, path: &str, recursive: bool) -> Result<(), GuestError> {
        let (dir, name) = self.parent(path)?;
        if recursive {
            return self.remove_tree(&dir, &name, path);
        }
        match unlinkat(dir.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir) {
            Err(nix::errno::Errno::EISDIR) => {
                unlinkat(dir.as_fd(), name.as_str(), UnlinkatFlags::RemoveDir)
            }
            other => other,
        }
        .map_err(|e| GuestError::io(path)(e.into()))
    }

    fn chmod(&mut self, mode: u32, path: &str) -> Result<(), GuestError> {
        // fchmod on a descriptor opened inside the root: fchmodat would follow a final
        // symlink with the host's view of absolute paths.
        let fd = self
            .open_at(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())
            .or_else(|_| self.open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()))?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| GuestError::io(path)(e.into()))
    }

    fn list(&mut self, path: &str) -> Result<Vec<String>, GuestError> {
        let fd = self.open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
        entries(&fd, path)
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), GuestError> {
        let (dir, name) = self.parent(link)?;
        symlinkat(target, dir.as_fd(), name.as_str()).map_err(|e| GuestError::io(link)(e.into()))
    }

    fn hardlink(&mut self, target: &str, link: &str) -> Result<(), GuestError> {
        let (tdir, tname) = self.parent(target)?;
        let (ldir, lname) = self.parent(link)?;
        linkat(
            tdir.as_fd(),
            tname.as_str(),
            ldir.as_fd(),
            lname.as_str(),
            AtFlags::empty(),
        )
        .map_err(|e| GuestError::io(link)(e.into()))
    }

    fn touch(&mut self, path: &str) -> Result<(), GuestError> {
        split(path)?;
        let fd = self.open_at(
            path,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(0o644),
        )?;
        nix::sys::stat::futimens(fd.as_fd(), &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW)
            .map_err(|e| GuestError::io(path)(e.into()))
    }

    fn kind(&mut self, path: &str) -> Result<Option<bool>, GuestError> {
        if normalize(path).is_empty() {
            return Ok(Some(true));
        }
        let (dir, name) = match self.parent(path) {
            Ok(p) => p,
            Err(GuestError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
            )),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(GuestError::io(path)(e.into())),
        }
    }

    fn copy(&mut self, src: &str, dst: &str) -> Result<(), GuestError> {
        let (sdir, sname) = self.parent(src)?;
        let (ddir, dname) = self.parent(dst)?;
        copy_tree(&sdir, &sname, &ddir, &dname, src)
    }

    fn rename(&mut self, src: &str, dst: &str) -> Result<(), GuestError> {
        let (sdir, sname) = self.parent(src)?;
        let (ddir, dname) = self.parent(dst)?;
        nix::fcntl::renameat(sdir.as_fd(), sname.as_str(), ddir.as_fd(), dname.as_str())
            .map_err(|e| GuestError::io(src)(e.into()))
    }

    fn statvfs(&mut self) -> Result<Statvfs, GuestError> {
        let s = nix::sys::statvfs::fstatvfs(self.root.as_fd())
            .map_err(|e| GuestError::io("/")(e.into()))?;
        Ok(Statvfs {
            bsize: s.block_size(),
            frsize: s.fragment_size(),
            blocks: s.blocks(),
            bfree: s.blocks_free(),
            bavail: s.blocks_available(),
            files: s.files(),
            ffree: s.files_free(),
            favail: s.files_available(),
            fsid: s.filesystem_id(),
            flag: s.flags().bits(),
            namemax: s.name_max(),
        })
    }

    fn host_root(&self) -> Option<&Path> {
        Some(&self.host)
    }
}

/// `cp -a` of `sname` in `sdir` to `dname` in `ddir`, never following symlinks.
fn copy_tree(
    sdir: &OwnedFd,
    sname: &str,
    ddir: &OwnedFd,
    dname: &str,
    path: &str,
) -> Result<(), GuestError> {
    let err = |e: nix::errno::Errno| GuestError::io(path)(e.into());
    let st = fstatat(sdir.as_fd(), sname, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(err)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let beneath = |flags: OFlag| {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
    };
    if kind == SFlag::S_IFLNK {
        let target = nix::fcntl::readlinkat(sdir.as_fd(), sname).map_err(err)?;
        symlinkat(target.as_os_str(), ddir.as_fd(), dname).map_err(err)?;
    } else if kind == SFlag::S_IFDIR {
        match mkdirat(ddir.as_fd(), dname, mode) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(err(e)),
        }
        let s = openat2(
            sdir.as_fd(),
            sname,
            beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        )
        .map_err(err)?;
        let d = openat2(
            ddir.as_fd(),
            dname,
            beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        )
        .map_err(err)?;
        for e in entries(&s, path)? {
            copy_tree(&s, &e, &d, &e, &format!("{path}/{e}"))?;
        }
        fchmod(d.as_fd(), mode).map_err(err)?;
    } else if kind == SFlag::S_IFREG {
        let s = openat2(sdir.as_fd(), sname, beneath(OFlag::O_RDONLY)).map_err(err)?;
        let d = openat2(
            ddir.as_fd(),
            dname,
            beneath(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC).mode(mode),
        )
        .map_err(err)?;
        let (mut s, mut d) = (File::from(s), File::from(d));
        std::io::copy(&mut s, &mut d).map_err(GuestError::io(path))?;
        fchmod(d.as_fd(), mode).map_err(err)?;
    } else {
        return Err(GuestError::Unsupported(format!(
            "{path}: cp-a copies files, directories and symlinks only"
        )));
    }
    // Owner and times, as cp -a keeps them (best effort for the owner: needs root).
    let _ = nix::unistd::fchownat(
        ddir.as_fd(),
        dname,
        Some(st.st_uid.into()),
        Some(st.st_gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    let _ = utimensat(
        ddir.as_fd(),
        dname,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dot_dot_stay_inside_the_guest() {
        let host = tempfile::tempdir().unwrap();
        let guest = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), b"host secret").unwrap();
        let mut fs = DirFs::open(guest.path()).unwrap();
        fs.mkdir("etc").unwrap();
        fs.write("etc/hostname", b"web01\n", false).unwrap();
        // An absolute symlink pointing at the host's secret resolves inside the guest.
        let outside = host.path().join("secret");
        fs.symlink(outside.to_str().unwrap(), "etc/link").unwrap();
        assert!(fs.read("etc/link").is_err());
        // Writing through it creates nothing on the host.
        let _ = fs.write("etc/link", b"pwned", false);
        assert_eq!(std::fs::read(&outside).unwrap(), b"host secret");
        // `..` is clamped: this is the guest's /etc/hostname.
        assert_eq!(fs.read("../../../etc/hostname").unwrap(), b"web01\n");
        // A symlinked directory to / is the guest's /.
        fs.symlink("/", "root").unwrap();
        assert_eq!(fs.read("root/etc/hostname").unwrap(), b"web01\n");
        fs.symlink("../../../../../../", "up").unwrap();
        assert!(fs.list("up").unwrap().contains(&"etc".to_string()));
        // chmod through a symlink to an absolute host path cannot reach the host file.
        let _ = fs.chmod(0o777, "etc/link");
        use std::os::unix::fs::PermissionsExt;
        assert_ne!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o777
        );
    }

    #[test]
    fn tree_operations() {
        let guest = tempfile::tempdir().unwrap();
        let mut fs = DirFs::open(guest.path()).unwrap();
        fs.mkdir("a").unwrap();
        fs.mkdir("a/b").unwrap();
        fs.write("a/b/f", b"1", false).unwrap();
        fs.write("a/b/f", b"2", true).unwrap();
        fs.symlink("f", "a/b/l").unwrap();
        fs.chmod(0o750, "a/b/f").unwrap();
        fs.copy("a", "c").unwrap();
        assert_eq!(fs.read("c/b/f").unwrap(), b"12");
        assert_eq!(fs.read("c/b/l").unwrap(), b"12");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(guest.path().join("c/b/f"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o750
        );
        assert_eq!(fs.list("c/b").unwrap(), vec!["f", "l"]);
        assert_eq!(fs.kind("c/b").unwrap(), Some(true));
        assert_eq!(fs.kind("c/b/l").unwrap(), Some(false));
        assert_eq!(fs.kind("nope").unwrap(), None);
        fs.touch("t").unwrap();
        fs.hardlink("t", "t2").unwrap();
        fs.rename("t2", "t3").unwrap();
        assert!(fs.remove("a", false).is_err());
        fs.remove("a", true).unwrap();
        assert_eq!(fs.kind("a").unwrap(), None);
        assert!(fs.statvfs().unwrap().blocks > 0);
        assert!(fs.remove("/", true).is_err());
    }
}
