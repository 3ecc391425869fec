//! The presence map of a copy-on-write layer: one bit per block, set when the layer holds the
//! block (data, or a hole that reads as zeroes and masks the parent).
//!
//! Bits are only ever set, never cleared, which is what makes the on-disk map safe against
//! torn writes: any mix of an old and a new copy of a map page is a valid map, because every
//! bit in the new copy describes data that was synced before the page was written.
//!
//! On disk (`<layer>.map`):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 8    | magic `STRMMAP1` |
//! | 8      | 4    | format version, u32 LE = 1 |
//! | 12     | 4    | block size in bytes, u32 LE (power of two, 512..=1 MiB) |
//! | 16     | 8    | virtual size in bytes, u64 LE |
//! | 24     | 4    | CRC-32 (IEEE) of bytes 0..24, u32 LE |
//! | 28     | 4068 | zero |
//! | 4096   | ...  | bitmap: bit `i % 8` of byte `i / 8` is block `i`; padded with zero bytes to a multiple of 4096 |

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Magic at the start of every map file.
pub const MAGIC: [u8; 8] = *b"STRMMAP1";
/// Format version written by this code.
pub const VERSION: u32 = 1;
/// Bytes before the bitmap.
pub const HEADER_LEN: u64 = 4096;
/// The bitmap is read and written in pages of this many bytes.
const PAGE_BYTES: usize = 4096;
const WORDS_PER_PAGE: usize = PAGE_BYTES / 8;

/// Errors opening a map file.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("presence map {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("presence map {path}: {what}")]
    Corrupt { path: String, what: String },
}

/// The header fields of a map file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapHeader {
    pub block_size: u32,
    pub size: u64,
}

impl MapHeader {
    /// Number of blocks the map covers.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(u64::from(self.block_size))
    }

    /// Length of the whole map file in bytes.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN + bitmap_bytes(self.blocks()) as u64
    }

    fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.block_size.to_le_bytes());
        h[16..24].copy_from_slice(&self.size.to_le_bytes());
        let crc = crc32fast::hash(&h[0..24]);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn decode(h: &[u8]) -> Result<Self, String> {
        if h.len() < 28 || h[0..8] != MAGIC {
            return Err("bad magic (not a Streamer presence map)".into());
        }
        let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
        if crc != crc32fast::hash(&h[0..24]) {
            return Err("header checksum mismatch".into());
        }
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if version != VERSION {
            return Err(format!("unsupported version {version}"));
        }
        let block_size = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if !block_size.is_power_of_two() || !(512..=1 << 20).contains(&block_size) {
            return Err(format!("invalid block size {block_size}"));
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&h[16..24]);
        Ok(Self {
            block_size,
            size: u64::from_le_bytes(s),
        })
    }
}

/// Bitmap bytes for `blocks` blocks, padded to whole pages.
fn bitmap_bytes(blocks: u64) -> usize {
    (blocks.div_ceil(8) as usize).div_ceil(PAGE_BYTES) * PAGE_BYTES
}

/// An open presence map.
#[derive(Debug)]
pub struct PresenceMap {
    file: File,
    header: MapHeader,
    words: Vec<AtomicU64>,
    /// Bitmap pages changed since they were last written.
    dirty: Mutex<BTreeSet<usize>>,
    /// Serializes persists so two flushes never interleave their page writes.
    persist_lock: Mutex<()>,
}

