//! A kernel-mounted guest filesystem, every access confined to it.
//!
//! All paths are resolved with `openat2(..., RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a
//! descriptor of the mount's root: symbolic links, absolute or relative, resolve inside the
//! guest as they would after a `chroot`, and `..` cannot leave it. Operations on a final
//! component (unlink, mkdir, symlink, link) act through the descriptor of its parent directory,
//! so a symlink in the final position is never followed out of the guest.
//!
//! Files whose data is read or written are checked to be regular files first (through an
//! `O_PATH` descriptor, which opens nothing), then opened `O_NONBLOCK | O_NOCTTY` and checked
//! again: a FIFO, socket or device planted by a script is refused by name and can never make
//! deployd wait for a peer that does not exist.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{
    FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstat, fstatat, mkdirat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};

use super::{GuestError, GuestFs, MAX_DEPTH, Statvfs, bounded_names, normalize};

/// What a file of this type is called in errors.
fn kind_name(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFIFO => "FIFO (named pipe)",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFLNK => "symbolic link",
        _ => "special file",
    }
}

fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// `Err(NotRegular)` unless `st` is a regular file.
fn regular(path: &str, st: &FileStat) -> Result<(), GuestError> {
    if is_regular(st) {
        Ok(())
    } else {
        Err(GuestError::NotRegular {
            path: path.to_string(),
            kind: kind_name(st),
        })
    }
}

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

    /// Opens regular file `path` with `flags` (see the module documentation): never a FIFO,
    /// socket or device, and never blocking.
    fn open_regular(&self, path: &str, flags: OFlag, mode: Mode) -> Result<File, GuestError> {
        let io = |e: nix::Error| GuestError::io(path)(e.into());
        // What is there now, opening nothing; absent is fine when creating.
        match self.open_at(path, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => regular(path, &fstat(fd.as_fd()).map_err(io)?)?,
            Err(GuestError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && flags.contains(OFlag::O_CREAT) => {}
            Err(e) => return Err(e),
        }
        let fd = self.open_at(path, flags | OFlag::O_NONBLOCK | OFlag::O_NOCTTY, mode)?;
        regular(path, &fstat(fd.as_fd()).map_err(io)?)?;
        Ok(File::from(fd))
    }

    fn parent(&self, path: &str) -> Result<(OwnedFd, String), GuestError> {
        let (parent, name) = split(path)?;
        let fd = self.open_at(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
        Ok((fd, name))
    }

    fn remove_tree(
        &self,
        dir: &OwnedFd,
        name: &str,
        path: &str,
        depth: usize,
    ) -> Result<(), GuestError> {
        let st = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| GuestError::io(path)(e.into()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            if depth >= MAX_DEPTH {
                return Err(GuestError::TooDeep {
                    path: path.to_string(),
                });
            }
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
                self.remove_tree(&child, &entry, &format!("{path}/{entry}"), depth + 1)?;
            }
            unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
                .map_err(|e| GuestError::io(path)(e.into()))
        } else {
            unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| GuestError::io(path)(e.into()))
        }
    }
}

/// Names in an open directory, sorted, without `.` and `..` (at most [`MAX_ENTRIES`]).
fn entries(dir: &OwnedFd, path: &str) -> Result<Vec<String>, GuestError> {
    let fd = nix::unistd::dup(dir.as_fd()).map_err(|e| GuestError::io(path)(e.into()))?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| GuestError::io(path)(e.into()))?;
    let listed = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| Ok(e.file_name().to_string_lossy().into_owned()));
    let mut names = bounded_names(path, listed)?;
    names.sort();
    Ok(names)
}

