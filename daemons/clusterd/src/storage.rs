//! The pair's storage role: which node serves each **group** of OS volumes (a node's
//! volumes, booted from that node's floating storage address), at which **epoch**; the
//! takeover of a dead node's group; marking the peer **Outdated** so that writes go on
//! without it; the **resync** when it returns. Every decision is an etcd transaction; this
//! node's storaged carries it out (`org.streamer.StoragePair1`).
//!
//! * A group's record (`/streamer/storage/groups/<home>`): its owner, its epoch, and which
//!   node's copy is outdated, if any.
//! * **Takeover** of group *g* by this node: only when *g*'s owner has no heartbeat (its
//!   lease expired: it fenced itself before that) and this node's copy is not outdated. In
//!   this order: the transaction (owner = me, epoch + 1, the old owner's copy outdated), then
//!   storaged serves the group at the new epoch (its exports are ready: they are replicated),
//!   then the storage address is added and announced (gratuitous ARP).
//! * **Outdating the peer**: when this node's writes have waited for the peer longer than
//!   [`OUTDATE_AFTER`], a transaction records the peer's copies of this node's groups as
//!   outdated, and only then do writes go on without it, a resync running or not (it stops,
//!   and starts again when the peer is back). Without quorum the transaction fails and
//!   writes keep waiting: they stall, they never fail.
//! * **Fencing**: this node serves groups only while its cluster session lives; when it
//!   ends (its lease could expire) storaged stops serving them and the addresses go, before
//!   the other node can take them over.
//! * **Resync**: when the outdated peer has a heartbeat again and its replication port
//!   answers, new writes go to it again, the activity logs' regions are sent, and only then
//!   is the peer's copy recorded as up to date.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use storaged::control::client::StorageClient;
use storaged::replication::pair::PairStatus;

use crate::alerts::Condition;
use crate::config::VirtualIp;
use crate::node::{NodeError, Shared, connect, timed};
use crate::status::{NODES_PREFIX, Role};
use crate::vip;

/// Where each group's record lives.
pub const GROUPS_PREFIX: &str = "/streamer/storage/groups/";
/// How long this node's writes may wait for the peer before it is marked Outdated.
pub const OUTDATE_AFTER: Duration = Duration::from_millis(1500);
/// How often the groups are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How long a node that starts waits for the other node's heartbeat before it takes over
/// the other node's group (both nodes booting at once is not a failure). A heartbeat this
/// node saw go away is a failure at once.
pub const STARTUP_GRACE: Duration = Duration::from_secs(15);

/// A group's record in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    /// The node serving the group's volumes now.
    pub owner: String,
    /// Grows by one at every change of owner: replication refuses an older one.
    pub epoch: u64,
    /// The node whose copy of the group's volumes lacks writes (none: both are current).
    #[serde(default)]
    pub outdated: Option<String>,
}

fn key(home: &str) -> String {
    format!("{GROUPS_PREFIX}{home}")
}

/// The storage role of this node, for as long as clusterd runs.
pub async fn run(shared: Arc<Shared>, storaged: PathBuf) {
    let mut role = Storage {
        shared: Arc::clone(&shared),
        socket: storaged,
        held: HashMap::new(),
        resync: None,
        storaged: None,
        etcd: None,
        seen_alive: std::collections::HashSet::new(),
        started: tokio::time::Instant::now(),
        quiet_until: None,
    };
    // A clusterd that starts serves nothing: addresses left by a crashed predecessor go.
    for m in shared.cfg.nodes() {
        if let Some(addr) = &m.storage_ip
            && let Err(e) = vip::release(addr).await
        {
            tracing::error!("storage: removing a leftover storage address: {e}");
        }
    }
    let mut status = shared.status.subscribe();
    loop {
        let live = status.borrow_and_update().role != Role::Starting;
        if live {
            if let Err(e) = role.step().await {
                tracing::warn!("storage: {e}");
                role.storaged = None;
                role.etcd = None;
            }
        } else {
            role.fence().await;
        }
        // The end of a session is acted on at once: it is this node's fence.
        let _ = tokio::time::timeout(TICK, status.changed()).await;
    }
}

