//! What changed on a volume, for replication: the write hook and the changed-region map.
//!
//! Every acknowledged write passes through [`Replica::write`] after it is applied locally, so
//! the HA pair can mirror it synchronously, and marks its region in a [`ChangeMap`], so a peer
//! that was away can be resynchronised with the regions written meanwhile.

use std::fmt::Debug;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// A modification of a volume, as sent to a replica.
#[derive(Debug, Clone, Copy)]
pub enum WriteOp<'a> {
    /// Bytes written at the offset.
    Data(&'a [u8]),
    /// `len` bytes made to read as zeroes; `may_trim` allows freeing the storage.
    Zeroes { len: u64, may_trim: bool },
}

/// A change of the volume catalog, as sent to a replica: the ids are the owner's, so both
/// nodes hold each volume under one id. Applying one twice changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum CatalogOp {
    /// An empty writable volume.
    Create {
        id: String,
        name: Option<String>,
        size: u64,
        /// The volume's group (its owner's node name).
        #[serde(default)]
        home: Option<String>,
    },
    /// A writable copy-on-write volume over frozen `parent`.
    Clone {
        id: String,
        parent: String,
        name: Option<String>,
        #[serde(default)]
        home: Option<String>,
    },
    /// `volume`'s content frozen as `snapshot_id`; `volume` goes on over it.
    Snapshot {
        volume: String,
        snapshot_id: String,
        name: Option<String>,
    },
    /// A writable volume whose content (its SHA-256, `sha256:<hex>`) was sent made
    /// immutable: an imported golden image.
    Freeze {
        id: String,
        checksum: String,
    },
    Delete {
        id: String,
    },
    /// Volume `id` is served to `allow` (any client when empty), read-only or not.
    Export {
        id: String,
        allow: Vec<ipnet::IpNet>,
        read_only: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iscsi: Option<crate::export::IscsiAccess>,
    },
    /// Volume `id` is not served any more.
    Unexport {
        id: String,
    },
}

impl CatalogOp {
    /// The group a new volume is made in, when the change says.
    pub fn home(&self) -> Option<&str> {
        match self {
            CatalogOp::Create { home, .. } | CatalogOp::Clone { home, .. } => home.as_deref(),
            _ => None,
        }
    }

    /// The volume the change is about.
    pub fn volume(&self) -> &str {
        match self {
            CatalogOp::Create { id, .. }
            | CatalogOp::Clone { id, .. }
            | CatalogOp::Freeze { id, .. }
            | CatalogOp::Delete { id }
            | CatalogOp::Export { id, .. }
            | CatalogOp::Unexport { id } => id,
            CatalogOp::Snapshot { volume, .. } => volume,
        }
    }
}

