//! The qcow2 header: parsing it and checking it before any of its offsets is trusted.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::super::ImageFileError;

/// First four bytes of every qcow2 image.
pub(in super::super) const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Largest L1 table read into memory (QEMU's own limit): 4 Mi entries, enough for 256 TiB of
/// virtual disk at 64 KiB clusters.
const MAX_L1_BYTES: u64 = 32 << 20;

/// Largest virtual disk accepted (QEMU's own limit, 2^61 - 512 rounded to a power of two
/// below); larger sizes only come from corrupt or hostile images.
const MAX_VIRTUAL_SIZE: u64 = 1 << 56;

/// Incompatible feature bits (version 3).
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

/// The header fields the reader uses, already checked against the file.
#[derive(Debug, Clone)]
pub(super) struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u64,
    pub l1_table_offset: u64,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn corrupt(field: &'static str, offset: u64, problem: impl Into<String>) -> ImageFileError {
    ImageFileError::Corrupt {
        field,
        offset,
        problem: problem.into(),
    }
}

/// Reads and validates the header of `file`, whose length is `file_len`.
pub(super) fn read_header(file: &File, file_len: u64) -> Result<Header, ImageFileError> {
    if file_len < 72 {
        return Err(corrupt(
            "header",
            0,
            format!("file is {file_len} bytes, shorter than a qcow2 header"),
        ));
    }
    let mut h = [0u8; 112];
    let want = usize::try_from(file_len).map_or(h.len(), |l| l.min(h.len()));
    file.read_exact_at(&mut h[..want], 0)
        .map_err(|e| ImageFileError::io("reading the qcow2 header", e))?;
    if h[..4] != MAGIC {
        return Err(corrupt("magic", 0, "not a qcow2 image"));
    }
    let version = be32(&h, 4);
    if version != 2 && version != 3 {
        return Err(ImageFileError::Unsupported(format!(
            "version {version} (only 2 and 3 are read)"
        )));
    }
    let backing_file_offset = be64(&h, 8);
    if backing_file_offset != 0 {
        let name_len = u64::from(be32(&h, 16)).min(1023);
        let mut name = vec![0u8; usize::try_from(name_len).unwrap_or(0)];
        let name = match file.read_exact_at(&mut name, backing_file_offset) {
            Ok(()) => String::from_utf8_lossy(&name).into_owned(),
            Err(_) => format!("<name at file offset {backing_file_offset} unreadable>"),
        };
        return Err(ImageFileError::Unsupported(format!(
            "it has a backing file {name:?}; flatten it first (qemu-img convert -O qcow2)"
        )));
    }
    let cluster_bits = be32(&h, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(corrupt(
            "cluster_bits",
            20,
            format!("{cluster_bits} is outside 9..=21"),
        ));
    }
    let size = be64(&h, 24);
    if size > MAX_VIRTUAL_SIZE {
        return Err(corrupt(
            "size",
            24,
            format!("virtual size {size} exceeds the limit {MAX_VIRTUAL_SIZE}"),
        ));
    }
    let crypt_method = be32(&h, 32);
    if crypt_method != 0 {
        return Err(ImageFileError::Unsupported(format!(
            "it is encrypted (crypt_method {crypt_method})"
        )));
    }
    if version == 3 {
        check_v3_features(&h, file_len)?;
    }

    let cluster_size = 1u64 << cluster_bits;
    let l1_size = u64::from(be32(&h, 36));
    let l1_table_offset = be64(&h, 40);
    let bytes_per_l2 = cluster_size * (cluster_size / 8);
    let needed = size.div_ceil(bytes_per_l2);
    if l1_size < needed {
        return Err(corrupt(
            "l1_size",
            36,
            format!("{l1_size} entries cannot map {size} bytes (needs {needed})"),
        ));
    }
    if l1_size * 8 > MAX_L1_BYTES {
        return Err(corrupt(
            "l1_size",
            36,
            format!("{l1_size} entries exceed the limit of {}", MAX_L1_BYTES / 8),
        ));
    }
    if l1_size > 0 {
        if !l1_table_offset.is_multiple_of(cluster_size) {
            return Err(corrupt(
                "l1_table_offset",
                40,
                format!("{l1_table_offset} is not aligned to the cluster size {cluster_size}"),
            ));
        }
        if l1_table_offset
            .checked_add(l1_size * 8)
            .is_none_or(|end| end > file_len)
        {
            return Err(corrupt(
                "l1_table_offset",
                40,
                format!(
                    "L1 table at {l1_table_offset} ({l1_size} entries) extends beyond the end \
                     of the file ({file_len} bytes)"
                ),
            ));
        }
    }
    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_table_offset,
    })
}

fn check_v3_features(h: &[u8; 112], file_len: u64) -> Result<(), ImageFileError> {
    if file_len < 104 {
        return Err(corrupt(
            "header_length",
            100,
            format!("file is {file_len} bytes, shorter than a version 3 header"),
        ));
    }
    let header_length = be32(h, 100);
    if header_length < 104 {
        return Err(corrupt(
            "header_length",
            100,
            format!("{header_length} is shorter than the 104 bytes of a version 3 header"),
        ));
    }
    let incompatible = be64(h, 72);
    if incompatible & INCOMPAT_CORRUPT != 0 {
        return Err(corrupt(
            "incompatible_features",
            72,
            "QEMU marked the image corrupt; repair it with qemu-img check -r all",
        ));
    }
    if incompatible & INCOMPAT_DATA_FILE != 0 {
        return Err(ImageFileError::Unsupported(
            "its data is in an external data file".into(),
        ));
    }
    if incompatible & INCOMPAT_EXTL2 != 0 {
        return Err(ImageFileError::Unsupported(
            "it uses extended L2 entries (subclusters)".into(),
        ));
    }
    if incompatible & INCOMPAT_COMPRESSION != 0 {
        let kind = if header_length > 104 { h[104] } else { 0 };
        if kind != 0 {
            let name = if kind == 1 { "zstd" } else { "unknown" };
            return Err(ImageFileError::Unsupported(format!(
                "it uses compression type {kind} ({name}); only zlib is read"
            )));
        }
    }
    // A dirty image has possibly stale refcounts, which the reader never uses.
    let unknown = incompatible
        & !(INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION)
        & !INCOMPAT_EXTL2;
    if unknown != 0 {
        return Err(ImageFileError::Unsupported(format!(
            "unknown incompatible feature bits {unknown:#x}"
        )));
    }
    Ok(())
}
