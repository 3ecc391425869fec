//! In-memory test doubles for the protocol servers: a sparse [`MemDevice`] and a [`MemCatalog`]
//! with allow-lists. Built for unit tests and, with the `testing` feature, integration tests;
//! never part of a production build.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::block::{BlockDevice, Extent};
use crate::export::{ExportCatalog, ExportError, ExportSummary, OpenExport};

/// Allocation granule of [`MemDevice`].
pub const MEM_CHUNK: u64 = 4096;

#[derive(Debug, Clone)]
enum Chunk {
    /// Never written or trimmed: reads as zeroes, reported as a hole.
    Hole,
    /// Allocated but known to be zero (write-zeroes without may_trim).
    Zero,
    Data(Box<[u8]>),
}

/// A sparse in-memory disk that tracks allocation in [`MEM_CHUNK`] granules, counts flushes
/// and FUA writes, and can be told to fail every operation with a given errno.
#[derive(Debug)]
pub struct MemDevice {
    size: u64,
    read_only: bool,
    chunks: RwLock<Vec<Chunk>>,
    fail_errno: Mutex<Option<i32>>,
    flushes: AtomicU64,
    fua_writes: AtomicU64,
}

impl MemDevice {
    /// A writable device of `size` bytes reading as zeroes.
    pub fn new(size: u64) -> Self {
        let n = size.div_ceil(MEM_CHUNK) as usize;
        MemDevice {
            size,
            read_only: false,
            chunks: RwLock::new(vec![Chunk::Hole; n]),
            fail_errno: Mutex::new(None),
            flushes: AtomicU64::new(0),
            fua_writes: AtomicU64::new(0),
        }
    }

    /// A read-only device holding `contents`.
    pub fn read_only_with(contents: &[u8]) -> Self {
        let mut dev = MemDevice::new(contents.len() as u64);
        dev.fill(contents, 0);
        dev.read_only = true;
        dev
    }

    /// Stores `data` at `offset`, bypassing read-only and fault injection (test setup).
    pub fn fill(&self, data: &[u8], offset: u64) {
        let mut chunks = self.chunks.write();
        for_each_chunk(offset, data.len() as u64, |idx, within, pos, n| {
            let chunk = &mut chunks[idx];
            if !matches!(chunk, Chunk::Data(_)) {
                *chunk = Chunk::Data(vec![0; MEM_CHUNK as usize].into_boxed_slice());
            }
            if let Chunk::Data(bytes) = chunk {
                bytes[within..within + n].copy_from_slice(&data[pos..pos + n]);
            }
        });
    }

    /// The whole device contents.
    pub fn contents(&self) -> Vec<u8> {
        let mut out = vec![0; self.size as usize];
        self.copy_out(&mut out, 0);
        out
    }

    /// From now on every operation fails with `errno` (`None` heals the device).
    pub fn fail_with(&self, errno: Option<i32>) {
        *self.fail_errno.lock() = errno;
    }

    /// How many times `flush` ran.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    /// How many writes (data or zeroes) asked for FUA.
    pub fn fua_writes(&self) -> u64 {
        self.fua_writes.load(Ordering::SeqCst)
    }

    fn check(&self, writing: bool) -> io::Result<()> {
        if let Some(errno) = *self.fail_errno.lock() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if writing && self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        Ok(())
    }

    fn copy_out(&self, buf: &mut [u8], offset: u64) {
        let chunks = self.chunks.read();
        for_each_chunk(offset, buf.len() as u64, |idx, within, pos, n| {
            let dst = &mut buf[pos..pos + n];
            match &chunks[idx] {
                Chunk::Data(bytes) => dst.copy_from_slice(&bytes[within..within + n]),
                Chunk::Hole | Chunk::Zero => dst.fill(0),
            }
        });
    }

    /// Zeroes a range; whole chunks become `whole`, partial chunks are zeroed in place.
    fn zero_range(&self, offset: u64, len: u64, whole: Chunk) {
        let mut chunks = self.chunks.write();
        for_each_chunk(offset, len, |idx, within, _pos, n| {
            let chunk = &mut chunks[idx];
            if n as u64 == MEM_CHUNK {
                *chunk = whole.clone();
            } else if let Chunk::Data(bytes) = chunk {
                bytes[within..within + n].fill(0);
            }
        });
    }
}

/// Calls `f(chunk index, offset within chunk, position in the range, byte count)` for each
/// chunk overlapping `[offset, offset + len)`.
fn for_each_chunk(offset: u64, len: u64, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut pos = 0u64;
    while pos < len {
        let at = offset + pos;
        let within = at % MEM_CHUNK;
        let n = (MEM_CHUNK - within).min(len - pos);
        f(
            (at / MEM_CHUNK) as usize,
            within as usize,
            pos as usize,
            n as usize,
        );
        pos += n;
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check(false)?;
        self.copy_out(buf, offset);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.check(true)?;
        self.fill(buf, offset);
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_trim: bool, fua: bool) -> io::Result<()> {
        self.check(true)?;
        let whole = if may_trim { Chunk::Hole } else { Chunk::Zero };
        self.zero_range(offset, len, whole);
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check(true)?;
        self.zero_range(offset, len, Chunk::Hole);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.check(false)?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        self.check(false)?;
        let chunks = self.chunks.read();
        let mut out: Vec<Extent> = Vec::new();
        for_each_chunk(offset, len, |idx, _within, _pos, n| {
            let (hole, zero) = match &chunks[idx] {
                Chunk::Hole => (true, true),
                Chunk::Zero => (false, true),
                Chunk::Data(_) => (false, false),
            };
            match out.last_mut() {
                Some(last) if last.hole == hole && last.zero == zero => last.len += n as u64,
                _ => out.push(Extent {
                    len: n as u64,
                    hole,
                    zero,
                }),
            }
        });
        Ok(out)
    }
}

