//! Reading a qcow2 image's virtual disk through its L1 and L2 tables.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use flate2::{Decompress, FlushDecompress, Status};
use parking_lot::Mutex;

use super::super::{ImageFileError, SourceExtent, SourceImage};
use super::header::{Header, read_header};
use super::{COMPRESSED, COPIED, OFFSET_MASK, ZERO};

/// How one guest cluster is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cluster {
    /// Reads as zeroes: unallocated (there is no backing file) or flagged zero.
    Zero,
    /// Stored uncompressed at this file offset.
    Data(u64),
    /// Stored deflated: file offset and the number of bytes to read (clamped to the file).
    Compressed(u64, u64),
}

/// A qcow2 image opened for import.
#[derive(Debug)]
pub(in super::super) struct Qcow2Source {
    file: File,
    file_len: u64,
    header: Header,
    /// Checked L2 table offsets, one per L1 entry; 0 where no table is allocated.
    l2_tables: Vec<u64>,
    /// The last decompressed cluster, because importers read in pieces smaller than a 2 MiB
    /// cluster and inflating it again for every piece would multiply the work.
    last_inflated: Mutex<Option<(u64, Vec<u8>)>>,
}

impl Qcow2Source {
    pub(in super::super) fn open(file: File) -> Result<Self, ImageFileError> {
        let file_len = file
            .metadata()
            .map_err(|e| ImageFileError::io("reading the size of the qcow2 image", e))?
            .len();
        let header = read_header(&file, file_len)?;
        let cluster_size = header.cluster_size();
        // Bounded by the header check (at most 32 MiB).
        let mut raw = vec![0u8; usize::try_from(header.l1_size * 8).unwrap_or(0)];
        file.read_exact_at(&mut raw, header.l1_table_offset)
            .map_err(|e| {
                ImageFileError::io(
                    format!("reading the L1 table at {}", header.l1_table_offset),
                    e,
                )
            })?;
        let mut l2_tables = Vec::with_capacity(raw.len() / 8);
        for (i, chunk) in raw.chunks_exact(8).enumerate() {
            let entry = be64(chunk);
            let at = header.l1_table_offset + i as u64 * 8;
            if entry & !(OFFSET_MASK | COPIED) != 0 {
                return Err(corrupt(
                    "L1 entry",
                    at,
                    format!("reserved bits set in {entry:#x}"),
                ));
            }
            let l2 = entry & OFFSET_MASK;
            if l2 != 0 {
                if !l2.is_multiple_of(cluster_size) {
                    return Err(corrupt(
                        "L1 entry",
                        at,
                        format!("L2 table offset {l2} is not cluster aligned"),
                    ));
                }
                if l2 + cluster_size > file_len {
                    return Err(corrupt(
                        "L1 entry",
                        at,
                        format!(
                            "L2 table at {l2} extends beyond the end of the file ({file_len} bytes)"
                        ),
                    ));
                }
            }
            l2_tables.push(l2);
        }
        Ok(Self {
            file,
            file_len,
            header,
            l2_tables,
            last_inflated: Mutex::new(None),
        })
    }

    fn l2_entries(&self) -> u64 {
        self.header.cluster_size() / 8
    }