#[derive(Debug, thiserror::Error)]
enum StorageError {
    #[error("{0}")]
    Store(#[from] NodeError),
    #[error("storaged: {0}")]
    Storaged(String),
}

impl From<etcd_client::Error> for StorageError {
    fn from(e: etcd_client::Error) -> Self {
        StorageError::Store(NodeError::Etcd(e))
    }
}

fn storaged_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Storaged(e.to_string())
}

struct Storage {
    shared: Arc<Shared>,
    socket: PathBuf,
    /// Storage addresses this node holds, by group.
    held: HashMap<String, vip::Announcer>,
    /// The resync running, if any (its result: whether it completed).
    resync: Option<tokio::task::JoinHandle<Result<(), String>>>,
    storaged: Option<StorageClient>,
    /// The connection to this node's etcd, kept between steps (four a second).
    etcd: Option<Client>,
    /// Nodes whose heartbeat this clusterd has seen.
    seen_alive: std::collections::HashSet<String>,
    started: tokio::time::Instant,
    /// No probe of the peer's replication port and no resync before then (set after a
    /// probe went unanswered or a resync failed: a node that is down is not asked four
    /// times a second).
    quiet_until: Option<tokio::time::Instant>,
}

/// What a step of the storage loop saw, for its resync part.
struct Seen<'a> {
    /// This node's groups (record, revision).
    mine: &'a [(&'a String, &'a GroupRecord, i64)],
    peer: &'a str,
    /// A group of this node's records the peer's copy as outdated.
    peer_outdated: bool,
    /// Nodes with a heartbeat.
    alive: &'a [String],
    /// This node's storaged, as the step began.
    st: &'a PairStatus,
}

/// How long after an unanswered probe or a failed resync the next attempt waits.
const RETRY_AFTER: Duration = Duration::from_secs(2);

impl Storage {
    async fn client(&mut self) -> Result<StorageClient, StorageError> {
        if let Some(c) = &self.storaged {
            return Ok(c.clone());
        }
        let c = StorageClient::connect(&self.socket)
            .await
            .map_err(storaged_err)?;
        self.storaged = Some(c.clone());
        Ok(c)
    }

    fn address_of(&self, home: &str) -> Option<VirtualIp> {
        self.shared
            .cfg
            .member(home)
            .and_then(|m| m.storage_ip.clone())
    }

    /// Stops serving every group and drops every storage address: this node may no longer
    /// be a member in good standing.
    async fn fence(&mut self) {
        if let Some(r) = self.resync.take() {
            r.abort();
        }
        if let Ok(c) = self.client().await
            && let Ok(st) = c.pair_status().await
        {
            for (home, g) in &st.groups {
                if g.owned {
                    tracing::warn!("storage: fenced: no longer serving group {home}");
                    let _ = c.pair().disown(home, g.epoch).await;
                }
            }
        }
        let homes: Vec<String> = self.held.keys().cloned().collect();
        for home in homes {
            self.release(&home).await;
        }
        self.shared.set_storage_conditions(Vec::new(), None);
    }

    async fn take(&mut self, home: &str) {
        if self.held.contains_key(home) {
            return;
        }
        let Some(addr) = self.address_of(home) else {
            return;
        };
        match vip::take(&addr).await {
            Ok(a) => {
                tracing::warn!(
                    "storage: holding the storage address {} of group {home}",
                    addr.address
                );
                self.held.insert(home.to_string(), a);
            }
            Err(e) => tracing::error!("storage: taking the storage address of {home}: {e}"),
        }
    }

    async fn release(&mut self, home: &str) {
        if self.held.remove(home).is_none() {
            return;
        }
        if let Some(addr) = self.address_of(home)
            && let Err(e) = vip::release(&addr).await
        {
            tracing::error!("storage: dropping the storage address of {home}: {e}");
        }
    }

    async fn step(&mut self) -> Result<(), StorageError> {
        let cfg = self.shared.cfg.clone();
        let me = cfg.me.clone();
        let peer = cfg.peer().map(|p| p.name.clone()).unwrap_or_default();
        let c = self.client().await?;
        let mut etcd = match self.etcd.take() {
            Some(c) => c,
            None => connect(&cfg, &cfg.local_endpoint()).await?,
        };
        let r = self.step_with(&c, &mut etcd, &cfg, &me, &peer).await;
        // Kept unless the step failed (a broken connection is made again next time).
        if r.is_ok() {
            self.etcd = Some(etcd);
        }
        r
    }