/// Where acknowledged writes are mirrored. A write is acknowledged to the client only after
/// the replica accepted it, and a flush only after the replica flushed.
pub trait Replica: Send + Sync + Debug {
    /// A copy's write (an image sent to the peer, a resync's region): no client waits on it,
    /// so a slow replica is not a stalled one.
    fn write(&self, volume: &str, offset: u64, op: WriteOp<'_>) -> io::Result<()>;
    /// A client's change: sent while `local` (this node's write of it) runs; both must
    /// succeed.
    fn write_while(
        &self,
        volume: &str,
        offset: u64,
        op: WriteOp<'_>,
        local: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        local()?;
        self.write(volume, offset, op)
    }
    /// A copy's flush (the end of an image sent to the peer).
    fn flush(&self, volume: &str) -> io::Result<()>;
    /// A client's flush: the replica flushes while `local` (this node's sync) runs; both
    /// must succeed.
    fn flush_while(
        &self,
        volume: &str,
        local: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let here = local();
        here.and(self.flush(volume))
    }
    /// Whether writes go anywhere else (false: a single appliance, nothing to wait for).
    fn mirrors(&self) -> bool {
        true
    }
    /// Applies a catalog change on the replica before the owner commits it.
    fn catalog(&self, op: &CatalogOp) -> io::Result<()>;
    /// Whether `volume`'s writes reach the peer now (false while it is marked outdated, or
    /// the volume degraded): only then may a completed flush clear its activity log.
    fn in_sync(&self, _volume: &str) -> bool {
        self.mirrors()
    }
    /// `volume`'s changes go to the peer again (its resync starts).
    fn resume(&self, _volume: &str) {}
    /// `volume`'s changes stay here until its resync (the peer has no copy of it yet):
    /// not sent, their regions kept in its activity log.
    fn hold(&self, _volume: &str) {}
    /// The regions of `volume` the peer's own activity log marks (it wrote them while it
    /// owned the volume, maybe without this node): a resync sends them too; and the
    /// generation of the peer's copy. None: the peer has no such volume (it was made while
    /// the peer was away).
    fn peer_regions(&self, _volume: &str) -> io::Result<Option<PeerCopy>> {
        Ok(Some(PeerCopy::default()))
    }
    /// The peer may forget those regions: this node has them in its own log now.
    fn peer_regions_taken(&self, _volume: &str) -> io::Result<()> {
        Ok(())
    }
    /// How many changes to `volume` were not sent so far (the peer was Outdated, or the
    /// volume degraded): a transfer of it that saw this move did not reach the peer whole.
    fn skipped(&self, _volume: &str) -> u64 {
        0
    }
    /// The peer's copy of `volume` is current at `generation` now (a resync ended).
    fn peer_generation_set(&self, _volume: &str, _generation: u64) -> io::Result<()> {
        Ok(())
    }
    /// Which volumes this node serves (a pair's groups); None: all of them.
    fn ownership(&self) -> Option<std::sync::Arc<crate::ownership::Ownership>> {
        None
    }
}

/// What the peer says of its copy of a volume before a resync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCopy {
    /// The regions its own activity log marks.
    pub regions: Vec<u64>,
    /// Its copy's data generation (`VolumeRecord::generation`).
    pub generation: u64,
}

/// A single appliance: nothing to mirror to.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalOnly;

impl Replica for LocalOnly {
    fn write(&self, _volume: &str, _offset: u64, _op: WriteOp<'_>) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self, _volume: &str) -> io::Result<()> {
        Ok(())
    }
    fn mirrors(&self) -> bool {
        false
    }
    fn catalog(&self, _op: &CatalogOp) -> io::Result<()> {
        Ok(())
    }
}

/// Granularity of change tracking.
pub const REGION_BYTES: u64 = 1 << 20;

/// A bitmap of the 1 MiB regions written since it was last taken.
#[derive(Debug)]
pub struct ChangeMap {
    words: Vec<AtomicU64>,
}

impl ChangeMap {
    pub fn new(size: u64) -> Self {
        let regions = size.div_ceil(REGION_BYTES);
        Self {
            words: (0..regions.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Records that `[offset, offset + len)` changed.
    pub fn mark(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset / REGION_BYTES;
        let last = (offset + len - 1) / REGION_BYTES;
        for r in first..=last {
            if let Some(w) = self.words.get((r / 64) as usize) {
                w.fetch_or(1 << (r % 64), Ordering::AcqRel);
            }
        }
    }

    /// Returns the changed regions as `(offset, len)` byte ranges and clears them.
    pub fn take(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, w) in self.words.iter().enumerate() {
            let bits = w.swap(0, Ordering::AcqRel);
            for b in 0..64 {
                if bits & (1 << b) == 0 {
                    continue;
                }
                let start = (i as u64 * 64 + b) * REGION_BYTES;
                match out.last_mut() {
                    Some((s, l)) if *s + *l == start => *l += REGION_BYTES,
                    _ => out.push((start, REGION_BYTES)),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_merge_into_ranges_and_take_clears() {
        let m = ChangeMap::new(200 * REGION_BYTES);
        m.mark(0, 1);
        m.mark(REGION_BYTES + 5, REGION_BYTES);
        m.mark(150 * REGION_BYTES, 4096);
        assert_eq!(
            m.take(),
            vec![(0, 3 * REGION_BYTES), (150 * REGION_BYTES, REGION_BYTES)]
        );
        assert!(m.take().is_empty());
    }
}
