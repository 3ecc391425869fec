//! The pair, as deployd sees it through clusterd's control interface.
//!
//! A single appliance (no clusterd, or clusterd not paired) writes freely. On a pair node the
//! metadata store is etcd, and a watcher asks clusterd for this node's role every 100 ms:
//! while active, the store's [`WriteGate`] carries the election fence and the instant the
//! hold lapses (so a node that stopped hearing from clusterd stops writing on time by
//! itself); otherwise it is closed and names the active node. The transport refuses a change
//! on a standby before it starts ([`Cluster::refusal`]), with 503 `NOT_ACTIVE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clusterd::alerts::Alert;
use clusterd::control::ClusterClient;
use clusterd::status::{NodeInfo, Role, Status};
use parking_lot::RwLock;

use crate::meta::{EtcdStore, Fence, MetaStore, WriteGate};

/// How often the role is asked for.
const POLL: Duration = Duration::from_millis(100);
/// How long one question to clusterd may take.
const ASK: Duration = Duration::from_secs(2);

/// The pair link, or none (a single appliance).
#[derive(Debug)]
pub struct Cluster {
    link: Option<Link>,
}

#[derive(Debug)]
struct Link {
    socket: PathBuf,
    store: Arc<EtcdStore>,
    status: RwLock<Status>,
    /// This appliance's store from before it was paired, if it has one.
    single_store: Option<PathBuf>,
}

/// The marker of the single appliance's records brought into the pair's store.
const BROUGHT: &str = "single-appliance-records";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("clusterd: {0}")]
    Unreachable(String),
}

/// Asks clusterd at `socket` for this node's status, once (at start, before a runtime runs).
pub fn ask_once(socket: &Path) -> Result<Status, ClusterError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
    rt.block_on(async {
        let c = tokio::time::timeout(ASK, ClusterClient::connect(socket))
            .await
            .map_err(|_| ClusterError::Unreachable(format!("{} did not answer", socket.display())))?
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        tokio::time::timeout(ASK, c.status())
            .await
            .map_err(|_| ClusterError::Unreachable(format!("{} did not answer", socket.display())))?
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    })
}

/// The gate the store gets for `status`.
pub fn gate_for(status: &Status) -> WriteGate {
    match (status.role, &status.fence) {
        (Role::Single, _) => WriteGate::Open,
        (Role::Active, Some(f)) => WriteGate::Fenced(Fence {
            key: f.key.clone(),
            create_revision: f.create_revision,
            until_ns: Some(status.active_until_ns.unwrap_or(0)),
        }),
        _ => WriteGate::Closed(not_active_message(status)),
    }
}

fn not_active_message(status: &Status) -> String {
    match (&status.active, status.active_address) {
        (Some(name), Some(addr)) => format!(
            "This appliance ({}) is the standby node of the pair; {name} ({addr}) is the active \
             node and takes changes.",
            status.me
        ),
        (Some(name), None) => format!(
            "This appliance ({}) is the standby node of the pair; {name} is the active node \
             and takes changes.",
            status.me
        ),
        _ => format!(
            "This appliance ({}) is not the active node of the pair, and no node is active at \
             the moment (a takeover is in progress, or the pair's store has no quorum).",
            status.me
        ),
    }
}

impl Cluster {
    pub fn single() -> Self {
        Self { link: None }
    }

    /// A pair node: `store` is the pair's etcd, gated by `status` until the watcher runs;
    /// `single_store` the appliance's redb from before it was paired, if any.
    pub fn pair(
        socket: &Path,
        store: Arc<EtcdStore>,
        status: Status,
        single_store: Option<PathBuf>,
    ) -> Self {
        store.set_gate(gate_for(&status));
        Self {
            link: Some(Link {
                socket: socket.to_path_buf(),
                store,
                status: RwLock::new(status),
                single_store,
            }),
        }
    }

    /// On the active node of a new pair: brings this appliance's records from before the
    /// pairing (its artifacts, users, volumes, tasks; secrets still sealed with the pair's key)
    /// into the pair's store, once. The first node to become active brings its own; a node
    /// whose records were not brought says so in its log (its redb stays as it was).
    pub fn bring_single_appliance_records(&self) -> Result<usize, crate::meta::MetaError> {
        let Some(link) = &self.link else { return Ok(0) };
        if link
            .store
            .get(crate::meta::Kind::Schema, BROUGHT)?
            .is_some()
        {
            if let Some(path) = link.single_store.as_ref().filter(|p| p.exists()) {
                let local = crate::meta::RedbStore::open(path)?;
                let mine: usize = crate::meta::Kind::ALL
                    .iter()
                    .map(|k| local.list(*k).map_or(0, |l| l.len()))
                    .sum();
                if mine > 0 {
                    tracing::warn!(
                        "{mine} records of this appliance from before it was paired ({}) \
                         were not brought into the pair's store: it already holds the other \
                         node's",
                        path.display()
                    );
                }
            }
            return Ok(0);
        }
        // The marker is written even with nothing to bring: it is what lets the other node
        // of a new pair take the management role (clusterd's PAIR_FORMED_KEY).
        let n = match link.single_store.as_ref().filter(|p| p.exists()) {
            Some(path) => {
                let local = crate::meta::RedbStore::open(path)?;
                crate::meta::copy_all(&local, link.store.as_ref(), BROUGHT)?
            }
            None => {
                link.store.apply(vec![crate::meta::Op::Put {
                    kind: crate::meta::Kind::Schema,
                    id: BROUGHT.into(),
                    value: serde_json::json!({"records": 0}),
                    expect: crate::meta::Expect::Absent,
                }])?;
                0
            }
        };
        tracing::warn!("brought {n} records of this appliance into the pair's store");
        Ok(n)
    }

