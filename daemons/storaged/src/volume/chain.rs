//! An open volume: its layer chain, reads and allocation status through it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::changes::{ChangeMap, REGION_BYTES, Replica};
use super::layer::Layer;
use crate::block::{BlockDevice, Extent};

/// An open volume. Cheap to share; every connection and operation holds an `Arc<Volume>`.
#[derive(Debug)]
pub struct Volume {
    pub(crate) id: String,
    pub(crate) size: u64,
    pub(crate) frozen: bool,
    /// `[top, parent's layer, ..., base]`. Replaced only by a snapshot, under the write lock.
    pub(crate) chain: RwLock<Vec<Arc<Layer>>>,
    pub(crate) changes: ChangeMap,
    pub(crate) replica: Arc<dyn Replica>,
    /// On a pair: the regions that may differ from the peer's copy, on disk.
    pub(crate) activity: Option<Arc<super::ActivityLog>>,
    /// On a pair: the changes in flight, so that overlapping ones are applied in one order
    /// on both nodes.
    pub(crate) in_order: super::overlap::InOrder,
    /// Open connections (export leases) using this volume.
    pub(crate) users: AtomicUsize,
}

impl Volume {
    pub(crate) fn new(
        id: String,
        size: u64,
        frozen: bool,
        chain: Vec<Arc<Layer>>,
        replica: Arc<dyn Replica>,
    ) -> Self {
        Self {
            id,
            size,
            frozen,
            chain: RwLock::new(chain),
            changes: ChangeMap::new(size),
            replica,
            activity: None,
            in_order: Default::default(),
            users: AtomicUsize::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Number of open connections using the volume.
    pub fn users(&self) -> usize {
        self.users.load(Ordering::Acquire)
    }

    /// Keeps the regions that may differ from the peer's copy in `log` (a pair's volume).
    pub(crate) fn with_activity(mut self, log: Option<Arc<super::ActivityLog>>) -> Self {
        self.activity = log;
        self
    }

    pub fn activity(&self) -> Option<&Arc<super::ActivityLog>> {
        self.activity.as_ref()
    }

    /// The regions written since the last call, for resynchronising a peer.
    pub fn take_changed_regions(&self) -> Vec<(u64, u64)> {
        self.changes.take()
    }

    /// The regions ([`REGION_BYTES`]) in which the volume's own layer (its top) holds
    /// anything, in order: all the volume differs by from its parent, or from zeroes if it
    /// has none. What a peer that has only made the volume (over the same parent) lacks.
    pub fn own_regions(&self) -> io::Result<Vec<u64>> {
        let top = Arc::clone(&self.chain.read()[0]);
        let mut regions: Vec<u64> = Vec::new();
        let mut add = |start: u64, end: u64| {
            let end = end.min(self.size);
            if end <= start {
                return;
            }
            for r in start / REGION_BYTES..=(end - 1) / REGION_BYTES {
                if regions.last() != Some(&r) {
                    regions.push(r);
                }
            }
        };
        match top.map() {
            Some(map) => {
                let (bs, blocks) = (top.block_size(), map.header().blocks());
                let mut b = 0;
                while b < blocks {
                    let (present, end) = map.run(b, blocks);
                    if present {
                        add(b * bs, end * bs);
                    }
                    b = end;
                }
            }
            // A base layer: its data file's extents (holes read as zeroes).
            None => {
                let mut offset = 0;
                while offset < self.size {
                    let (data, end) = top.data_run(offset, self.size)?;
                    if end <= offset {
                        break;
                    }
                    if data {
                        add(offset, end);
                    }
                    offset = end;
                }
            }
        }
        Ok(regions)
    }
}

/// Reads `buf.len()` bytes at `offset` through `layers` (top first). Bytes beyond a layer's
/// size, or below the last layer, read as zeroes.
pub(crate) fn read_chain(layers: &[Arc<Layer>], buf: &mut [u8], offset: u64) -> io::Result<()> {
    read_chain_via(layers, buf, offset, &|layer, b, o| {
        layer.read_data(b, o).map(|()| true)
    })
    .map(|_| ())
}

/// How [`read_chain_via`] reads one layer's data file: `Ok(false)` gives up the whole read.
type ReadLayer<'a> = &'a dyn Fn(&Layer, &mut [u8], u64) -> io::Result<bool>;

/// [`read_chain`] with the data-file read supplied, so the same walk serves blocking reads
/// and page-cache-only reads. Returns `Ok(false)` as soon as `read` does.
fn read_chain_via(
    layers: &[Arc<Layer>],
    buf: &mut [u8],
    offset: u64,
    read: ReadLayer<'_>,
) -> io::Result<bool> {
    let Some((top, rest)) = layers.split_first() else {
        buf.fill(0);
        return Ok(true);
    };
    let end = offset + buf.len() as u64;
    let within_end = end.min(top.size()).max(offset);
    let (inside, beyond) = buf.split_at_mut((within_end - offset) as usize);
    beyond.fill(0);
    if inside.is_empty() {
        return Ok(true);
    }
    let Some(map) = top.map() else {
        return read(top, inside, offset);
    };
    let bs = top.block_size();
    let last_block = (within_end - 1) / bs + 1;
    let mut pos = offset;
    while pos < within_end {
        let (present, run_end_block) = map.run(pos / bs, last_block);
        let run_end = (run_end_block * bs).min(within_end);
        let slice = &mut inside[(pos - offset) as usize..(run_end - offset) as usize];
        let done = if present {
            read(top, slice, pos)?
        } else {
            read_chain_via(rest, slice, pos, read)?
        };
        if !done {
            return Ok(false);
        }
        pos = run_end;
    }
    Ok(true)
}

/// Appends the allocation of `[offset, end)` as seen through `layers` to `out`.
fn status_chain(
    layers: &[Arc<Layer>],
    offset: u64,
    end: u64,
    out: &mut Vec<Extent>,
) -> io::Result<()> {
    let Some((top, rest)) = layers.split_first() else {
        push_extent(out, end - offset, true, true);
        return Ok(());
    };
    let within_end = end.min(top.size()).max(offset);
    if within_end < end {
        // Beyond this layer's size the volume reads as zeroes.
        let tail = end - within_end;
        status_layer(top, rest, offset, within_end, out)?;
        push_extent(out, tail, true, true);
        return Ok(());
    }
    status_layer(top, rest, offset, end, out)
}

fn status_layer(
    top: &Layer,
    rest: &[Arc<Layer>],
    offset: u64,
    end: u64,
    out: &mut Vec<Extent>,
) -> io::Result<()> {
    let mut pos = offset;
    let bs = top.block_size();
    while pos < end {
        let run_end = match top.map() {
            None => end,
            Some(map) => {
                let last_block = (end - 1) / bs + 1;
                let (present, run_end_block) = map.run(pos / bs, last_block);
                let run_end = (run_end_block * bs).min(end);
                if !present {
                    status_chain(rest, pos, run_end, out)?;
                    pos = run_end;
                    continue;
                }
                run_end
            }
        };
        // Blocks this layer holds: storage in the data file is data, a hole reads as zeroes.
        while pos < run_end {
            let (data, next) = top.data_run(pos, run_end)?;
            push_extent(out, next - pos, !data, !data);
            pos = next;
        }
    }
    Ok(())
}

fn push_extent(out: &mut Vec<Extent>, len: u64, hole: bool, zero: bool) {
    if len == 0 {
        return;
    }
    match out.last_mut() {
        Some(last) if last.hole == hole && last.zero == zero => last.len += len,
        _ => out.push(Extent { len, hole, zero }),
    }
}

impl BlockDevice for Volume {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.frozen
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_chain(&self.chain.read(), buf, offset)
    }

    fn read_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        // A snapshot holds the chain's write lock across an fsync; the async thread that
        // calls this must never wait for that.
        let Some(chain) = self.chain.try_read() else {
            return Ok(false);
        };
        read_chain_via(&chain, buf, offset, &Layer::read_data_cached)
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.write(buf, offset, fua)
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_trim: bool, fua: bool) -> io::Result<()> {
        self.zero(offset, len, may_trim, fua)
    }

    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.discard(offset, len)
    }

    fn flush(&self) -> io::Result<()> {
        self.sync()
    }

    fn block_status(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        let mut out = Vec::new();
        status_chain(&self.chain.read(), offset, offset + len, &mut out)?;
        Ok(out)
    }
}