impl GuestFs for DirFs {
    fn open_read(&mut self, path: &str) -> Result<Box<dyn Read + '_>, GuestError> {
        let file = self.open_regular(path, OFlag::O_RDONLY, Mode::empty())?;
        Ok(Box::new(file))
    }

    fn write_from(
        &mut self,
        path: &str,
        src: &mut dyn Read,
        append: bool,
    ) -> Result<u64, GuestError> {
        split(path)?;
        let mode = if append {
            OFlag::O_APPEND
        } else {
            OFlag::O_TRUNC
        };
        let mut file = self.open_regular(
            path,
            OFlag::O_WRONLY | OFlag::O_CREAT | mode,
            Mode::from_bits_truncate(0o644),
        )?;
        let n = std::io::copy(src, &mut file).map_err(GuestError::io(path))?;
        self.own(path)?;
        Ok(n)
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
            return self.remove_tree(&dir, &name, path, 0);
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
        copy_tree(&sdir, &sname, &ddir, &dname, src, 0)
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
    depth: usize,
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
        if depth >= MAX_DEPTH {
            return Err(GuestError::TooDeep {
                path: path.to_string(),
            });
        }
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
            copy_tree(&s, &e, &d, &e, &format!("{path}/{e}"), depth + 1)?;
        }
        fchmod(d.as_fd(), mode).map_err(err)?;
    } else if kind == SFlag::S_IFREG {
        let nonblocking = OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let s =
            openat2(sdir.as_fd(), sname, beneath(OFlag::O_RDONLY | nonblocking)).map_err(err)?;
        regular(path, &fstat(s.as_fd()).map_err(err)?)?;
        let d = openat2(
            ddir.as_fd(),
            dname,
            beneath(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | nonblocking).mode(mode),
        )
        .map_err(err)?;
        regular(path, &fstat(d.as_fd()).map_err(err)?)?;
        let (mut s, mut d) = (File::from(s), File::from(d));
        std::io::copy(&mut s, &mut d).map_err(GuestError::io(path))?;
        fchmod(d.as_fd(), mode).map_err(err)?;
    } else {
        return Err(GuestError::NotRegular {
            path: path.to_string(),
            kind: kind_name(&st),
        });
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
        assert!(fs.read("etc/link", 1 << 20).is_err());
        // Writing through it creates nothing on the host.
        let _ = fs.write("etc/link", b"pwned", false);
        assert_eq!(std::fs::read(&outside).unwrap(), b"host secret");
        // `..` is clamped: this is the guest's /etc/hostname.
        assert_eq!(
            fs.read("../../../etc/hostname", 1 << 20).unwrap(),
            b"web01\n"
        );
        // A symlinked directory to / is the guest's /.
        fs.symlink("/", "root").unwrap();
        assert_eq!(fs.read("root/etc/hostname", 1 << 20).unwrap(), b"web01\n");
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
        assert_eq!(fs.read("c/b/f", 1 << 20).unwrap(), b"12");
        assert_eq!(fs.read("c/b/l", 1 << 20).unwrap(), b"12");
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

    #[test]
    fn fifos_sockets_and_devices_are_refused_without_blocking() {
        let guest = tempfile::tempdir().unwrap();
        let root = guest.path();
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let mut fs = DirFs::open(root).unwrap();
        fs.symlink("/fifo", "link").unwrap();
        for (name, kind) in [("fifo", "FIFO"), ("sock", "socket"), ("link", "FIFO")] {
            for result in [
                fs.read(name, 100).map(|_| ()),
                fs.write(name, b"x", false),
                fs.write(name, b"x", true),
            ] {
                let e = result.unwrap_err();
                assert!(matches!(e, GuestError::NotRegular { .. }), "{name}: {e}");
                assert!(
                    e.to_string().starts_with(&format!("{name}: is a {kind}")),
                    "{e}"
                );
            }
        }
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &root.join("null"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap();
            let e = fs.read("null", 100).unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
        }
        // A tree holding a FIFO is copied up to it, and the error names it.
        fs.mkdir("d").unwrap();
        nix::unistd::mkfifo(&root.join("d/pipe"), Mode::from_bits_truncate(0o644)).unwrap();
        let e = fs.copy("d", "e").unwrap_err();
        assert!(e.to_string().starts_with("d/pipe: is a FIFO"), "{e}");
        // Whole-file reads are bounded.
        fs.write("big", &[7u8; 1000], false).unwrap();
        assert!(matches!(
            fs.read("big", 999),
            Err(GuestError::TooLarge { max: 999, .. })
        ));
        assert_eq!(fs.read("big", 1000).unwrap().len(), 1000);
    }

    #[test]
    fn trees_deeper_than_the_limit_are_refused() {
        let guest = tempfile::tempdir().unwrap();
        let mut fs = DirFs::open(guest.path()).unwrap();
        let mut path = String::from("a");
        fs.mkdir(&path).unwrap();
        for _ in 0..MAX_DEPTH + 2 {
            path.push_str("/a");
            fs.mkdir(&path).unwrap();
        }
        assert!(matches!(fs.copy("a", "b"), Err(GuestError::TooDeep { .. })));
        assert!(matches!(
            fs.remove("a", true),
            Err(GuestError::TooDeep { .. })
        ));
    }
}
