//! What clusterd drives on a pair member's storaged: which groups it serves and at which
//! epoch, whether the peer is Outdated, and the resync of a returning peer (with its
//! progress). The decisions are clusterd's (made in etcd); this only carries them out.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::PeerReplica;
use crate::ownership::Group;
use crate::store::{ResyncReport, Store, StoreError, VolumeState};

/// A resync as it goes (or as it ended).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResyncProgress {
    pub running: bool,
    /// Volumes resynced so far, and in all.
    pub volumes_done: u64,
    pub volumes: u64,
    /// Regions (1 MiB) of the current volume sent, and to send.
    pub regions_done: u64,
    pub regions: u64,
    /// Bytes sent so far by this resync.
    pub bytes: u64,
    /// How long it has run (milliseconds), or ran.
    pub elapsed_ms: u64,
    /// Why the last resync stopped, if it failed.
    pub error: Option<String>,
    /// Volumes sent whole because the peer's copy was from another generation.
    #[serde(default)]
    pub full_volumes: u64,
    /// While the resync looks for volumes the peer lacks (made while it was away): the one
    /// it is at, which it sends whole if the peer lacks it (minutes for a golden image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending: Option<String>,
}

/// The replication state clusterd and the API read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairStatus {
    pub node: String,
    /// The groups this node knows, by home: epoch, served here or not.
    pub groups: BTreeMap<String, Group>,
    /// The pair marked the peer Outdated: this node's writes go on without it.
    pub peer_outdated: bool,
    /// How long changes have waited for the peer (milliseconds), if they wait.
    pub stalled_ms: Option<u64>,
    /// Volumes the peer could not keep up (its disk full...): written here alone.
    pub degraded: Vec<String>,
    /// Writable volumes served here whose activity log marks regions the peer may lack.
    pub out_of_sync: Vec<String>,
    pub resync: ResyncProgress,
    /// Groups the peer wrote at the epoch this node serves them with: refused, never merged.
    #[serde(default)]
    pub split_brain: Vec<String>,
    /// Volumes whose peer copy needs a resync although the peer is not Outdated: degraded
    /// ones, those whose activity log held regions when storaged started (it stopped or
    /// crashed with writes maybe applied here only), and those whose transfer to the peer
    /// was cut (the unsent list).
    #[serde(default)]
    pub needs_resync: Vec<String>,
}

/// How many times a resync looks for volumes the peer lacks before it sends regions.
const MISSING_PASSES: usize = 3;

#[derive(Debug)]
pub struct PairLink {
    store: Arc<Store>,
    link: Arc<PeerReplica>,
    node: String,
    resync: Mutex<ResyncProgress>,
    /// One resync at a time.
    resyncing: Mutex<()>,
}

impl PairLink {
    pub fn new(store: Arc<Store>, link: Arc<PeerReplica>, node: &str) -> Arc<PairLink> {
        Arc::new(PairLink {
            store,
            link,
            node: node.to_string(),
            resync: Mutex::new(ResyncProgress::default()),
            resyncing: Mutex::new(()),
        })
    }

    /// This node serves group `home` at `epoch` from now on.
    pub fn own(&self, home: &str, epoch: u64) {
        let o = self.store.ownership();
        if !o.groups().get(home).is_some_and(|g| g.owned) {
            tracing::warn!("serving group {home} at epoch {epoch}");
        }
        o.own(home, epoch);
        // Taken over while the peer is away: its volumes are ahead of the peer's copies now.
        if self.link.peer_outdated() {
            self.new_generations();
        }
    }

    /// The volumes served here go on without the peer: each starts a new generation.
    fn new_generations(&self) {
        if let Err(e) = self.store.start_generations_without_peer() {
            // Not fatal: the generations only decide between a resync from the log and a
            // whole one; the log still covers everything written here.
            tracing::error!("starting new volume generations: {e}");
        }
    }

    /// This node stops serving group `home` (its clients' connections close).
    pub fn disown(&self, home: &str, epoch: u64) {
        let o = self.store.ownership();
        if o.groups().get(home).is_some_and(|g| g.owned) {
            tracing::warn!("no longer serving group {home} (epoch {epoch})");
        }
        o.disown(home, Some(epoch));
    }

    pub fn set_peer_outdated(&self, outdated: bool) {
        if self.link.peer_outdated() != outdated {
            tracing::warn!(
                "the peer is {}",
                if outdated {
                    "marked Outdated: writes go on without it"
                } else {
                    "back: writes go to it again"
                }
            );
        }
        self.link.set_peer_outdated(outdated);
        if outdated {
            self.new_generations();
        }
    }

    /// Whether the peer's replication port answers now.
    pub fn peer_reachable(&self) -> bool {
        self.link.probe()
    }

