//! A pair node: its lease, its heartbeat, the management election, the virtual IP.
//!
//! One **lease** (TTL `leaseTtlSeconds`, 2 s) carries this node's heartbeat key and, while it
//! is active, the election key: if the node stops renewing it (dead, stopped, cut off), both
//! keys vanish when etcd expires the lease, and the other node wins the election.
//!
//! **Self-fencing.** etcd expires a lease no earlier than TTL after it last renewed it, and
//! it renewed it after this node sent the renewal. So this node stops acting as active at
//! *send time of the last acknowledged renewal + TTL − margin*, before anyone else can be
//! elected: it drops the virtual IP and reports itself standby, and deployd refuses writes
//! past that instant even if it cannot reach clusterd. A node that was frozen (SIGSTOP)
//! beyond its lease finds its deadline passed the moment it runs again; if one of its writes
//! still races out, etcd refuses it: deployd's transactions compare the election key's
//! create-revision, which changed when the other node won.
//!
//! A new etcd leader extends every lease by an election timeout, which only makes the other
//! node wait longer; so that this happens rarely, the active node asks etcd to move its
//! leadership to another member when its own etcd leads.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::alerts::{Alerts, Condition};
use crate::config::{ClusterConfig, MemberRole};
use crate::status::{
    ELECTION_KEY, Fence, Heartbeat, NODES_PREFIX, NodeInfo, PAIR_FORMED_KEY, Role, Status,
    monotonic_ns,
};
use crate::vip;

/// How long before the lease could expire this node stops acting as active.
pub const FENCE_MARGIN: Duration = Duration::from_millis(500);
/// How often health (members, heartbeats, alerts) is looked at.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How long one call to etcd may take.
const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cluster store: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the lease ended: {0}")]
    LeaseLost(String),
    #[error("cluster store: no answer within {0:?}")]
    Timeout(Duration),
    #[error("the pair's certificates: {0}")]
    Certificates(String),
}

/// What the node shares with its control interface.
#[derive(Debug)]
pub struct Shared {
    pub cfg: ClusterConfig,
    pub status: watch::Sender<Status>,
    pub alerts: Mutex<Alerts>,
    pub nodes: Mutex<Vec<NodeInfo>>,
    /// Announces the virtual IP while this node holds it.
    announcer: Mutex<Option<vip::Announcer>>,
    /// Where the serial console reads the role and the active alerts, if anywhere.
    summary: Option<std::path::PathBuf>,
    /// The storage role's conditions (see `storage`), raised with the others.
    storage_conditions: Mutex<Vec<Condition>>,
    /// The storage role's line on the serial console (a resync's progress), if any.
    storage_line: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(cfg: ClusterConfig, summary: Option<std::path::PathBuf>) -> Arc<Shared> {
        let status = Status {
            me: cfg.me.clone(),
            role: Role::Starting,
            active: None,
            active_address: None,
            fence: None,
            active_until_ns: None,
            active_since_ns: None,
            store_endpoint: Some(cfg.local_endpoint()),
            store_tls: cfg.tls.clone(),
            storage_address: cfg.this().storage_ip.as_ref().map(|v| v.address),
        };
        Arc::new(Shared {
            cfg,
            status: watch::channel(status).0,
            alerts: Mutex::new(Alerts::default()),
            nodes: Mutex::new(Vec::new()),
            announcer: Mutex::new(None),
            summary,
            storage_conditions: Mutex::new(Vec::new()),
            storage_line: Mutex::new(None),
        })
    }

    /// The storage role's conditions now (the health loop raises and clears their alerts).
    pub fn set_storage_conditions(&self, conditions: Vec<Condition>, line: Option<String>) {
        *self.storage_conditions.lock() = conditions;
        *self.storage_line.lock() = line;
    }
}

pub(crate) async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, NodeError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(NodeError::Timeout(CALL_TIMEOUT)),
    }
}

/// Connects to one etcd endpoint of the pair described by `cfg` (with this member's
/// certificate when the pair has them), failing fast when it has no leader.
pub async fn connect(cfg: &ClusterConfig, endpoint: &str) -> Result<Client, NodeError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_timeout(CALL_TIMEOUT)
        .with_require_leader(true)
        .with_keep_alive(Duration::from_millis(500), Duration::from_millis(1000));
    if let Some(tls) = &cfg.tls {
        let tls = crate::pairing::connect_options(tls)
            .map_err(|e| NodeError::Certificates(e.to_string()))?;
        opts = opts.with_tls(tls);
    }
    timed(Client::connect([endpoint], Some(opts))).await
}

