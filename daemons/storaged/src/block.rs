//! The block-device interface the boot protocols serve.
//!
//! The NBD server (and the iSCSI target that follows) see a volume only through this trait, so
//! protocol code never knows about layers, presence maps or the catalog. Offsets and lengths
//! are in bytes; callers have already checked that `offset + len <= size()`.

use std::io;

/// How a byte range of a device is backed, as reported by NBD `base:allocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length of the range in bytes.
    pub len: u64,
    /// No storage is allocated for the range (NBD_STATE_HOLE).
    pub hole: bool,
    /// The range reads as zeroes (NBD_STATE_ZERO).
    pub zero: bool,
}

/// A virtual disk served to clients.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// A read-only device refuses every write, zero and trim.
    fn read_only(&self) -> bool;

    /// Fills `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Fills `buf` from `offset` only if that needs no disk I/O and no waiting on locks (the
    /// data is in the page cache or in memory), and says whether it did. On `Ok(false)` or an
    /// error the contents of `buf` are unspecified and the caller falls back to
    /// [`read_at`](Self::read_at), which also reports any error properly.
    ///
    /// This lets the NBD server answer cache hits on its async thread instead of paying a
    /// hand-off to the blocking pool and back for each request. The default never tries.
    fn read_cached(&self, _buf: &mut [u8], _offset: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// Writes `buf` at `offset`; with `fua` the data is durable when this returns.
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()>;

    /// Makes `len` bytes at `offset` read as zeroes. `may_trim` allows freeing the storage.
    fn write_zeroes(&self, offset: u64, len: u64, may_trim: bool, fua: bool) -> io::Result<()>;

    /// Discards `len` bytes at `offset`; discarded whole blocks read as zeroes afterwards.
    fn trim(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;

    /// Describes the allocation of `[offset, offset + len)` as consecutive extents covering at
    /// least the first byte and at most the whole range.
    fn block_status(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>>;
}