    /// On a pair node: its name and the pair's store (for the cluster-wide audit log).
    pub fn pair_store(&self) -> Option<(String, Arc<EtcdStore>)> {
        self.link
            .as_ref()
            .map(|l| (l.status.read().me.clone(), Arc::clone(&l.store)))
    }

    pub fn is_pair(&self) -> bool {
        self.link.is_some()
    }

    /// Whether reads are answered from what this node last saw (the pair's etcd does not
    /// answer).
    pub fn reads_stale(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.store.serving_stale())
    }

    /// This node's status as last heard.
    pub fn status(&self) -> Option<Status> {
        self.link.as_ref().map(|l| l.status.read().clone())
    }

    /// Why this node must not take a change now, if so.
    pub fn refusal(&self) -> Option<String> {
        let link = self.link.as_ref()?;
        let st = link.status.read();
        if st.is_active_at(crate::meta::etcd_store::monotonic_ns()) {
            None
        } else {
            Some(not_active_message(&st))
        }
    }

    /// Follows clusterd's view of the role for ever; calls `became_active` each time this node
    /// becomes the active one (the new active's recovery of interrupted work).
    pub async fn watch(self: Arc<Self>, became_active: impl Fn() + Send + Sync + 'static) {
        let Some(link) = &self.link else { return };
        let mut client: Option<ClusterClient> = None;
        let mut was_active = link.status.read().role == Role::Active;
        loop {
            if client.is_none() {
                client = tokio::time::timeout(ASK, ClusterClient::connect(&link.socket))
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            if let Some(c) = &client {
                match tokio::time::timeout(ASK, c.status()).await {
                    Ok(Ok(st)) => {
                        let active = st.role == Role::Active;
                        link.store.set_gate(gate_for(&st));
                        *link.status.write() = st;
                        if active && !was_active {
                            tracing::warn!("this node is now the active node of the pair");
                            became_active();
                        }
                        was_active = active;
                    }
                    // The gate's deadline stops writes on time without clusterd's word.
                    _ => client = None,
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn client(&self) -> Result<ClusterClient, ClusterError> {
        let socket = match &self.link {
            Some(l) => l.socket.clone(),
            None => return Err(ClusterError::Unreachable("not paired".into())),
        };
        tokio::time::timeout(ASK, ClusterClient::connect(&socket))
            .await
            .map_err(|_| ClusterError::Unreachable("clusterd did not answer".into()))?
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    }

    /// The pair's members; empty on a single appliance.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        if self.link.is_none() {
            return Ok(Vec::new());
        }
        self.client()
            .await?
            .nodes()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    }

    /// The pair's alerts; none on a single appliance.
    pub async fn alerts(&self) -> Result<Vec<Alert>, ClusterError> {
        if self.link.is_none() {
            return Ok(Vec::new());
        }
        self.client()
            .await?
            .alerts()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: Role) -> Status {
        Status {
            me: "node-b".into(),
            role,
            active: Some("node-a".into()),
            active_address: Some("10.0.0.1".parse().unwrap()),
            fence: None,
            active_until_ns: None,
            active_since_ns: None,
            store_endpoint: None,
            store_tls: None,
            storage_address: None,
        }
    }

    #[test]
    fn the_marker_is_the_key_clusterds_other_node_waits_for() {
        assert_eq!(
            format!(
                "{}{}/{BROUGHT}",
                crate::meta::etcd_store::ROOT,
                crate::meta::Kind::Schema.prefix()
            ),
            clusterd::status::PAIR_FORMED_KEY
        );
    }

    #[test]
    fn the_gate_follows_the_role() {
        assert_eq!(gate_for(&status(Role::Single)), WriteGate::Open);
        let WriteGate::Closed(why) = gate_for(&status(Role::Standby)) else {
            panic!("a standby writes nothing");
        };
        assert!(
            why.contains("node-a (10.0.0.1) is the active node"),
            "{why}"
        );
        // Active without a fence (never reported so) closes too.
        assert!(matches!(
            gate_for(&status(Role::Active)),
            WriteGate::Closed(_)
        ));
        let mut active = status(Role::Active);
        active.fence = Some(clusterd::status::Fence {
            key: "/k".into(),
            create_revision: 7,
        });
        active.active_until_ns = Some(42);
        assert_eq!(
            gate_for(&active),
            WriteGate::Fenced(Fence {
                key: "/k".into(),
                create_revision: 7,
                until_ns: Some(42),
            })
        );
        // Nobody active: the message says so.
        let mut nobody = status(Role::Starting);
        nobody.active = None;
        nobody.active_address = None;
        let WriteGate::Closed(why) = gate_for(&nobody) else {
            panic!()
        };
        assert!(why.contains("no node is active"), "{why}");
    }
}
