//! The write path: the only code that modifies a volume's data.
//!
//! Every write, zero and trim is applied to the top layer, copying the parent's bytes into the
//! partial edge blocks it is first to touch, while it is sent to the replica (both must have
//! it before it is acknowledged), then marked in the change map. FUA writes and flushes sync the data file first and the
//! presence map after it.

use std::io;
use std::sync::Arc;

use super::chain::{Volume, read_chain};
use super::changes::WriteOp;
use super::layer::Layer;

impl Volume {
    fn check_writable(&self) -> io::Result<()> {
        if self.frozen {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("volume {} is frozen (read-only)", self.id),
            ));
        }
        Ok(())
    }

    /// Writes `buf` at `offset`.
    pub fn write(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.check_writable()?;
        let _turn = self.in_order(offset, buf.len() as u64);
        let _in_flight = self.begin(offset, buf.len() as u64)?;
        self.record(offset, WriteOp::Data(buf), fua)
    }

    /// Makes `[offset, offset + len)` read as zeroes.
    pub fn zero(&self, offset: u64, len: u64, may_trim: bool, fua: bool) -> io::Result<()> {
        self.check_writable()?;
        let _turn = self.in_order(offset, len);
        let _in_flight = self.begin(offset, len)?;
        self.record(offset, WriteOp::Zeroes { len, may_trim }, fua)
    }

    /// On a pair: waits until the changes begun before this one that overlap it have been
    /// applied on both nodes, so both apply overlapping changes in the same order
    /// ([`super::overlap`]). A single appliance has nothing to keep in step.
    fn in_order(&self, offset: u64, len: u64) -> Option<super::overlap::Turn<'_>> {
        self.replica
            .mirrors()
            .then(|| self.in_order.begin(offset, len))
    }

    /// Discards the whole blocks inside `[offset, offset + len)`: they read as zeroes and
    /// their storage is freed. Partial blocks at the edges are left as they are, which the
    /// NBD specification allows for a trim.
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let bs = self.chain.read()[0].block_size();
        let start = offset.div_ceil(bs) * bs;
        let end = ((offset + len) / bs * bs).max(start);
        if start < end {
            self.zero(start, end - start, true, false)?;
        }
        Ok(())
    }

    /// Makes every completed write durable, locally and on the replica.
    pub fn sync(&self) -> io::Result<()> {
        if self.frozen {
            return Ok(());
        }
        let top = Arc::clone(&self.chain.read()[0]);
        if !self.replica.mirrors() {
            return top.sync();
        }
        let since = self.activity.as_ref().map(|a| a.generation());
        let peer_had_all = self.replica.in_sync(&self.id);
        // The replica syncs while this node does: a flush costs the slower of the two, not
        // their sum.
        self.replica.flush_while(&self.id, &mut || top.sync())?;
        fail::fail_point!("flush::synced");
        // Both nodes hold everything begun before the flush: those regions are in sync.
        if let (Some(log), Some(since)) = (&self.activity, since)
            && peer_had_all
            && self.replica.in_sync(&self.id)
        {
            log.clear_clean(since);
            fail::fail_point!("activity::cleared");
        }
        Ok(())
    }

    /// Marks the regions of a write in the activity log (on disk) before it is applied.
    fn begin(&self, offset: u64, len: u64) -> io::Result<Option<super::activity::InFlight<'_>>> {
        match &self.activity {
            Some(log) => log.begin(offset, len),
            None => Ok(None),
        }
    }

    /// Applies a change the volume's owner sent to this node, which holds its replica: as
    /// [`Volume::write`] and [`Volume::zero`] do, without mirroring it back; `sync` makes it
    /// durable (a FUA write, or a flush when `op` is `None`).
    pub fn apply_replicated(
        &self,
        offset: u64,
        op: Option<WriteOp<'_>>,
        sync: bool,
    ) -> io::Result<()> {
        if let Some(op) = op {
            self.check_writable()?;
            let len = self.apply_here(offset, op)?;
            self.changes.mark(offset, len);
        }
        if sync && !self.frozen {
            let top = Arc::clone(&self.chain.read()[0]);
            top.sync()?;
        }
        Ok(())
    }

    /// Applies `op` to this node's layers (nothing else); returns the bytes it covers.
    fn apply_here(&self, offset: u64, op: WriteOp<'_>) -> io::Result<u64> {
        let chain = self.chain.read();
        match op {
            WriteOp::Data(buf) => {
                apply(&chain, offset, buf.len() as u64, |top| {
                    top.write_data(buf, offset)
                })?;
                Ok(buf.len() as u64)
            }
            WriteOp::Zeroes { len, may_trim } => {
                apply(&chain, offset, len, |top| {
                    if may_trim {
                        top.punch(offset, len)
                    } else {
                        top.zero_allocated(offset, len)
                    }
                })?;
                Ok(len)
            }
        }
    }

    /// Applies `op` here while the replica applies it too, marks it in the change map, and
    /// makes it durable on both for a FUA write.
    fn record(&self, offset: u64, op: WriteOp<'_>, fua: bool) -> io::Result<()> {
        let len = match op {
            WriteOp::Data(b) => b.len() as u64,
            WriteOp::Zeroes { len, .. } => len,
        };
        self.replica.write_while(&self.id, offset, op, &mut || {
            self.apply_here(offset, op).map(drop)
        })?;
        fail::fail_point!("write::replicated");
        self.changes.mark(offset, len);
        if fua { self.sync() } else { Ok(()) }
    }
}

