//! The activity log: which 1 MiB regions of a replicated volume may differ from the peer's
//! copy, kept on disk (DRBD's activity log and bitmap in one).
//!
//! The protocol, per write: (1) the regions it touches are marked in memory as having a
//! write in flight; (2) if a region's bit is not set on disk, it is set and the log file is
//! synced **before** the write is applied, so after a crash at any point every region that
//! may hold a write the peer has not got is marked; (3) the write is applied and replicated.
//! A bit is cleared only after a flush that both nodes completed, for regions with no write
//! in flight and none begun since that flush started; while the peer is outdated nothing is
//! cleared, so the bits are exactly what a resync must copy. Clearing is written without a
//! sync: a bit that comes back after a crash costs one region of resync, never data.
//!
//! A resync locks one region at a time ([`ActivityLog::lock_region`]): writes to it wait
//! until its content has been sent, then go to both nodes as usual.
//!
//! Regions found marked when the log is opened (storaged stopped or crashed with them marked:
//! a write may have been applied here and not there) are **recovered** regions: no flush
//! clears them, however in sync the peer is now; only a resync that has sent them does
//! ([`ActivityLog::sent`]). Without that, the first flush after a crash would forget a region
//! whose two copies differ.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::changes::REGION_BYTES;

/// Regions marked beyond a write's last one when it has to mark any.
const AHEAD: u64 = 3;
/// The "write generation" of a region a resync has to send: marked when the log was opened
/// (writes maybe applied here only), or listed by a resync that has not sent it yet. Never
/// "before" a flush, and kept by the writes that come meanwhile (a write to part of the
/// region does not bring the rest of it to the peer), so only [`ActivityLog::sent`] lets
/// it be cleared.
const UNSENT: u64 = u64::MAX;

#[derive(Debug)]
pub struct ActivityLog {
    file: File,
    /// The bits as on disk (after the sync that set them).
    bits: Mutex<Vec<u64>>,
    inflight: Vec<AtomicU32>,
    /// Per region: the write generation of the last write begun there, or [`UNSENT`].
    written: Vec<AtomicU64>,
    generation: AtomicU64,
    /// The generation at which the previous completed flush started.
    previous_flush: AtomicU64,
    locked: Mutex<HashSet<u64>>,
    unlocked: Condvar,
    regions: u64,
}

/// A write in flight: its regions count as busy until it is dropped.
#[derive(Debug)]
pub struct InFlight<'a> {
    log: &'a ActivityLog,
    first: u64,
    last: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        for r in self.first..=self.last {
            self.log.inflight[r as usize].fetch_sub(1, Ordering::AcqRel);
        }
        // A resync waiting for the region to be quiet.
        let _l = self.log.locked.lock();
        self.log.unlocked.notify_all();
    }
}

/// A region held by a resync: writes to it wait until this is dropped.
#[derive(Debug)]
pub struct RegionLock<'a> {
    log: &'a ActivityLog,
    region: u64,
}

impl Drop for RegionLock<'_> {
    fn drop(&mut self) {
        self.log.locked.lock().remove(&self.region);
        self.log.unlocked.notify_all();
    }
}

impl ActivityLog {
    /// Opens (creating) the log of a volume of `size` bytes at `path`.
    pub fn open(path: &Path, size: u64) -> io::Result<ActivityLog> {
        let regions = size.div_ceil(REGION_BYTES);
        let words = regions.div_ceil(64) as usize;
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let mut raw = vec![0u8; words * 8];
        let on_disk = file.metadata()?.len() as usize;
        file.read_exact_at(&mut raw[..on_disk.min(words * 8)], 0)?;
        let bits: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        if on_disk < words * 8 {
            file.set_len((words * 8) as u64)?;
            file.sync_all()?;
        }
        let marked = |r: u64| bits_has(&bits, r);
        let written = (0..regions)
            .map(|r| AtomicU64::new(if marked(r) { UNSENT } else { 0 }))
            .collect();
        Ok(ActivityLog {
            file,
            bits: Mutex::new(bits),
            inflight: (0..regions).map(|_| AtomicU32::new(0)).collect(),
            written,
            generation: AtomicU64::new(0),
            previous_flush: AtomicU64::new(0),
            locked: Mutex::new(HashSet::new()),
            unlocked: Condvar::new(),
            regions,
        })
    }

    /// The regions marked in the log file at `path` (of a volume not open now).
    pub fn count_on_disk(path: &Path) -> io::Result<u64> {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        Ok(raw.iter().map(|b| u64::from(b.count_ones())).sum())
    }

    fn range(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        if len == 0 || self.regions == 0 {
            return None;
        }
        let first = offset / REGION_BYTES;
        let last = ((offset + len - 1) / REGION_BYTES).min(self.regions - 1);
        (first <= last).then_some((first, last))
    }

