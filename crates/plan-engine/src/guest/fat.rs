//! A FAT filesystem (UEFI system partitions, Windows "S:" partitions) read and written in user
//! space with the `fatfs` crate, for hosts whose kernel has no vfat (the developer machines).
//!
//! FAT has no owners, permission bits or links: `chmod` succeeds without effect (as the
//! kernel's vfat does with `quiet`), links are refused.
//!
//! A hostile image can make a cluster chain loop. Every operation may read at most twice
//! the partition's size (more means the structure loops), so none can run forever.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{GuestError, GuestFs, MAX_DEPTH, Statvfs, bounded_names, normalize};

/// A byte window of a disk file: the partition holding the filesystem.
#[derive(Debug)]
pub struct Partition {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
    /// Bytes read since the filesystem's current operation began.
    read: Arc<AtomicU64>,
}

impl Partition {
    pub fn new(file: File, start: u64, len: u64) -> Self {
        Self {
            file,
            start,
            len,
            pos: 0,
            read: Arc::default(),
        }
    }

    /// What one operation may read: more means a cluster chain loops.
    fn read_budget(&self) -> u64 {
        self.len.saturating_mul(2).saturating_add(1 << 20)
    }
}

impl Read for Partition {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.read.fetch_add(buf.len() as u64, Ordering::Relaxed) > self.read_budget() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the FAT filesystem's structure loops (one operation read more than twice its size)",
            ));
        }
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Partition {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "write beyond the end of the partition",
            ));
        }
        let put = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += put as u64;
        Ok(put)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Seek for Partition {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match pos {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

/// A mounted FAT filesystem.
pub struct FatFs {
    fs: fatfs::FileSystem<Partition>,
    /// The partition's count of bytes read, reset as each operation begins.
    read: Arc<AtomicU64>,
}

impl std::fmt::Debug for FatFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatFs")
            .field("type", &self.fs.fat_type())
            .finish()
    }
}

fn p(path: &str) -> String {
    normalize(path).join("/")
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> GuestError + '_ {
    GuestError::io(path)
}

impl FatFs {
    pub fn open(part: Partition) -> Result<Self, GuestError> {
        let read = Arc::clone(&part.read);
        let fs = fatfs::FileSystem::new(part, fatfs::FsOptions::new())
            .map_err(|e| GuestError::Other(format!("not a FAT filesystem: {e}")))?;
        Ok(Self { fs, read })
    }

    /// Starts an operation: its reads are counted from zero.
    fn begin(&self) {
        self.read.store(0, Ordering::Relaxed);
    }

    /// Names in directory `path` (without `.` and `..`), at most `MAX_ENTRIES`.
    fn names(&self, path: &str) -> Result<Vec<String>, GuestError> {
        let dir = self.fs.root_dir().open_dir(path).map_err(io_err(path))?;
        let listed = dir
            .iter()
            .map(|e| e.map(|e| e.file_name()).map_err(io_err(path)));
        bounded_names(path, listed)
    }

    /// Flushes and closes the filesystem.
    pub fn close(self) -> Result<(), GuestError> {
        self.fs.unmount().map_err(io_err("/"))
    }

    fn is_dir(&self, path: &str) -> Option<bool> {
        let path = p(path);
        if path.is_empty() {
            return Some(true);
        }
        let root = self.fs.root_dir();
        if root.open_dir(&path).is_ok() {
            Some(true)
        } else if root.open_file(&path).is_ok() {
            Some(false)
        } else {
            None
        }
    }

    fn remove_tree(&self, path: &str, depth: usize) -> Result<(), GuestError> {
        if self.is_dir(path) == Some(true) {
            if depth >= MAX_DEPTH {
                return Err(GuestError::TooDeep {
                    path: path.to_string(),
                });
            }
            for n in self.names(path)? {
                self.remove_tree(&format!("{path}/{n}"), depth + 1)?;
            }
        }
        self.fs.root_dir().remove(path).map_err(io_err(path))
    }

    fn copy_tree(&self, src: &str, dst: &str, depth: usize) -> Result<(), GuestError> {
        let root = self.fs.root_dir();
        if self.is_dir(src) == Some(true) {
            if depth >= MAX_DEPTH {
                return Err(GuestError::TooDeep {
                    path: src.to_string(),
                });
            }
            if self.is_dir(dst).is_none() {
                root.create_dir(dst).map_err(io_err(dst))?;
            }
            for n in self.names(src)? {
                self.copy_tree(&format!("{src}/{n}"), &format!("{dst}/{n}"), depth + 1)?;
            }
            Ok(())
        } else {
            let mut from = root.open_file(src).map_err(io_err(src))?;
            let mut to = root.create_file(dst).map_err(io_err(dst))?;
            to.truncate().map_err(io_err(dst))?;
            io::copy(&mut from, &mut to).map_err(io_err(dst))?;
            to.flush().map_err(io_err(dst))
        }
    }
}