impl PresenceMap {
    /// Creates an empty map file (no block present) and returns it, not yet synced.
    pub fn create(path: &Path, header: MapHeader) -> io::Result<File> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all_at(&header.encode(), 0)?;
        // Allocated now (as unwritten extents: no data is written), so that persisting bits
        // later never needs free space: a full disk must not make a flush fail.
        nix::fcntl::fallocate(
            std::os::fd::AsFd::as_fd(&file),
            nix::fcntl::FallocateFlags::empty(),
            0,
            header.file_len() as i64,
        )
        .map_err(io::Error::from)?;
        Ok(file)
    }

    /// Opens and loads a map file.
    pub fn open(path: &Path, writable: bool) -> Result<Self, MapError> {
        let io_err = |source| MapError::Io {
            path: path.display().to_string(),
            source,
        };
        let corrupt = |what: String| MapError::Corrupt {
            path: path.display().to_string(),
            what,
        };
        let file = File::options()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len < HEADER_LEN {
            return Err(corrupt(format!(
                "file is {len} bytes, shorter than the {HEADER_LEN}-byte header"
            )));
        }
        let mut h = vec![0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut h, 0).map_err(io_err)?;
        let header = MapHeader::decode(&h).map_err(corrupt)?;
        if len != header.file_len() {
            return Err(corrupt(format!(
                "file is {len} bytes, expected {} for {} blocks",
                header.file_len(),
                header.blocks()
            )));
        }
        let mut bytes = vec![0u8; bitmap_bytes(header.blocks())];
        file.read_exact_at(&mut bytes, HEADER_LEN).map_err(io_err)?;
        let words = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                AtomicU64::new(u64::from_le_bytes(w))
            })
            .collect();
        let map = Self {
            file,
            header,
            words,
            dirty: Mutex::new(BTreeSet::new()),
            persist_lock: Mutex::new(()),
        };
        if let Some(stray) = map.first_bit_beyond_end() {
            return Err(corrupt(format!(
                "bit set for block {stray}, beyond the last block"
            )));
        }
        Ok(map)
    }

    fn first_bit_beyond_end(&self) -> Option<u64> {
        let blocks = self.header.blocks();
        let total = self.words.len() as u64 * 64;
        (blocks..total).find(|&b| self.is_present(b))
    }

    pub fn header(&self) -> MapHeader {
        self.header
    }

    /// Whether block `block` is held by this layer.
    pub fn is_present(&self, block: u64) -> bool {
        let w = self.words[(block / 64) as usize].load(Ordering::Acquire);
        w & (1 << (block % 64)) != 0
    }

    /// Whether every block in `[start, end)` is present.
    pub fn all_present(&self, start: u64, end: u64) -> bool {
        let (state, run_end) = self.run(start, end);
        state && run_end >= end
    }

    /// The state of block `start` and the end of the run of blocks with the same state,
    /// looking no further than `limit`.
    pub fn run(&self, start: u64, limit: u64) -> (bool, u64) {
        let state = self.is_present(start);
        let mut b = start + 1;
        while b < limit {
            if b.is_multiple_of(64) && b + 64 <= limit {
                let w = self.words[(b / 64) as usize].load(Ordering::Acquire);
                let uniform = if state { u64::MAX } else { 0 };
                if w == uniform {
                    b += 64;
                    continue;
                }
            }
            if self.is_present(b) != state {
                return (state, b);
            }
            b += 1;
        }
        (state, limit)
    }

    /// Marks blocks `[start, end)` present. The caller must have written (not necessarily
    /// synced) their data first.
    pub fn set_range(&self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut b = start;
        let mut pages = BTreeSet::new();
        while b < end {
            let word = (b / 64) as usize;
            let first = b % 64;
            let last = (end - word as u64 * 64).min(64);
            let mask = if last - first == 64 {
                u64::MAX
            } else {
                ((1u64 << (last - first)) - 1) << first
            };
            self.words[word].fetch_or(mask, Ordering::AcqRel);
            pages.insert(word / WORDS_PER_PAGE);
            b = word as u64 * 64 + last;
        }
        self.dirty.lock().extend(pages);
    }

    /// Number of present blocks.
    pub fn count_present(&self) -> u64 {
        self.words
            .iter()
            .map(|w| u64::from(w.load(Ordering::Acquire).count_ones()))
            .sum()
    }

    /// Writes the changed pages durably. `sync_data` must make the layer's data durable: it is
    /// called after the pages are copied and before they are written, so a persisted bit never
    /// describes data that is not yet on stable storage.
    pub fn persist(&self, sync_data: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let _serial = self.persist_lock.lock();
        let pages: Vec<usize> = std::mem::take(&mut *self.dirty.lock())
            .into_iter()
            .collect();
        let copies: Vec<(usize, Vec<u8>)> = pages
            .iter()
            .map(|&p| {
                let mut buf = Vec::with_capacity(PAGE_BYTES);
                for w in &self.words[p * WORDS_PER_PAGE..(p + 1) * WORDS_PER_PAGE] {
                    buf.extend_from_slice(&w.load(Ordering::Acquire).to_le_bytes());
                }
                (p, buf)
            })
            .collect();
        let result = sync_data().and_then(|()| {
            for (p, buf) in &copies {
                self.file
                    .write_all_at(buf, HEADER_LEN + (*p * PAGE_BYTES) as u64)?;
            }
            if copies.is_empty() {
                Ok(())
            } else {
                self.file.sync_data()
            }
        });
        if result.is_err() {
            // Nothing is lost: the pages are written again by the next flush.
            self.dirty.lock().extend(pages);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(blocks: u64) -> MapHeader {
        MapHeader {
            block_size: 4096,
            size: blocks * 4096,
        }
    }

    #[test]
    fn set_run_and_persist_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.map");
        PresenceMap::create(&path, header(100_000))
            .unwrap()
            .sync_all()
            .unwrap();
        let m = PresenceMap::open(&path, true).unwrap();
        assert_eq!(m.run(0, 100_000), (false, 100_000));
        m.set_range(10, 200);
        m.set_range(40_000, 40_001);
        assert_eq!(m.run(0, 100_000), (false, 10));
        assert_eq!(m.run(10, 100_000), (true, 200));
        assert!(m.all_present(10, 200));
        assert!(!m.all_present(10, 201));
        assert_eq!(m.count_present(), 191);
        let mut synced = false;
        m.persist(|| {
            synced = true;
            Ok(())
        })
        .unwrap();
        assert!(synced);
        drop(m);
        let m = PresenceMap::open(&path, false).unwrap();
        assert_eq!(m.count_present(), 191);
        assert!(m.is_present(40_000) && !m.is_present(40_001) && !m.is_present(9));
    }

    #[test]
    fn failed_data_sync_keeps_pages_dirty_and_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.map");
        PresenceMap::create(&path, header(64))
            .unwrap()
            .sync_all()
            .unwrap();
        let m = PresenceMap::open(&path, true).unwrap();
        m.set_range(0, 3);
        assert!(m.persist(|| Err(io::Error::other("disk gone"))).is_err());
        // The bit must not have reached the file: its data was never synced.
        assert_eq!(PresenceMap::open(&path, false).unwrap().count_present(), 0);
        m.persist(|| Ok(())).unwrap();
        assert_eq!(PresenceMap::open(&path, false).unwrap().count_present(), 3);
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.map");
        PresenceMap::create(&path, header(10))
            .unwrap()
            .sync_all()
            .unwrap();
        let f = File::options().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], 13).unwrap();
        let err = PresenceMap::open(&path, false).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        f.set_len(10).unwrap();
        assert!(PresenceMap::open(&path, false).is_err());
    }
}
