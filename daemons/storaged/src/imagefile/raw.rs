//! Raw images: the disk's bytes one for one, with the file system's holes as zero ranges.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

use super::{CHUNK, ImageFileError, SourceExtent, SourceImage};
use crate::block::BlockDevice;

/// A raw image file opened for import.
#[derive(Debug)]
pub(super) struct RawSource {
    file: File,
    size: u64,
}

impl RawSource {
    pub(super) fn open(file: File) -> Result<Self, ImageFileError> {
        let size = file
            .metadata()
            .map_err(|e| ImageFileError::io("reading the size of the raw image", e))?
            .len();
        Ok(Self { file, size })
    }

    /// Next offset at or after `from` where `whence` (data or hole) starts; `None` when the
    /// file system cannot tell, in which case everything counts as data.
    fn seek(&self, from: u64, whence: Whence) -> Result<Option<u64>, ImageFileError> {
        let Ok(from_signed) = i64::try_from(from) else {
            return Ok(None);
        };
        // lseek moves the shared file position, but every read here is positional (pread), so
        // nothing depends on it.
        match lseek(&self.file, from_signed, whence) {
            Ok(pos) => Ok(u64::try_from(pos).ok()),
            // ENXIO from SEEK_DATA: only a hole remains up to the end of the file.
            Err(Errno::ENXIO) => Ok(Some(self.size)),
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(ImageFileError::io(
                format!("finding data and holes of the raw image at offset {from}"),
                e.into(),
            )),
        }
    }
}

impl SourceImage for RawSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }

    fn extents(&self) -> Result<Vec<SourceExtent>, ImageFileError> {
        let all_data = || {
            vec![SourceExtent {
                offset: 0,
                len: self.size,
                data: true,
            }]
        };
        let mut out: Vec<SourceExtent> = Vec::new();
        let mut pos = 0;
        while pos < self.size {
            let Some(data) = self.seek(pos, Whence::SeekData)? else {
                return Ok(all_data());
            };
            let data = data.min(self.size);
            if data > pos {
                out.push(SourceExtent {
                    offset: pos,
                    len: data - pos,
                    data: false,
                });
            }
            if data >= self.size {
                break;
            }
            let Some(hole) = self.seek(data, Whence::SeekHole)? else {
                return Ok(all_data());
            };
            // A file system that reports no progress would loop forever; trust it no further.
            if hole <= data {
                return Ok(all_data());
            }
            let hole = hole.min(self.size);
            out.push(SourceExtent {
                offset: data,
                len: hole - data,
                data: true,
            });
            pos = hole;
        }
        Ok(out)
    }
}

/// Writes `dev` to `out` as a raw image, leaving holes where the device reads as zeroes.
///
/// `out` is truncated first. `progress` is called with the number of device bytes handled so
/// far. The file is synced to stable storage before this returns.
pub fn write_raw(
    out: &File,
    dev: &dyn BlockDevice,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ImageFileError> {
    let size = dev.size();
    // Truncating first drops any old contents, which would otherwise show through the holes.
    out.set_len(0)
        .and_then(|()| out.set_len(size))
        .map_err(|e| ImageFileError::io("sizing the raw output file", e))?;
    let mut buf = Vec::new();
    for (offset, len) in data_ranges(dev)? {
        let mut pos = offset;
        while pos < offset + len {
            let n = usize::try_from(offset + len - pos).map_or(CHUNK, |r| r.min(CHUNK));
            buf.resize(n, 0);
            dev.read_at(&mut buf, pos).map_err(|e| {
                ImageFileError::io(format!("reading the volume at offset {pos}"), e)
            })?;
            // Data the device did not flag as zero may still be zero; keep the output sparse.
            if buf.iter().any(|&b| b != 0) {
                out.write_all_at(&buf, pos).map_err(|e| {
                    ImageFileError::io(format!("writing the raw image at offset {pos}"), e)
                })?;
            }
            pos += n as u64;
            progress(pos);
        }
    }
    out.sync_all()
        .map_err(|e| ImageFileError::io("syncing the raw image", e))?;
    progress(size);
    Ok(())
}

/// The ranges of `dev` that may hold non-zero data, in order, merged where adjacent.
pub(super) fn data_ranges(dev: &dyn BlockDevice) -> Result<Vec<(u64, u64)>, ImageFileError> {
    let size = dev.size();
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0;
    while pos < size {
        let extents = dev.block_status(pos, size - pos).map_err(|e| {
            ImageFileError::io(format!("querying volume allocation at offset {pos}"), e)
        })?;
        let before = pos;
        for e in extents {
            let len = e.len.min(size - pos);
            if len == 0 {
                break;
            }
            if !e.zero {
                match out.last_mut() {
                    Some((o, l)) if *o + *l == pos => *l += len,
                    _ => out.push((pos, len)),
                }
            }
            pos += len;
        }
        // The trait promises at least the first byte; a device breaking that would hang us.
        if pos == before {
            return Err(ImageFileError::io(
                format!("querying volume allocation at offset {pos}"),
                io::Error::other("block_status returned no extent"),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_file_extents() -> Result<(), Box<dyn std::error::Error>> {
        let f = tempfile::tempfile()?;
        f.set_len(8 << 20)?;
        f.write_all_at(&[7u8; 4096], 4 << 20)?;
        let src = RawSource::open(f)?;
        let ext = src.extents()?;
        // Coverage must be exact and in order whatever the file system's granularity.
        let mut pos = 0;
        for e in &ext {
            assert_eq!(e.offset, pos);
            pos += e.len;
        }
        assert_eq!(pos, 8 << 20);
        let data_at = |off: u64| {
            ext.iter()
                .find(|e| e.offset <= off && off < e.offset + e.len)
                .map(|e| e.data)
        };
        assert_eq!(data_at(4 << 20), Some(true));
        // tmpfs and ext4 both report holes; a file system without SEEK_HOLE reports all data.
        if ext.len() > 1 {
            assert_eq!(data_at(0), Some(false));
            assert_eq!(data_at((8 << 20) - 1), Some(false));
        }
        let mut buf = [0u8; 8];
        src.read_at(&mut buf, (4 << 20) + 8)?;
        assert_eq!(buf, [7u8; 8]);
        Ok(())
    }
}