    async fn step_with(
        &mut self,
        c: &StorageClient,
        etcd: &mut Client,
        cfg: &crate::config::ClusterConfig,
        me: &str,
        peer: &str,
    ) -> Result<(), StorageError> {
        let (me, peer) = (me.to_string(), peer.to_string());
        let groups = read_groups(etcd).await?;
        if !groups.contains_key(&me) {
            // The seed's volumes (made before the pair was) are not on the other node yet:
            // its group starts with the other node's copy outdated, so the first resync
            // sends them all.
            let first_sync = cfg.seed.as_deref() == Some(me.as_str()) && !peer.is_empty();
            create_group(etcd, &me, first_sync.then_some(peer.as_str())).await?;
            return Ok(());
        }
        let alive = alive_nodes(etcd).await?;
        self.seen_alive.extend(alive.iter().cloned());
        let st = c.pair_status().await.map_err(storaged_err)?;
        let mut conditions = Vec::new();
        for (home, (g, rev)) in &groups {
            if g.owner == me {
                self.serve(c, &st, home, g.epoch).await?;
                continue;
            }
            self.unserve(c, &st, home, g.epoch).await?;
            if alive.contains(&g.owner) {
                continue;
            }
            // Not seen yet since this node started: it may be booting too.
            if !self.seen_alive.contains(&g.owner) && self.started.elapsed() < STARTUP_GRACE {
                continue;
            }
            if g.outdated.as_deref() == Some(me.as_str()) {
                // This node's copy lacks writes: it must not serve them.
                conditions.push(Condition::StorageGroupUnavailable(home.clone()));
                continue;
            }
            let taken = GroupRecord {
                owner: me.clone(),
                epoch: g.epoch + 1,
                outdated: Some(g.owner.clone()),
            };
            if take_over(etcd, home, *rev, &g.owner, &taken).await? {
                tracing::warn!(
                    "storage: took group {home} over from {} at epoch {}",
                    g.owner,
                    taken.epoch
                );
                c.pair()
                    .set_peer_outdated(true)
                    .await
                    .map_err(storaged_err)?;
                self.serve(c, &st, home, taken.epoch).await?;
            }
        }
        let groups = read_groups(etcd).await?;
        let mine: Vec<(&String, &GroupRecord, i64)> = groups
            .iter()
            .filter(|(_, (g, _))| g.owner == me)
            .map(|(h, (g, rev))| (h, g, *rev))
            .collect();
        // Writes wait for a peer that does not answer: record its copies as outdated (the
        // next step lets writes go on without it, once the record says so).
        let stalled = st
            .stalled_ms
            .is_some_and(|ms| ms >= OUTDATE_AFTER.as_millis() as u64);
        if stalled {
            let mut recorded = !mine.is_empty();
            for (home, g, rev) in &mine {
                if g.outdated.as_deref() == Some(peer.as_str()) {
                    continue;
                }
                let mut o = (*g).clone();
                o.outdated = Some(peer.clone());
                if g.outdated.is_none() && put_if_unchanged(etcd, home, *rev, &o).await? {
                    tracing::warn!(
                        "storage: {peer} does not take group {home}'s writes: marked outdated"
                    );
                } else {
                    recorded = false;
                }
            }
            // Recorded: writes go on without the peer now, a resync running or not (it
            // stops, nothing more reaching the peer, and starts again when the peer is back).
            if recorded && !st.peer_outdated {
                c.pair()
                    .set_peer_outdated(true)
                    .await
                    .map_err(storaged_err)?;
            }
        }
        let peer_outdated = mine
            .iter()
            .any(|(_, g, _)| g.outdated.as_deref() == Some(peer.as_str()));
        let seen = Seen {
            mine: &mine,
            peer: &peer,
            peer_outdated,
            alive: &alive,
            st: &st,
        };
        self.resync_step(c, etcd, seen).await?;
        if peer_outdated {
            conditions.push(Condition::StorageNotRedundant(peer.clone()));
        }
        let st = c.pair_status().await.map_err(storaged_err)?;
        if st.resync.running {
            conditions.push(Condition::Resyncing(peer.clone()));
        }
        if !st.degraded.is_empty() {
            conditions.push(Condition::VolumesDegraded(st.degraded.len()));
        }
        for home in &st.split_brain {
            conditions.push(Condition::SplitBrain(home.clone()));
        }
        let r = &st.resync;
        let line = r.running.then(|| match &r.sending {
            Some(volume) => {
                format!("resyncing {peer}'s copies: sending those it lacks (at volume {volume})")
            }
            None => format!(
                "resyncing {peer}'s copies: volume {} of {}, {} MiB sent",
                (r.volumes_done + 1).min(r.volumes),
                r.volumes,
                r.bytes >> 20
            ),
        });
        self.shared.set_storage_conditions(conditions, line);
        Ok(())
    }

