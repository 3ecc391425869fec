//! A layer: the files that hold one volume's own blocks.
//!
//! `<id>.data` is a sparse file as long as the volume, block `i` at byte `i * block_size`, so
//! every clone of a base reads the base's unmodified blocks through the same file and the
//! kernel keeps one page-cache copy of them. A layer with a parent also has `<id>.map`, the
//! [presence map](super::presence) saying which blocks it holds; a hole in the data file of a
//! present block reads as zeroes and masks the parent.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FallocateFlags, fallocate};
use nix::unistd::{Whence, lseek};
use parking_lot::Mutex;

use super::presence::{MapError, MapHeader, PresenceMap};

/// Paths of a layer's files inside the store's `layers/` directory.
#[derive(Debug, Clone)]
pub struct LayerPaths {
    pub data: PathBuf,
    pub map: PathBuf,
}

impl LayerPaths {
    pub fn new(dir: &Path, id: &str) -> Self {
        Self {
            data: dir.join(format!("{id}.data")),
            map: dir.join(format!("{id}.map")),
        }
    }
}

/// An open layer.
#[derive(Debug)]
pub struct Layer {
    id: String,
    size: u64,
    block_size: u32,
    data: File,
    /// `None` for a base layer, which holds every block itself.
    map: Option<PresenceMap>,
    /// Held by writes that fill blocks not yet present, so two partial writes into the same
    /// new block cannot both copy the parent's bytes over each other's data.
    pub(crate) first_touch: Mutex<()>,
}

impl Layer {
    /// Creates the files of a new empty layer. With `with_map` the layer holds no block and
    /// reads through to its parent; without, it is a base that reads as zeroes.
    ///
    /// The files and their directory entries are durable when this returns. The three fsyncs
    /// run in parallel: the filesystem's journal then commits them together, which is most of
    /// what makes a clone take milliseconds rather than tens of them.
    pub fn create(
        paths: &LayerPaths,
        size: u64,
        block_size: u32,
        with_map: bool,
    ) -> io::Result<()> {
        let data = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&paths.data)?;
        data.set_len(size)?;
        let map = if with_map {
            Some(PresenceMap::create(
                &paths.map,
                MapHeader { block_size, size },
            )?)
        } else {
            None
        };
        let dir = match paths.data.parent() {
            Some(d) => Some(File::open(d)?),
            None => None,
        };
        let files: Vec<&File> = [Some(&data), map.as_ref(), dir.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = files
                .iter()
                .map(|f| s.spawn(move || f.sync_all()))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked")))
            })
        })
    }

    /// Opens a layer's files.
    pub fn open(
        id: &str,
        paths: &LayerPaths,
        size: u64,
        block_size: u32,
        has_map: bool,
        writable: bool,
    ) -> Result<Self, MapError> {
        let data = File::options()
            .read(true)
            .write(writable)
            .open(&paths.data)
            .map_err(|source| MapError::Io {
                path: paths.data.display().to_string(),
                source,
            })?;
        let map = if has_map {
            let map = PresenceMap::open(&paths.map, writable)?;
            if map.header() != (MapHeader { block_size, size }) {
                return Err(MapError::Corrupt {
                    path: paths.map.display().to_string(),
                    what: format!(
                        "header says {:?}, catalog says size {size} block size {block_size}",
                        map.header()
                    ),
                });
            }
            Some(map)
        } else {
            None
        };
        Ok(Self {
            id: id.to_string(),
            size,
            block_size,
            data,
            map,
            first_touch: Mutex::new(()),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn block_size(&self) -> u64 {
        u64::from(self.block_size)
    }

    pub fn map(&self) -> Option<&PresenceMap> {
        self.map.as_ref()
    }

    /// Bytes of storage the data file occupies.
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.data.metadata()?.blocks() * 512)
    }

    pub fn read_data(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.data.read_exact_at(buf, offset)
    }

    /// Like [`read_data`](Self::read_data), but only from the page cache: `Ok(false)` as soon
    /// as a page is missing (reading it would mean waiting for the disk). `buf` may then be
    /// partly filled.
    pub fn read_data_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            let iov = libc::iovec {
                iov_base: rest.as_mut_ptr().cast(),
                iov_len: rest.len(),
            };
            let pos = offset + done as u64;
            // RWF_NOWAIT makes a buffered read return EAGAIN (or a short count) instead of
            // starting I/O for pages that are not cached.
            // SAFETY: `iov` describes `rest`, which is exclusively borrowed and stays alive for
            // the call; the kernel writes at most `iov_len` bytes into it. The descriptor is
            // owned by `self.data`, which outlives the call.
            let n = unsafe {
                libc::preadv2(
                    self.data.as_raw_fd(),
                    &iov,
                    1,
                    pos as libc::off_t,
                    libc::RWF_NOWAIT,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Not cached, or RWF_NOWAIT unsupported here: the caller reads normally.
                    Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                        Ok(false)
                    }
                    _ => Err(err),
                };
            }
            if n == 0 {
                // End of file: let the blocking read report the short file.
                return Ok(false);
            }
            done += n as usize;
        }
        Ok(true)
    }

    pub fn write_data(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.data.write_all_at(buf, offset)
    }

    /// Frees `[offset, offset + len)` in the data file; it reads as zeroes afterwards.
    pub fn punch(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        fallocate(
            self.data.as_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            offset as i64,
            len as i64,
        )
        .map_err(io::Error::from)
    }

    /// Zeroes `[offset, offset + len)` keeping it allocated (NBD's NO_HOLE).
    pub fn zero_allocated(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match fallocate(
            self.data.as_fd(),
            FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            offset as i64,
            len as i64,
        ) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => {
                let zeroes = vec![0u8; len.min(1 << 20) as usize];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(zeroes.len() as u64) as usize;
                    self.data.write_all_at(&zeroes[..n], offset + done)?;
                    done += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the data file has storage at `offset`, and where that state ends (bounded by
    /// `limit`), from SEEK_DATA/SEEK_HOLE.
    pub fn data_run(&self, offset: u64, limit: u64) -> io::Result<(bool, u64)> {
        let fd = self.data.as_fd();
        match lseek(fd, offset as i64, Whence::SeekData) {
            Ok(d) if d as u64 == offset => {
                let hole = lseek(fd, offset as i64, Whence::SeekHole).map_err(io::Error::from)?;
                Ok((true, (hole as u64).min(limit)))
            }
            Ok(d) => Ok((false, (d as u64).min(limit))),
            // ENXIO: no data at or after offset.
            Err(nix::errno::Errno::ENXIO) => Ok((false, limit)),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the layer's writes durable: data first, then the presence bits that describe it.
    pub fn sync(&self) -> io::Result<()> {
        match &self.map {
            Some(map) => map.persist(|| self.data.sync_data()),
            None => self.data.sync_data(),
        }
    }
}

impl Drop for Layer {
    /// The last user of a layer is gone: make its writes durable, so a client that wrote and
    /// disconnected without a flush still finds its data when the volume is opened again.
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!("layer {}: sync on close failed: {e}", self.id);
        }
    }
}
