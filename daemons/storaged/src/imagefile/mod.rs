//! Disk-image files the volume store imports golden images from and exports volumes to.
//!
//! Two formats: raw (the bytes of the disk, sparse where the file system allows) and qcow2
//! (versions 2 and 3, self-contained images only). Import reads an image through
//! [`SourceImage`], which also says which ranges read as zeroes so the importer need not store
//! them; export writes a [`BlockDevice`] out with [`write_raw`] or [`write_qcow2`].
//!
//! Image files come from users and the network, so every field read from one is checked before
//! it is used as an offset or a size, and nothing is allocated from an untrusted size without a
//! bound. An image this code cannot read exactly is refused, never read as zeroes.

mod qcow2;
mod raw;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::str::FromStr;

pub use qcow2::write_qcow2;
pub use raw::write_raw;

#[cfg(doc)]
use crate::block::BlockDevice;

/// The on-disk format of an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// The disk's bytes, one for one.
    Raw,
    /// QEMU copy-on-write format, version 2 or 3.
    Qcow2,
}

impl FromStr for ImageFormat {
    type Err = ImageFileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Self::Raw),
            "qcow2" => Ok(Self::Qcow2),
            other => Err(ImageFileError::UnknownFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        })
    }
}

/// Guesses the format of `file` from its first bytes: qcow2 if it starts with the qcow2 magic,
/// raw otherwise (raw has no signature, so anything else is taken as a disk's bytes).
pub fn detect(file: &File) -> io::Result<ImageFormat> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read_at(&mut magic[got..], got as u64) {
            Ok(0) => return Ok(ImageFormat::Raw),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(if magic == qcow2::MAGIC {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw
    })
}

/// A range of an image's virtual disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceExtent {
    /// Start in bytes from the beginning of the virtual disk.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// `false`: the range is known to read as zeroes, so an importer may skip it.
    pub data: bool,
}

/// An image file opened for import.
pub trait SourceImage: Send + Sync + fmt::Debug {
    /// Size of the virtual disk in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the virtual disk's bytes from `off`; `off + buf.len()` must not exceed
    /// [`size`](Self::size).
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;

    /// Consecutive extents covering the whole virtual disk, in order.
    fn extents(&self) -> Result<Vec<SourceExtent>, ImageFileError>;
}

/// Opens `file` as an image of `format` for reading.
pub fn open_source(
    file: File,
    format: ImageFormat,
) -> Result<Box<dyn SourceImage>, ImageFileError> {
    Ok(match format {
        ImageFormat::Raw => Box::new(raw::RawSource::open(file)?),
        ImageFormat::Qcow2 => Box::new(qcow2::Qcow2Source::open(file)?),
    })
}

/// Why an image could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    /// A format name that is neither "raw" nor "qcow2".
    #[error("unknown image format {0:?} (expected \"raw\" or \"qcow2\")")]
    UnknownFormat(String),

    /// Reading or writing a file or device failed.
    #[error("{what}")]
    Io {
        /// What was being done, and where.
        what: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },

    /// The image uses a feature this reader deliberately does not implement.
    #[error("unsupported qcow2 image: {0}")]
    Unsupported(String),

    /// A field of the image is inconsistent or points outside the file.
    #[error("corrupt qcow2 image: {field} at file offset {offset}: {problem}")]
    Corrupt {
        /// The structure or header field that is wrong.
        field: &'static str,
        /// Byte offset in the image file where that field or structure is.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },
}

impl ImageFileError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<ImageFileError> for io::Error {
    fn from(e: ImageFileError) -> Self {
        match e {
            ImageFileError::Io { what, source } => {
                io::Error::new(source.kind(), format!("{what}: {source}"))
            }
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// Export chunk: large enough to stream efficiently, small enough to keep memory flat.
const CHUNK: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn format_names_round_trip() {
        for f in [ImageFormat::Raw, ImageFormat::Qcow2] {
            assert_eq!(f.to_string().parse::<ImageFormat>().ok(), Some(f));
        }
        assert!(matches!(
            "vmdk".parse::<ImageFormat>(),
            Err(ImageFileError::UnknownFormat(s)) if s == "vmdk"
        ));
    }

    #[test]
    fn detect_by_magic() -> io::Result<()> {
        let mut q = tempfile::tempfile()?;
        q.write_all(b"QFI\xfb\0\0\0\x03")?;
        assert_eq!(detect(&q)?, ImageFormat::Qcow2);
        let mut r = tempfile::tempfile()?;
        r.write_all(b"QFI\xfa")?;
        assert_eq!(detect(&r)?, ImageFormat::Raw);
        let short = tempfile::tempfile()?;
        assert_eq!(detect(&short)?, ImageFormat::Raw);
        Ok(())
    }
}