impl GuestFs for FatFs {
    fn open_read(&mut self, path: &str) -> Result<Box<dyn Read + '_>, GuestError> {
        self.begin();
        let file = self
            .fs
            .root_dir()
            .open_file(&p(path))
            .map_err(io_err(path))?;
        Ok(Box::new(file))
    }

    fn write_from(
        &mut self,
        path: &str,
        src: &mut dyn Read,
        append: bool,
    ) -> Result<u64, GuestError> {
        let mut f = self
            .fs
            .root_dir()
            .create_file(&p(path))
            .map_err(io_err(path))?;
        if append {
            f.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        } else {
            f.truncate().map_err(io_err(path))?;
        }
        let n = io::copy(src, &mut f).map_err(io_err(path))?;
        f.flush().map_err(io_err(path))?;
        Ok(n)
    }

    fn mkdir(&mut self, path: &str) -> Result<(), GuestError> {
        self.begin();
        if self.is_dir(path).is_some() {
            return Err(GuestError::io(path)(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )));
        }
        self.fs
            .root_dir()
            .create_dir(&p(path))
            .map(|_| ())
            .map_err(io_err(path))
    }

    fn remove(&mut self, path: &str, recursive: bool) -> Result<(), GuestError> {
        self.begin();
        let path = p(path);
        if path.is_empty() {
            return Err(GuestError::Other(
                "/: not allowed on the root directory".into(),
            ));
        }
        if recursive {
            self.remove_tree(&path, 0)
        } else {
            self.fs.root_dir().remove(&path).map_err(io_err(&path))
        }
    }

    fn chmod(&mut self, _mode: u32, path: &str) -> Result<(), GuestError> {
        self.begin();
        self.is_dir(path)
            .map(|_| ())
            .ok_or_else(|| GuestError::io(path)(io::Error::from(io::ErrorKind::NotFound)))
    }

    fn list(&mut self, path: &str) -> Result<Vec<String>, GuestError> {
        self.begin();
        let mut names = self.names(&p(path))?;
        names.sort();
        Ok(names)
    }

    fn symlink(&mut self, _target: &str, link: &str) -> Result<(), GuestError> {
        self.begin();
        Err(GuestError::Unsupported(format!(
            "{link}: FAT filesystems have no symbolic links"
        )))
    }

    fn hardlink(&mut self, _target: &str, link: &str) -> Result<(), GuestError> {
        self.begin();
        Err(GuestError::Unsupported(format!(
            "{link}: FAT filesystems have no hard links"
        )))
    }

    fn touch(&mut self, path: &str) -> Result<(), GuestError> {
        self.begin();
        if self.is_dir(path).is_none() {
            self.fs
                .root_dir()
                .create_file(&p(path))
                .map_err(io_err(path))?;
        }
        Ok(())
    }

    fn kind(&mut self, path: &str) -> Result<Option<bool>, GuestError> {
        self.begin();
        Ok(self.is_dir(path))
    }

    fn copy(&mut self, src: &str, dst: &str) -> Result<(), GuestError> {
        self.begin();
        self.copy_tree(&p(src), &p(dst), 0)
    }

    fn rename(&mut self, src: &str, dst: &str) -> Result<(), GuestError> {
        self.begin();
        let root = self.fs.root_dir();
        root.rename(&p(src), &root, &p(dst)).map_err(io_err(src))
    }

    fn statvfs(&mut self) -> Result<Statvfs, GuestError> {
        self.begin();
        let s = self.fs.stats().map_err(io_err("/"))?;
        let cluster = u64::from(s.cluster_size());
        Ok(Statvfs {
            bsize: cluster,
            frsize: cluster,
            blocks: u64::from(s.total_clusters()),
            bfree: u64::from(s.free_clusters()),
            bavail: u64::from(s.free_clusters()),
            namemax: 255,
            ..Statvfs::default()
        })
    }

    fn host_root(&self) -> Option<&std::path::Path> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FAT32 image made by `mkfs.vfat` (dosfstools), or `None` with a printed reason.
    fn image(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let path = dir.join("esp.img");
        File::create(&path).unwrap().set_len(64 << 20).unwrap();
        match std::process::Command::new("mkfs.vfat")
            .args(["-F", "32"])
            .arg(&path)
            .output()
        {
            Ok(o) if o.status.success() => Some(path),
            _ => {
                eprintln!("SKIPPED: mkfs.vfat (dosfstools) is not installed");
                None
            }
        }
    }

    #[test]
    fn read_write_tree_on_a_real_fat32_image() {
        let dir = tempfile::tempdir().unwrap();
        let Some(img) = image(dir.path()) else { return };
        let file = File::options().read(true).write(true).open(&img).unwrap();
        let len = file.metadata().unwrap().len();
        let mut fs = FatFs::open(Partition::new(file, 0, len)).unwrap();
        fs.mkdir("EFI").unwrap();
        fs.mkdir("EFI/BOOT").unwrap();
        fs.write("/EFI/BOOT/message.txt", b"hello ", false).unwrap();
        fs.write("/EFI/BOOT/message.txt", b"world", true).unwrap();
        fs.copy("EFI", "EFI2").unwrap();
        assert_eq!(fs.list("EFI2/BOOT").unwrap(), vec!["message.txt"]);
        assert!(fs.symlink("x", "y").is_err());
        assert!(fs.statvfs().unwrap().blocks > 0);
        fs.remove("EFI2", true).unwrap();
        fs.close().unwrap();
        // mtools reads what we wrote: the image is a valid FAT for other implementations.
        match std::process::Command::new("mtype")
            .arg("-i")
            .arg(&img)
            .arg("::/EFI/BOOT/message.txt")
            .output()
        {
            Ok(o) => assert_eq!(
                o.stdout,
                b"hello world",
                "mtype: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => eprintln!("SKIPPED (cross-check only): mtools is not installed"),
        }
        let file = File::open(&img).unwrap();
        let mut fs = FatFs::open(Partition::new(file, 0, len)).unwrap();
        assert_eq!(
            fs.read("EFI/BOOT/message.txt", 1 << 20).unwrap(),
            b"hello world"
        );
        assert_eq!(fs.kind("EFI2").unwrap(), None);
    }
}