/// Applies `op`, which modifies `[offset, offset + len)` of the top layer's data file, and
/// keeps the presence map true: blocks the range only partly covers get the rest of their
/// bytes from the parent before they are marked present.
pub(crate) fn apply(
    chain: &[Arc<Layer>],
    offset: u64,
    len: u64,
    op: impl FnOnce(&Layer) -> io::Result<()>,
) -> io::Result<()> {
    let top = &chain[0];
    let Some(map) = top.map() else {
        return op(top);
    };
    if len == 0 {
        return Ok(());
    }
    let bs = top.block_size();
    let (first, last) = (offset / bs, (offset + len - 1) / bs + 1);
    if map.all_present(first, last) {
        return op(top);
    }
    let _first_touch = top.first_touch.lock();
    let head_gap = (!map.is_present(first)).then(|| (first * bs, offset - first * bs));
    let tail_end = (last * bs).min(top.size());
    let tail_gap =
        (!map.is_present(last - 1)).then(|| (offset + len, tail_end.saturating_sub(offset + len)));
    op(top)?;
    for (pos, gap) in [head_gap, tail_gap].into_iter().flatten() {
        if gap > 0 {
            let mut buf = vec![0u8; gap as usize];
            read_chain(&chain[1..], &mut buf, pos)?;
            top.write_data(&buf, pos)?;
        }
    }
    map.set_range(first, last);
    Ok(())
}

/// Blocks copied per step of a flatten; the first-touch lock is released between steps so
/// clients' writes are not held up for long.
const FLATTEN_STEP: u64 = 4 << 20;

impl Volume {
    /// Copies every block the top layer does not hold from the parents into it, keeping
    /// zero blocks as holes. Afterwards the top layer reads the same without its parents.
    pub(crate) fn fill_from_parents(&self) -> io::Result<()> {
        let chain = self.chain.read();
        let top = &chain[0];
        let Some(map) = top.map() else {
            return Ok(());
        };
        let bs = top.block_size();
        let blocks = map.header().blocks();
        let step = (FLATTEN_STEP / bs).max(1);
        let mut buf = Vec::new();
        let mut b = 0;
        while b < blocks {
            let (present, run_end) = map.run(b, blocks);
            if present {
                b = run_end;
                continue;
            }
            let step_end = run_end.min(b + step);
            let _first_touch = top.first_touch.lock();
            let mut c = b;
            while c < step_end {
                // Re-read under the lock: a client may have written meanwhile.
                let (present, end) = map.run(c, step_end);
                if !present {
                    let (off, end_off) = (c * bs, (end * bs).min(self.size));
                    buf.resize((end_off - off) as usize, 0);
                    read_chain(&chain[1..], &mut buf, off)?;
                    copy_keeping_holes(top, &buf, off, bs)?;
                    map.set_range(c, end);
                }
                c = end;
            }
            b = step_end;
        }
        top.sync()
    }
}

/// Writes `buf` at `offset`, punching holes for the blocks that are all zero (a write that
/// crashed before its bit was set may have left bytes there).
fn copy_keeping_holes(top: &Layer, buf: &[u8], offset: u64, bs: u64) -> io::Result<()> {
    let mut pos = 0usize;
    while pos < buf.len() {
        let zero = is_zero(&buf[pos..(pos + bs as usize).min(buf.len())]);
        let mut end = pos;
        while end < buf.len() && is_zero(&buf[end..(end + bs as usize).min(buf.len())]) == zero {
            end = (end + bs as usize).min(buf.len());
        }
        let at = offset + pos as u64;
        if zero {
            top.punch(at, (end - pos) as u64)?;
        } else {
            top.write_data(&buf[pos..end], at)?;
        }
        pos = end;
    }
    Ok(())
}

pub(crate) fn is_zero(buf: &[u8]) -> bool {
    let words = buf.chunks_exact(16);
    let rest = words.remainder();
    words
        .map(|c| u128::from_ne_bytes(c.try_into().unwrap_or([1; 16])))
        .all(|w| w == 0)
        && rest.iter().all(|&b| b == 0)
}