    /// Serves group `home` at `epoch`: storaged first (its exports ready), then the address.
    async fn serve(
        &mut self,
        c: &StorageClient,
        st: &PairStatus,
        home: &str,
        epoch: u64,
    ) -> Result<(), StorageError> {
        let known = st.groups.get(home);
        if !known.is_some_and(|g| g.owned && g.epoch >= epoch) {
            c.pair().own(home, epoch).await.map_err(storaged_err)?;
        }
        self.take(home).await;
        Ok(())
    }

    /// Makes sure group `home` is not served here: the address first, then storaged.
    async fn unserve(
        &mut self,
        c: &StorageClient,
        st: &PairStatus,
        home: &str,
        epoch: u64,
    ) -> Result<(), StorageError> {
        self.release(home).await;
        let known = st.groups.get(home);
        if known.is_none_or(|g| g.owned || g.epoch < epoch) {
            c.pair().disown(home, epoch).await.map_err(storaged_err)?;
        }
        Ok(())
    }

    /// Whether probes and resyncs wait (after a failed one).
    fn quiet(&self) -> bool {
        self.quiet_until
            .is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// Starts the resync of a returning peer, or finishes one: its copies are recorded as
    /// current only if it ran to the end with the peer answering throughout.
    async fn resync_step(
        &mut self,
        c: &StorageClient,
        etcd: &mut Client,
        seen: Seen<'_>,
    ) -> Result<(), StorageError> {
        let Seen {
            mine,
            peer,
            peer_outdated,
            alive,
            st,
        } = seen;
        if let Some(r) = &self.resync {
            if !r.is_finished() {
                return Ok(());
            }
            let outcome = match self.resync.take() {
                Some(r) => r.await.unwrap_or_else(|e| Err(e.to_string())),
                None => Err("lost".into()),
            };
            let st = c.pair_status().await.map_err(storaged_err)?;
            match outcome {
                Ok(())
                    if !st.peer_outdated
                        && st
                            .stalled_ms
                            .is_none_or(|ms| ms < OUTDATE_AFTER.as_millis() as u64) =>
                {
                    for (home, g, rev) in mine {
                        if g.outdated.as_deref() == Some(peer) {
                            let mut o = (*g).clone();
                            o.outdated = None;
                            put_if_unchanged(etcd, home, *rev, &o).await?;
                        }
                    }
                    tracing::warn!("storage: {peer} is up to date again");
                }
                Ok(()) => {
                    tracing::warn!("storage: the resync to {peer} was interrupted");
                    self.quiet_until = Some(tokio::time::Instant::now() + RETRY_AFTER);
                }
                Err(e) => {
                    tracing::warn!("storage: the resync to {peer} failed: {e}");
                    self.quiet_until = Some(tokio::time::Instant::now() + RETRY_AFTER);
                }
            }
            return Ok(());
        }
        if !peer_outdated {
            if st.peer_outdated {
                c.pair()
                    .set_peer_outdated(false)
                    .await
                    .map_err(storaged_err)?;
            }
            // The peer is current, but some volumes' copies there may not be (storaged
            // restarted with writes maybe applied here only, or the replica could not apply):
            // their marked regions are sent, nothing is recorded in etcd.
            if !st.needs_resync.is_empty() && st.stalled_ms.is_none() && !self.quiet() {
                tracing::warn!(
                    "storage: resyncing {} volume(s) whose copies on {peer} may differ",
                    st.needs_resync.len()
                );
                let c = c.clone();
                self.resync = Some(tokio::spawn(async move {
                    c.pair().resync().await.map(drop).map_err(|e| e.to_string())
                }));
            }
            return Ok(());
        }
        let back = alive.iter().any(|n| n == peer)
            && !self.quiet()
            && c.pair().peer_reachable().await.map_err(storaged_err)?;
        if !back {
            if alive.iter().any(|n| n == peer) && !self.quiet() {
                // Alive in etcd, its replication port silent: ask again in a while.
                self.quiet_until = Some(tokio::time::Instant::now() + RETRY_AFTER);
            }
            if !st.peer_outdated {
                c.pair()
                    .set_peer_outdated(true)
                    .await
                    .map_err(storaged_err)?;
            }
            return Ok(());
        }
        tracing::warn!("storage: {peer} is back: resyncing its copies");
        // New writes go to both from now on; the marked regions follow.
        c.pair()
            .set_peer_outdated(false)
            .await
            .map_err(storaged_err)?;
        let c = c.clone();
        self.resync = Some(tokio::spawn(async move {
            c.pair().resync().await.map(drop).map_err(|e| e.to_string())
        }));
        Ok(())
    }
}

async fn read_groups(
    etcd: &mut Client,
) -> Result<HashMap<String, (GroupRecord, i64)>, StorageError> {
    let resp = timed(etcd.get(GROUPS_PREFIX, Some(GetOptions::new().with_prefix()))).await?;
    let mut out = HashMap::new();
    for kv in resp.kvs() {
        let Ok(k) = kv.key_str() else { continue };
        let home = k.trim_start_matches(GROUPS_PREFIX).to_string();
        match serde_json::from_slice::<GroupRecord>(kv.value()) {
            Ok(g) => {
                out.insert(home, (g, kv.mod_revision()));
            }
            Err(e) => tracing::error!("storage: group record {k} is not readable: {e}"),
        }
    }
    Ok(out)
}

async fn alive_nodes(etcd: &mut Client) -> Result<Vec<String>, StorageError> {
    let resp = timed(etcd.get(
        NODES_PREFIX,
        Some(GetOptions::new().with_prefix().with_keys_only()),
    ))
    .await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .map(|k| k.trim_start_matches(NODES_PREFIX).to_string())
        .collect())
}