struct MemExport {
    description: String,
    device: Arc<dyn BlockDevice>,
    /// `None`: any client may use it.
    allowed: Option<Vec<IpAddr>>,
    iscsi: crate::export::IscsiAccess,
}

impl std::fmt::Debug for MemExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemExport")
            .field("description", &self.description)
            .field("size", &self.device.size())
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// An export catalog in memory that counts open leases.
#[derive(Debug, Default)]
pub struct MemCatalog {
    exports: RwLock<BTreeMap<String, MemExport>>,
    leases: Arc<AtomicUsize>,
}

/// Held by an [`OpenExport`] made by [`MemCatalog`]; counts as one open lease.
#[derive(Debug)]
struct Lease(Arc<AtomicUsize>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MemCatalog {
    pub fn new() -> Self {
        MemCatalog::default()
    }

    /// Adds (or replaces) export `name`; `allowed: None` lets every client in.
    pub fn insert(
        &self,
        name: &str,
        description: &str,
        device: Arc<dyn BlockDevice>,
        allowed: Option<Vec<IpAddr>>,
    ) {
        self.exports.write().insert(
            name.to_owned(),
            MemExport {
                description: description.to_owned(),
                device,
                allowed,
                iscsi: Default::default(),
            },
        );
    }

    /// Who may log in to export `name` over iSCSI.
    pub fn set_iscsi(&self, name: &str, access: crate::export::IscsiAccess) {
        if let Some(e) = self.exports.write().get_mut(name) {
            e.iscsi = access;
        }
    }

    /// Exports currently opened and not yet released.
    pub fn open_leases(&self) -> usize {
        self.leases.load(Ordering::SeqCst)
    }
}

fn allows(export: &MemExport, client: IpAddr) -> bool {
    export.allowed.as_ref().is_none_or(|a| a.contains(&client))
}

impl ExportCatalog for MemCatalog {
    fn open(&self, name: &str, client: IpAddr) -> Result<OpenExport, ExportError> {
        let exports = self.exports.read();
        let export = exports
            .get(name)
            .ok_or_else(|| ExportError::Unknown(name.to_owned()))?;
        if !allows(export, client) {
            return Err(ExportError::Denied {
                name: name.to_owned(),
                client,
            });
        }
        self.leases.fetch_add(1, Ordering::SeqCst);
        Ok(OpenExport {
            name: name.to_owned(),
            description: export.description.clone(),
            device: Arc::clone(&export.device),
            lease: Box::new(Lease(Arc::clone(&self.leases))),
            served: crate::ownership::Served::always(),
            iscsi: export.iscsi.clone(),
            volume_id: name.to_owned(),
        })
    }

    fn list(&self, client: IpAddr) -> Vec<ExportSummary> {
        self.exports
            .read()
            .iter()
            .filter(|(_, e)| allows(e, client))
            .map(|(name, e)| ExportSummary {
                id: name.clone(),
                name: name.clone(),
                description: e.description.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_device_tracks_allocation_and_zeroes() {
        let dev = MemDevice::new(5 * MEM_CHUNK + 100);
        dev.write_at(&[7u8; 6000], 1000, false).unwrap();
        let mut buf = vec![0u8; 8000];
        dev.read_at(&mut buf, 0).unwrap();
        assert!(buf[..1000].iter().all(|&b| b == 0));
        assert!(buf[1000..7000].iter().all(|&b| b == 7));
        assert!(buf[7000..].iter().all(|&b| b == 0));
        let status = dev.block_status(0, dev.size()).unwrap();
        assert_eq!(
            status,
            vec![
                Extent {
                    len: 2 * MEM_CHUNK,
                    hole: false,
                    zero: false
                },
                Extent {
                    len: 3 * MEM_CHUNK + 100,
                    hole: true,
                    zero: true
                },
            ]
        );
        dev.write_zeroes(0, MEM_CHUNK, false, false).unwrap();
        dev.trim(MEM_CHUNK, MEM_CHUNK).unwrap();
        let status = dev.block_status(0, 2 * MEM_CHUNK).unwrap();
        assert_eq!(
            status,
            vec![
                Extent {
                    len: MEM_CHUNK,
                    hole: false,
                    zero: true
                },
                Extent {
                    len: MEM_CHUNK,
                    hole: true,
                    zero: true
                },
            ]
        );
        assert!(dev.contents().iter().all(|&b| b == 0));
    }

    #[test]
    fn mem_catalog_enforces_allow_lists_and_counts_leases() {
        let cat = MemCatalog::new();
        let me: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        cat.insert("a", "A", Arc::new(MemDevice::new(4096)), Some(vec![me]));
        cat.insert("b", "B", Arc::new(MemDevice::new(4096)), None);
        assert_eq!(cat.list(other).len(), 1);
        assert_eq!(cat.list(me).len(), 2);
        assert!(matches!(
            cat.open("a", other),
            Err(ExportError::Denied { .. })
        ));
        assert!(matches!(cat.open("zz", me), Err(ExportError::Unknown(_))));
        let open = cat.open("a", me).unwrap();
        assert_eq!(cat.open_leases(), 1);
        drop(open);
        assert_eq!(cat.open_leases(), 0);
    }
}