    /// Decodes and checks the L2 entry found at file offset `at`.
    fn decode(&self, entry: u64, at: u64) -> Result<Cluster, ImageFileError> {
        let cluster_bits = self.header.cluster_bits;
        let cluster_size = self.header.cluster_size();
        if entry & COMPRESSED != 0 {
            // Offset field width per qcow2.txt: 62 - (cluster_bits - 8) bits, then the number
            // of additional 512-byte sectors.
            let x = 62 - (cluster_bits - 8);
            let off = entry & ((1 << x) - 1);
            let sectors = ((entry >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1;
            if off >= self.file_len {
                return Err(corrupt(
                    "L2 entry",
                    at,
                    format!(
                        "compressed cluster at {off} is beyond the end of the file ({} bytes)",
                        self.file_len
                    ),
                ));
            }
            // QEMU does not pad the last compressed cluster, so its sector count may run past
            // the end of the file.
            let len = (sectors * 512 - (off & 511)).min(self.file_len - off);
            return Ok(Cluster::Compressed(off, len));
        }
        if entry & !(OFFSET_MASK | COPIED | ZERO) != 0 {
            return Err(corrupt(
                "L2 entry",
                at,
                format!("reserved bits set in {entry:#x}"),
            ));
        }
        if entry & ZERO != 0 {
            if self.header.version < 3 {
                return Err(corrupt(
                    "L2 entry",
                    at,
                    "zero flag set in a version 2 image",
                ));
            }
            return Ok(Cluster::Zero);
        }
        let off = entry & OFFSET_MASK;
        if off == 0 {
            return Ok(Cluster::Zero);
        }
        if !off.is_multiple_of(cluster_size) {
            return Err(corrupt(
                "L2 entry",
                at,
                format!("data cluster offset {off} is not cluster aligned"),
            ));
        }
        if off + cluster_size > self.file_len {
            return Err(corrupt(
                "L2 entry",
                at,
                format!(
                    "data cluster at {off} extends beyond the end of the file ({} bytes)",
                    self.file_len
                ),
            ));
        }
        Ok(Cluster::Data(off))
    }

    /// How guest cluster number `n` is stored.
    fn lookup(&self, n: u64) -> Result<Cluster, ImageFileError> {
        let per_l2 = self.l2_entries();
        let l1_index = usize::try_from(n / per_l2).unwrap_or(usize::MAX);
        let Some(&l2) = self.l2_tables.get(l1_index) else {
            return Ok(Cluster::Zero);
        };
        if l2 == 0 {
            return Ok(Cluster::Zero);
        }
        let at = l2 + (n % per_l2) * 8;
        let mut e = [0u8; 8];
        self.file
            .read_exact_at(&mut e, at)
            .map_err(|err| ImageFileError::io(format!("reading the L2 entry at {at}"), err))?;
        self.decode(u64::from_be_bytes(e), at)
    }

    fn inflate(&self, off: u64, len: u64) -> Result<Vec<u8>, ImageFileError> {
        // `len` is at most a cluster plus a sector by the entry format, but check anyway.
        let cluster_size = self.header.cluster_size();
        let len = len.min(cluster_size * 2);
        let mut input = vec![0u8; usize::try_from(len).unwrap_or(0)];
        self.file.read_exact_at(&mut input, off).map_err(|e| {
            ImageFileError::io(format!("reading the compressed cluster at {off}"), e)
        })?;
        let mut out = vec![0u8; usize::try_from(cluster_size).unwrap_or(0)];
        // qcow2 stores raw deflate without a zlib header.
        let mut z = Decompress::new(false);
        let status = z.decompress(&input, &mut out, FlushDecompress::Finish);
        let complete = z.total_out() == cluster_size;
        match status {
            Ok(Status::StreamEnd) if complete => Ok(out),
            // Full output with input left over is what QEMU accepts too.
            Ok(Status::Ok | Status::BufError) if complete => Ok(out),
            Ok(_) => Err(corrupt(
                "compressed cluster",
                off,
                format!(
                    "inflates to {} bytes instead of {cluster_size}",
                    z.total_out()
                ),
            )),
            Err(e) => Err(corrupt(
                "compressed cluster",
                off,
                format!("invalid deflate data: {e}"),
            )),
        }
    }

    fn read_clusters(&self, buf: &mut [u8], off: u64) -> Result<(), ImageFileError> {
        let cluster_size = self.header.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let n = pos / cluster_size;
            let within = pos % cluster_size;
            let take = usize::try_from(cluster_size - within)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let dst = &mut buf[done..done + take];
            match self.lookup(n)? {
                Cluster::Zero => dst.fill(0),
                Cluster::Data(host) => {
                    self.file.read_exact_at(dst, host + within).map_err(|e| {
                        ImageFileError::io(format!("reading the data cluster at {host}"), e)
                    })?;
                }
                Cluster::Compressed(host, len) => {
                    let mut cache = self.last_inflated.lock();
                    let hit = matches!(&*cache, Some((h, _)) if *h == host);
                    if !hit {
                        *cache = Some((host, self.inflate(host, len)?));
                    }
                    if let Some((_, data)) = &*cache {
                        let w = usize::try_from(within).unwrap_or(0);
                        dst.copy_from_slice(&data[w..w + take]);
                    }
                }
            }
            done += take;
        }
        Ok(())
    }
}

impl SourceImage for Qcow2Source {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.header.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {off} beyond the virtual size {}",
                    buf.len(),
                    self.header.size
                ),
            ));
        }
        Ok(self.read_clusters(buf, off)?)
    }

    fn extents(&self) -> Result<Vec<SourceExtent>, ImageFileError> {
        let cluster_size = self.header.cluster_size();
        let per_l2 = self.l2_entries();
        let size = self.header.size;
        let mut out: Vec<SourceExtent> = Vec::new();
        let mut push = |offset: u64, len: u64, data: bool| {
            let len = len.min(size.saturating_sub(offset));
            if len == 0 {
                return;
            }
            match out.last_mut() {
                Some(last) if last.data == data && last.offset + last.len == offset => {
                    last.len += len;
                }
                _ => out.push(SourceExtent { offset, len, data }),
            }
        };
        let mut table = vec![0u8; usize::try_from(cluster_size).unwrap_or(0)];
        let span = per_l2 * cluster_size;
        for (i, &l2) in self.l2_tables.iter().enumerate() {
            let base = i as u64 * span;
            if base >= size {
                break;
            }
            if l2 == 0 {
                push(base, span, false);
                continue;
            }
            self.file
                .read_exact_at(&mut table, l2)
                .map_err(|e| ImageFileError::io(format!("reading the L2 table at {l2}"), e))?;
            for (j, e) in table.chunks_exact(8).enumerate() {
                let guest = base + j as u64 * cluster_size;
                if guest >= size {
                    break;
                }
                let data = self.decode(be64(e), l2 + j as u64 * 8)? != Cluster::Zero;
                push(guest, cluster_size, data);
            }
        }
        Ok(out)
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn corrupt(field: &'static str, offset: u64, problem: impl Into<String>) -> ImageFileError {
    ImageFileError::Corrupt {
        field,
        offset,
        problem: problem.into(),
    }
}