    /// Steps (1) and (2) for a write of `[offset, offset + len)`: returns once its regions
    /// are marked on disk; the write is applied while the guard lives.
    pub fn begin(&self, offset: u64, len: u64) -> io::Result<Option<InFlight<'_>>> {
        let Some((first, last)) = self.range(offset, len) else {
            return Ok(None);
        };
        {
            let mut locked = self.locked.lock();
            while (first..=last).any(|r| locked.contains(&r)) {
                self.unlocked.wait(&mut locked);
            }
            let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            for r in first..=last {
                self.inflight[r as usize].fetch_add(1, Ordering::AcqRel);
                let _ = self.written[r as usize].fetch_update(
                    Ordering::AcqRel,
                    Ordering::Acquire,
                    |w| (w != UNSENT).then_some(g),
                );
            }
        }
        let guard = InFlight {
            log: self,
            first,
            last,
        };
        fail::fail_point!("activity::marked");
        let mut bits = self.bits.lock();
        let mut changed = Vec::new();
        // A region set now brings the next few with it (one sync for a sequential stream's
        // next MiBs, as DRBD's 4 MiB extents do): at most that much more to resync.
        let needs = (first..=last).any(|r| bits[(r / 64) as usize] & (1 << (r % 64)) == 0);
        let last = if needs {
            (last + AHEAD).min(self.regions - 1)
        } else {
            last
        };
        for r in first..=last {
            let (w, b) = ((r / 64) as usize, r % 64);
            if bits[w] & (1 << b) == 0 {
                bits[w] |= 1 << b;
                if changed.last() != Some(&w) {
                    changed.push(w);
                }
            }
        }
        if !changed.is_empty() {
            for w in changed {
                self.file
                    .write_all_at(&bits[w].to_le_bytes(), (w * 8) as u64)?;
            }
            self.file.sync_data()?;
        }
        fail::fail_point!("activity::synced");
        Ok(Some(guard))
    }

    /// The write generation now: a flush that starts here covers writes begun before.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// After a flush both nodes completed, begun at generation `since`: clears the regions
    /// with nothing in flight and nothing begun since.
    pub fn clear_clean(&self, since: u64) {
        let mut bits = self.bits.lock();
        // Regions written since the flush before this one stay marked one flush longer:
        // a region being written now is likely written again soon, and clearing it would
        // cost a sync of the log at its next write.
        let before = self.previous_flush.swap(since, Ordering::AcqRel).min(since);
        let mut any = false;
        for r in 0..self.regions {
            let (w, b) = ((r / 64) as usize, r % 64);
            let written = self.written[r as usize].load(Ordering::Acquire);
            if bits[w] & (1 << b) != 0
                && self.inflight[r as usize].load(Ordering::Acquire) == 0
                && (written <= before || written == 0)
            {
                bits[w] &= !(1 << b);
                any = true;
            }
        }
        if any {
            self.persist(&bits);
        }
    }

    fn persist(&self, bits: &[u64]) {
        let raw: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        if let Err(e) = self.file.write_all_at(&raw, 0) {
            tracing::warn!("writing the activity log: {e} (a resync may copy more)");
        }
    }

    /// Marks every region (synced): the peer's copy is to be rebuilt whole (a full resync).
    pub fn mark_all(&self) -> io::Result<()> {
        let mut bits = self.bits.lock();
        for r in 0..self.regions {
            bits[(r / 64) as usize] |= 1 << (r % 64);
        }
        let raw: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.file.write_all_at(&raw, 0)?;
        self.file.sync_data()
    }

    /// Marks `regions` (synced): the peer's copy of them is not to be trusted (the regions
    /// the peer itself wrote last and this node may lack).
    pub fn mark_regions(&self, regions: &[u64]) -> io::Result<()> {
        let mut bits = self.bits.lock();
        for r in regions.iter().filter(|r| **r < self.regions) {
            bits[(r / 64) as usize] |= 1 << (r % 64);
        }
        let raw: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.file.write_all_at(&raw, 0)?;
        self.file.sync_data()
    }

    /// Clears every region (synced): the owner has taken them into its own log and will
    /// send them all to this node.
    pub fn clear_all(&self) -> io::Result<()> {
        let mut bits = self.bits.lock();
        bits.iter_mut().for_each(|w| *w = 0);
        let raw: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.file.write_all_at(&raw, 0)?;
        self.file.sync_data()
    }

    /// Whether regions are still to be sent by a resync: marked when the log was opened, or
    /// listed by a resync that did not send them (it was interrupted).
    pub fn recovered(&self) -> bool {
        self.written
            .iter()
            .any(|w| w.load(Ordering::Acquire) == UNSENT)
    }

    /// A resync starts: the regions marked now, each held marked until [`Self::sent`] (a
    /// flush both nodes complete meanwhile must not clear a region the peer lacks part of:
    /// were the resync interrupted, the next one would not know to send it).
    pub fn to_resync(&self) -> Vec<u64> {
        let bits = self.bits.lock();
        let dirty: Vec<u64> = (0..self.regions).filter(|r| bits_has(&bits, *r)).collect();
        for r in &dirty {
            self.written[*r as usize].store(UNSENT, Ordering::Release);
        }
        dirty
    }

    /// A resync has sent `region`'s content to the peer (no write in flight there): the
    /// next flush both complete may clear it.
    pub fn sent(&self, region: u64) {
        if let Some(w) = self.written.get(region as usize) {
            let _ = w.compare_exchange(UNSENT, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The regions marked (possibly different on the peer).
    pub fn dirty(&self) -> Vec<u64> {
        let bits = self.bits.lock();
        (0..self.regions).filter(|r| bits_has(&bits, *r)).collect()
    }

    /// Holds `region` for a resync: waits for its writes in flight to end; new ones wait.
    pub fn lock_region(&self, region: u64) -> RegionLock<'_> {
        let mut locked = self.locked.lock();
        while locked.contains(&region) {
            self.unlocked.wait(&mut locked);
        }
        locked.insert(region);
        while self.inflight[region as usize].load(Ordering::Acquire) > 0 {
            self.unlocked.wait(&mut locked);
        }
        RegionLock { log: self, region }
    }
}

fn bits_has(bits: &[u64], r: u64) -> bool {
    bits[(r / 64) as usize] & (1 << (r % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_marked_at_open_are_cleared_only_after_a_resync_sent_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.al");
        {
            let log = ActivityLog::open(&path, 20 * REGION_BYTES).unwrap();
            // A write in flight when the process dies: its regions stay marked on disk.
            std::mem::forget(log.begin(5 * REGION_BYTES, 10).unwrap());
        }
        let log = ActivityLog::open(&path, 20 * REGION_BYTES).unwrap();
        assert!(log.recovered());
        assert_eq!(log.dirty(), [5, 6, 7, 8]);
        // Flushes completed with the peer in sync do not forget them.
        for _ in 0..3 {
            log.clear_clean(log.generation());
        }
        assert_eq!(log.dirty(), [5, 6, 7, 8]);
        for r in [5, 6, 7, 8] {
            log.sent(r);
        }
        assert!(!log.recovered());
        log.clear_clean(log.generation());
        assert!(log.dirty().is_empty());
    }

    #[test]
    fn bits_are_on_disk_before_the_write_and_cleared_only_when_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.al");
        let log = ActivityLog::open(&path, 200 * REGION_BYTES).unwrap();
        let since = log.generation();
        {
            let _w = log.begin(REGION_BYTES - 1, 2).unwrap();
            // Marked on disk while the write is in flight: a crash now leaves them marked.
            // (With the next regions a sequential stream is about to write.)
            let again = ActivityLog::open(&path, 200 * REGION_BYTES).unwrap();
            assert_eq!(again.dirty(), [0, 1, 2, 3, 4]);
            // A flush that completes now cannot clear a region with a write in flight.
            log.clear_clean(log.generation());
            assert_eq!(log.dirty(), [0, 1]);
        }
        // Written after the flush started: kept.
        log.clear_clean(since);
        assert_eq!(log.dirty(), [0, 1]);
        // Written before the flush before last: cleared (after one more flush: hot regions
        // stay marked a flush longer).
        log.clear_clean(log.generation());
        log.clear_clean(log.generation());
        assert!(log.dirty().is_empty());
        drop(log.begin(150 * REGION_BYTES, 10).unwrap());
        drop(log);
        let reopened = ActivityLog::open(&path, 200 * REGION_BYTES).unwrap();
        assert_eq!(reopened.dirty(), [150, 151, 152, 153]);
    }

    #[test]
    fn a_locked_region_holds_writes_back_until_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(
            ActivityLog::open(&dir.path().join("v.al"), 4 * REGION_BYTES).unwrap(),
        );
        let lock = log.lock_region(2);
        let l2 = std::sync::Arc::clone(&log);
        let writer = std::thread::spawn(move || {
            let _g = l2.begin(2 * REGION_BYTES + 5, 1).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !writer.is_finished(),
            "a write into a region being resynced waits"
        );
        drop(lock);
        writer.join().unwrap();
        // Other regions never wait.
        let _l = log.lock_region(3);
        drop(log.begin(0, 10).unwrap());
    }
}
