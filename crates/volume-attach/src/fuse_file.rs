//! The NBD export served to the kernel as one regular file, `<mountpoint>/disk`, through FUSE,
//! so loop devices can sit on it where the kernel has no NBD client.
//!
//! Reads and writes go straight to the NBD client (FUSE without writeback caching is
//! write-through), `fsync` becomes NBD FLUSH. Mounting needs root (it uses mount(2) directly,
//! no `fusermount3`). Nothing but root can open the file.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use parking_lot::Mutex;

use super::nbd_client::{NbdClient, NbdError};

/// The name of the one file.
pub const FILE_NAME: &str = "disk";
const FILE_INO: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(3600);

/// The NBD client, shared so it can be disconnected after the FUSE session ends.
pub type SharedClient = Arc<Mutex<Option<NbdClient>>>;

struct DiskFs {
    client: SharedClient,
    size: u64,
    read_only: bool,
    created: SystemTime,
}

fn errno_of(e: &NbdError) -> Errno {
    tracing::warn!("NBD disk file: {e}");
    Errno::from_i32(e.errno())
}

impl DiskFs {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let dir = ino == INodeNo::ROOT;
        FileAttr {
            ino,
            size: if dir { 0 } else { self.size },
            blocks: if dir { 0 } else { self.size.div_ceil(512) },
            atime: self.created,
            mtime: self.created,
            ctime: self.created,
            crtime: self.created,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir {
                0o700
            } else if self.read_only {
                0o400
            } else {
                0o600
            },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut NbdClient) -> Result<T, NbdError>,
    ) -> Result<T, Errno> {
        let mut g = self.client.lock();
        let c = g.as_mut().ok_or(Errno::EIO)?;
        f(c).map_err(|e| errno_of(&e))
    }
}

impl Filesystem for DiskFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == FILE_INO {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The disk's size is the export's; only a no-op truncate (O_TRUNC checks) passes.
        if size.is_some_and(|s| s != self.size) {
            reply.error(Errno::EPERM);
        } else {
            reply.attr(&TTL, &self.attr(ino));
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE_INO {
            reply.error(Errno::EISDIR);
        } else if self.read_only && flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = u64::from(size).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0; len];
        match self.with_client(|c| c.read_at(&mut buf, offset)) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            reply.error(Errno::ENOSPC);
            return;
        }
        match self.with_client(|c| c.write_at(data, offset)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    /// ENOSYS makes the kernel stop sending FLUSH on close for good. It must: when this
    /// process dies, closing its own handle on the disk file would otherwise wait forever for
    /// a FLUSH reply from the server thread that is already gone.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.with_client(NbdClient::flush) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted disk file; unmount with [`FuseDisk::unmount`] (dropping it unmounts too).
pub struct FuseDisk {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for FuseDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseDisk")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl FuseDisk {
    /// Mounts the export the client has open at `mountpoint` (an empty directory).
    pub fn mount(client: SharedClient, mountpoint: &Path) -> io::Result<FuseDisk> {
        let (size, read_only) = {
            let g = client.lock();
            let c = g
                .as_ref()
                .ok_or_else(|| io::Error::other("NBD client gone"))?;
            (c.size(), c.read_only())
        };
        let fs = DiskFs {
            client,
            size,
            read_only,
            created: SystemTime::now(),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("streamer-nbd".into()),
            MountOption::Subtype("streamer".into()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoExec,
            if read_only {
                MountOption::RO
            } else {
                MountOption::RW
            },
        ];
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        let disk = FuseDisk {
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
        };
        // One open and close, so the kernel learns now that FLUSH is not implemented.
        drop(std::fs::File::open(mountpoint.join(FILE_NAME))?);
        Ok(disk)
    }

    /// Unmounts and waits for the server thread. A loop device the kernel is still releasing
    /// (auto-clear is asynchronous) keeps the file busy for a moment: that is waited for, up to
    /// two seconds. If the file is still in use then, it is detached lazily and the thread is
    /// left to end on its own.
    pub fn unmount(mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let mut result = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty());
        for _ in 0..50 {
            if result != Err(nix::errno::Errno::EBUSY) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(40));
            result = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty());
        }
        match result {
            Ok(()) => session.join(),
            Err(e) => {
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                // Dropping the session would unmount again; forget it with its thread.
                std::mem::forget(session);
                Err(io::Error::other(format!(
                    "FUSE disk file at {} was busy ({e}); detached it lazily",
                    self.mountpoint.display()
                )))
            }
        }
    }
}

impl Drop for FuseDisk {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            drop(session);
        }
    }
}