    pub fn status(&self) -> PairStatus {
        let ownership = self.store.ownership();
        let served: Vec<String> = self
            .store
            .list()
            .into_iter()
            .filter(|v| v.record.state == VolumeState::Writable)
            .filter(|v| ownership.owns(&v.record.id))
            .map(|v| v.record.id)
            .collect();
        let out_of_sync = served
            .iter()
            .filter(|id| self.store.dirty_regions(id).unwrap_or(0) > 0)
            .cloned()
            .collect();
        let degraded = self.link.degraded();
        let mut needs_resync: Vec<String> = served
            .into_iter()
            .filter(|id| degraded.contains(id) || self.store.recovering(id).unwrap_or(true))
            .collect();
        needs_resync.extend(self.store.unsent());
        PairStatus {
            node: self.node.clone(),
            groups: ownership.groups(),
            peer_outdated: self.link.peer_outdated(),
            stalled_ms: self.link.stalled_for().map(|d| d.as_millis() as u64),
            degraded,
            out_of_sync,
            resync: self.resync.lock().clone(),
            split_brain: ownership.split_brain(),
            needs_resync,
        }
    }

    /// Brings the peer's copies of every volume this node serves up to date: the regions of
    /// their activity logs, one volume after the other. The peer must not be Outdated (its
    /// new writes go to it meanwhile).
    pub fn resync(&self) -> Result<ResyncReport, StoreError> {
        let _one = self.resyncing.lock();
        let started = std::time::Instant::now();
        *self.resync.lock() = ResyncProgress {
            running: true,
            ..Default::default()
        };
        // What was deleted here while the peer was away goes there too.
        if let Err(e) = self.store.send_deletes() {
            return Err(self.failed(e, started));
        }
        // Volumes made while the peer was away are sent first. Sending a golden image takes
        // minutes: volumes made meanwhile (a clone deployed from it) are sent by the next
        // pass.
        for _ in 0..MISSING_PASSES {
            match self.send_missing() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(self.failed(e, started)),
            }
        }
        let ownership = self.store.ownership();
        let volumes: Vec<String> = self
            .store
            .list()
            .into_iter()
            .filter(|v| v.record.state == VolumeState::Writable)
            .filter(|v| ownership.owns(&v.record.id))
            .map(|v| v.record.id)
            .collect();
        *self.resync.lock() = ResyncProgress {
            running: true,
            volumes: volumes.len() as u64,
            elapsed_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        let mut total = ResyncReport::default();
        for (n, id) in volumes.iter().enumerate() {
            let r = self.store.resync(id, &mut |done, all| {
                let mut p = self.resync.lock();
                p.regions_done = done;
                p.regions = all;
                p.elapsed_ms = started.elapsed().as_millis() as u64;
            });
            match r {
                Ok(r) => {
                    total.regions += r.regions;
                    total.bytes += r.bytes;
                    let mut p = self.resync.lock();
                    p.full_volumes += u64::from(r.full);
                    p.volumes_done = n as u64 + 1;
                    p.bytes = total.bytes;
                }
                // Deleted meanwhile: nothing to send.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(self.failed(e, started)),
            }
        }
        let elapsed = started.elapsed();
        {
            let mut p = self.resync.lock();
            p.running = false;
            p.bytes = total.bytes;
            p.elapsed_ms = elapsed.as_millis() as u64;
        }
        if total.regions > 0 {
            tracing::info!(
                "resync done: {} regions, {} bytes sent to the peer in {elapsed:?}",
                total.regions,
                total.bytes
            );
        }
        Ok(total)
    }

    /// Sends the volumes the peer lacks, parents before children: frozen ones whole,
    /// writable ones created there and their regions marked. Returns how many it lacked.
    fn send_missing(&self) -> Result<usize, StoreError> {
        let ownership = self.store.ownership();
        let mut all = self.store.list();
        all.sort_by_key(|v| v.parent_chain.len());
        let mut sent = 0;
        for v in all {
            let r = &v.record;
            if r.state == VolumeState::Writable && !ownership.owns(&r.id) {
                continue;
            }
            self.resync.lock().sending = Some(r.id.clone());
            let missing = self.store.send_missing(&r.id);
            self.resync.lock().sending = None;
            sent += usize::from(missing?);
        }
        Ok(sent)
    }

    /// Records why the resync stopped (in its progress) and returns the error.
    fn failed(&self, e: StoreError, started: std::time::Instant) -> StoreError {
        let mut p = self.resync.lock();
        p.running = false;
        p.error = Some(e.to_string());
        p.elapsed_ms = started.elapsed().as_millis() as u64;
        e
    }
}