/// Runs the node for ever: a session per lease, standby between sessions.
pub async fn run(shared: Arc<Shared>) {
    let ttl = Duration::from_secs(u64::from(shared.cfg.lease_ttl_seconds));
    // A clusterd that starts is not active: an address left by a crashed predecessor goes.
    if let Some(v) = &shared.cfg.virtual_ip
        && let Err(e) = vip::release(v).await
    {
        tracing::error!("removing a leftover management virtual IP: {e}");
    }
    tokio::spawn(health_loop(Arc::clone(&shared)));
    loop {
        let r = session(&shared, ttl).await;
        step_down(&shared, Role::Starting).await;
        if let Err(e) = r {
            tracing::warn!("cluster session ended: {e}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops acting as active: the virtual IP goes first, then the role is reported.
async fn step_down(shared: &Shared, role: Role) {
    let was_active = shared.status.borrow().role == Role::Active;
    if was_active {
        shared.announcer.lock().take();
        if let Some(v) = &shared.cfg.virtual_ip
            && let Err(e) = vip::release(v).await
        {
            tracing::error!("dropping the management virtual IP: {e}");
        }
        tracing::warn!("{}: no longer the active node", shared.cfg.me);
    }
    shared.status.send_modify(|s| {
        s.role = role;
        s.fence = None;
        s.active_until_ns = None;
        s.active_since_ns = None;
        if was_active {
            s.active = None;
            s.active_address = None;
        }
    });
}

/// One lease's life: renew it, hold or wait for the role, until the lease is lost.
async fn session(shared: &Shared, ttl: Duration) -> Result<(), NodeError> {
    let cfg = &shared.cfg;
    let mut client = connect(cfg, &cfg.local_endpoint()).await?;
    let granted_at = (Instant::now(), monotonic_ns());
    let grant = timed(client.lease_grant(ttl.as_secs() as i64, None)).await?;
    let lease = grant.id();
    let granted = Duration::from_secs(grant.ttl().max(0) as u64).min(ttl);
    let (mut keeper, mut renewals) = timed(client.lease_keep_alive(lease)).await?;
    // Measured from the grant's request: the lease cannot end before that plus its TTL.
    let mut deadline = granted_at.0 + granted.saturating_sub(FENCE_MARGIN);
    let mut deadline_ns = granted_at.1 + granted.saturating_sub(FENCE_MARGIN).as_nanos() as u64;
    // Send times of renewals not yet answered, oldest first: an answer is matched to its
    // own request, never to a later one (which would stretch the deadline).
    let mut pending: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let renew_every = ttl / 4;
    // The first renewal at once: the grant itself may have taken a while.
    let mut next_renewal = Instant::now();
    let mut next_heartbeat = Instant::now();
    shared.status.send_modify(|s| s.role = Role::Standby);
    let mut changes = timed(client.watch(ELECTION_KEY, Some(WatchOptions::new()))).await?;
    let mut fence: Option<Fence> = None;
    loop {
        if fence.is_none() {
            fence = campaign(shared, &mut client, lease, deadline_ns).await?;
        }
        if Instant::now() >= next_heartbeat {
            heartbeat(shared, &mut client, lease).await?;
            next_heartbeat = Instant::now() + Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_renewal) => {
                pending.push_back((Instant::now(), monotonic_ns()));
                timed(keeper.keep_alive()).await?;
                next_renewal = Instant::now() + renew_every;
            }
            msg = renewals.message() => {
                match msg? {
                    Some(r) if r.ttl() > 0 => {
                        if let Some((at, at_ns)) = pending.pop_front() {
                            let granted = Duration::from_secs(r.ttl() as u64);
                            let until = granted.saturating_sub(FENCE_MARGIN);
                            deadline = at + until;
                            deadline_ns = at_ns + until.as_nanos() as u64;
                            if fence.is_some() {
                                shared.status.send_modify(|s| s.active_until_ns = Some(deadline_ns));
                            }
                        }
                    }
                    Some(_) => return Err(NodeError::LeaseLost("etcd says it expired".into())),
                    None => return Err(NodeError::LeaseLost("the renewal stream closed".into())),
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(NodeError::LeaseLost(format!(
                    "not renewed within {:?} of the last acknowledged renewal",
                    ttl - FENCE_MARGIN
                )));
            }
            ev = changes.message() => {
                let Some(ev) = ev? else {
                    return Err(NodeError::LeaseLost("the election watch closed".into()));
                };
                for e in ev.events() {
                    // Our key went while we held it (revoked by an operator, unpaired). A
                    // delete from before we created it (the previous holder's, still queued
                    // in the watch when we won) is not ours: stepping down on it would leave
                    // our own key in place and nobody able to win.
                    let ours_went = fence.as_ref().is_some_and(|f| {
                        e.kv().is_some_and(|kv| kv.mod_revision() > f.create_revision)
                    });
                    if e.event_type() == EventType::Delete && ours_went {
                        step_down(shared, Role::Standby).await;
                        fence = None;
                    }
                }
            }
        }
    }
}

/// Tries to become the active node; returns the fence if this node holds the role.
async fn campaign(
    shared: &Shared,
    client: &mut Client,
    lease: i64,
    deadline_ns: u64,
) -> Result<Option<Fence>, NodeError> {
    let cfg = &shared.cfg;
    let me = cfg.this();
    let value = serde_json::json!({"name": me.name, "address": me.address}).to_string();
    let mut conditions = vec![Compare::version(ELECTION_KEY, CompareOp::Equal, 0)];
    // A new pair starts on its seed: the other node waits until the seed's records are in.
    if cfg.seed.as_ref().is_some_and(|seed| *seed != me.name) {
        conditions.push(Compare::version(PAIR_FORMED_KEY, CompareOp::Greater, 0));
    }
    let txn = Txn::new()
        .when(conditions)
        .and_then([TxnOp::put(
            ELECTION_KEY,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(ELECTION_KEY, None)]);
    let resp = timed(client.txn(txn)).await?;
    let existing = resp.op_responses().into_iter().find_map(|r| match r {
        etcd_client::TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    });
    // Won now, or already holding it under this lease (a step-down that should not have been).
    let won = if resp.succeeded() {
        Some(resp.header().map_or(0, |h| h.revision()))
    } else {
        existing
            .as_ref()
            .filter(|kv| kv.lease() == lease)
            .map(|kv| kv.create_revision())
    };
    if let Some(revision) = won {
        let fence = Fence {
            key: ELECTION_KEY.into(),
            create_revision: revision,
        };
        // The address first, so that the node answers on it when it says it is active.
        if let Some(v) = &cfg.virtual_ip {
            match vip::take(v).await {
                Ok(a) => *shared.announcer.lock() = Some(a),
                Err(e) => tracing::error!("taking the management virtual IP: {e}"),
            }
        }
        let now = monotonic_ns();
        shared.status.send_modify(|s| {
            s.role = Role::Active;
            s.active = Some(me.name.clone());
            s.active_address = Some(me.address);
            s.fence = Some(fence.clone());
            s.active_until_ns = Some(deadline_ns);
            s.active_since_ns = Some(now);
        });
        tracing::warn!(
            "{}: now the active node (election revision {revision})",
            me.name
        );
        move_etcd_leadership_away(shared, client).await;
        return Ok(Some(fence));
    }
    let holder: Option<serde_json::Value> =
        existing.and_then(|kv| serde_json::from_slice(kv.value()).ok());
    shared.status.send_modify(|s| {
        s.role = Role::Standby;
        s.active = holder
            .as_ref()
            .and_then(|h| h["name"].as_str())
            .map(String::from);
        s.active_address = holder
            .as_ref()
            .and_then(|h| h["address"].as_str())
            .and_then(|a| a.parse().ok());
    });
    Ok(None)
}

/// If this node's etcd leads the cluster, hands the leadership to the witness: a new etcd
/// leader extends every lease, which would delay a takeover if this node then failed. Only
/// to the witness (it never holds the role), and only when it answers and has caught up; a
/// node that has just come back is never made the leader.
async fn move_etcd_leadership_away(shared: &Shared, client: &mut Client) {
    let Some(witness) = shared.cfg.witness() else {
        return;
    };
    let Ok(status) = timed(client.status()).await else {
        return;
    };
    let me = status.header().map_or(0, |h| h.member_id());
    if status.leader() != me {
        return;
    }
    let Ok(mut w) = connect(&shared.cfg, &shared.cfg.endpoint_of(witness)).await else {
        return;
    };
    let Ok(ws) = timed(w.status()).await else {
        return;
    };
    let Some(target) = ws.header().map(|h| h.member_id()) else {
        return;
    };
    // Caught up: applied everything the leader had applied a moment ago.
    if ws.raft_applied_index() + 100 < status.raft_applied_index() {
        return;
    }
    match timed(client.move_leader(target)).await {
        Ok(_) => tracing::info!("moved etcd leadership to the witness {}", witness.name),
        Err(e) => tracing::info!("could not move etcd leadership to the witness: {e}"),
    }
}

/// Publishes this node under its lease.
async fn heartbeat(shared: &Shared, client: &mut Client, lease: i64) -> Result<(), NodeError> {
    let me = shared.cfg.this();
    let hb = Heartbeat {
        name: me.name.clone(),
        address: me.address,
        version: env!("CARGO_PKG_VERSION").into(),
        role: shared.status.borrow().role,
        time: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    };
    let value = serde_json::to_vec(&hb).unwrap_or_default();
    timed(client.put(
        format!("{NODES_PREFIX}{}", me.name),
        value,
        Some(PutOptions::new().with_lease(lease)),
    ))
    .await?;
    Ok(())
}

/// Every second: which members answer, which nodes have a heartbeat, and the alerts that
/// follow.
async fn health_loop(shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    loop {
        let mut reachable = Vec::new();
        for m in &cfg.members {
            let ok = match connect(cfg, &cfg.endpoint_of(m)).await {
                Ok(mut c) => timed(c.status()).await.is_ok(),
                Err(_) => false,
            };
            reachable.push((m.clone(), ok));
        }
        let heartbeats = read_heartbeats(cfg).await;
        let status = shared.status.borrow().clone();
        let mut nodes = Vec::new();
        let mut conditions = Vec::new();
        let mut down = 0;
        for (m, ok) in &reachable {
            let hb = heartbeats
                .as_ref()
                .ok()
                .and_then(|h| h.iter().find(|h| h.name == m.name));
            let (role, health) = match m.role {
                MemberRole::Witness => {
                    if *ok {
                        ("Online", "OK")
                    } else {
                        conditions.push(Condition::WitnessUnreachable(m.name.clone()));
                        down += 1;
                        ("Unavailable", "Critical")
                    }
                }
                MemberRole::Node => {
                    let alive = hb.is_some() || (m.name == cfg.me && status.role != Role::Starting);
                    if !alive {
                        if heartbeats.is_ok() {
                            conditions.push(Condition::NodeUnavailable(m.name.clone()));
                        }
                        down += 1;
                        ("Unavailable", "Critical")
                    } else if status.active.as_deref() == Some(m.name.as_str()) {
                        ("Active", if *ok { "OK" } else { "Warning" })
                    } else {
                        ("Standby", if *ok { "OK" } else { "Warning" })
                    }
                }
            };
            if !ok && m.role == MemberRole::Node {
                conditions.push(Condition::StoreDegraded(format!(
                    "the etcd member of {} does not answer",
                    m.name
                )));
            }
            nodes.push(NodeInfo {
                name: m.name.clone(),
                kind: match m.role {
                    MemberRole::Node => "node".into(),
                    MemberRole::Witness => "witness".into(),
                },
                address: m.address,
                role: role.into(),
                health: health.into(),
                version: hb.map(|h| h.version.clone()),
                last_heartbeat: hb.map(|h| h.time.clone()),
                store_reachable: *ok,
            });
        }
        if let Err(e) = &heartbeats {
            conditions.push(Condition::StoreDegraded(format!(
                "this node cannot read the cluster store ({e})"
            )));
        }
        if down > 0 || heartbeats.is_err() {
            conditions.push(Condition::NotHighlyAvailable);
        }
        conditions.extend(shared.storage_conditions.lock().iter().cloned());
        shared.alerts.lock().update(&conditions);
        *shared.nodes.lock() = nodes;
        if let Some(path) = &shared.summary {
            let st = shared.status.borrow().clone();
            let role = match (st.role, &st.active) {
                (Role::Active, _) => format!("{}: active node of the pair", st.me),
                (Role::Standby, Some(a)) => format!("{}: standby node; {a} is active", st.me),
                (Role::Standby, None) => format!("{}: standby node; no node is active", st.me),
                (Role::Starting, _) => format!("{}: pair member, joining the cluster", st.me),
                (Role::Single, _) => "single appliance".into(),
            };
            let mut role = role;
            if let Some(line) = shared.storage_line.lock().as_ref() {
                role.push('\n');
                role.push_str(line);
            }
            let active: Vec<String> = shared
                .alerts
                .lock()
                .list()
                .into_iter()
                .filter(|a| a.alert_state == "Active")
                .map(|a| format!("{}: {}", a.severity, a.description))
                .collect();
            write_summary(path, &role, &active);
        }
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

async fn read_heartbeats(cfg: &ClusterConfig) -> Result<Vec<Heartbeat>, NodeError> {
    let mut c = connect(cfg, &cfg.local_endpoint()).await?;
    let resp = timed(c.get(NODES_PREFIX, Some(GetOptions::new().with_prefix()))).await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect())
}

/// Writes the serial console's summary atomically: the role, then one line per active alert.
pub fn write_summary(path: &std::path::Path, role: &str, alerts: &[String]) {
    let mut text = format!("{role}\n");
    for a in alerts {
        text.push_str(a);
        text.push('\n');
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!("writing {}: {e}", path.display());
    }
}