/// A node's own group, the first time: it owns it at epoch 1 (with `outdated`, the other
/// node's copy is to be made by a resync first).
async fn create_group(
    etcd: &mut Client,
    me: &str,
    outdated: Option<&str>,
) -> Result<(), StorageError> {
    let rec = GroupRecord {
        owner: me.into(),
        epoch: 1,
        outdated: outdated.map(str::to_string),
    };
    let txn = Txn::new()
        .when([Compare::version(key(me), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key(me),
            serde_json::to_vec(&rec).unwrap_or_default(),
            None,
        )]);
    timed(etcd.txn(txn)).await?;
    Ok(())
}

/// Writes `rec` for group `home` if its record is still at `revision`.
async fn put_if_unchanged(
    etcd: &mut Client,
    home: &str,
    revision: i64,
    rec: &GroupRecord,
) -> Result<bool, StorageError> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key(home), CompareOp::Equal, revision)])
        .and_then([TxnOp::put(
            key(home),
            serde_json::to_vec(rec).unwrap_or_default(),
            None,
        )]);
    Ok(timed(etcd.txn(txn)).await?.succeeded())
}

/// The takeover: only if the group is unchanged and its owner still has no heartbeat.
async fn take_over(
    etcd: &mut Client,
    home: &str,
    revision: i64,
    owner: &str,
    rec: &GroupRecord,
) -> Result<bool, StorageError> {
    let txn = Txn::new()
        .when([
            Compare::mod_revision(key(home), CompareOp::Equal, revision),
            Compare::version(format!("{NODES_PREFIX}{owner}"), CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put(
            key(home),
            serde_json::to_vec(rec).unwrap_or_default(),
            None,
        )]);
    Ok(timed(etcd.txn(txn)).await?.succeeded())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_record_reads_back() {
        let g = GroupRecord {
            owner: "node-b".into(),
            epoch: 3,
            outdated: Some("node-a".into()),
        };
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(text, r#"{"owner":"node-b","epoch":3,"outdated":"node-a"}"#);
        assert_eq!(serde_json::from_str::<GroupRecord>(&text).unwrap(), g);
        let old: GroupRecord = serde_json::from_str(r#"{"owner":"a","epoch":1}"#).unwrap();
        assert_eq!(old.outdated, None);
    }
}
