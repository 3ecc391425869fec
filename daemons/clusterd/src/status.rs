//! What clusterd tells deployd and the console: this node's role, the pair's nodes, alerts.
//! Sent as JSON over the control interface.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where the election key lives in etcd; deployd's writes compare its create-revision.
pub const ELECTION_KEY: &str = "/streamer/election/management";
/// Written by the seed's deployd once it has brought its records into the pair's store (its
/// marker record, see deployd's `services::cluster`): until then, the other node of a new
/// pair does not campaign.
pub const PAIR_FORMED_KEY: &str = "/streamer/meta/schema/single-appliance-records";
/// Where each node publishes itself (bound to its lease: gone when the node is).
pub const NODES_PREFIX: &str = "/streamer/nodes/";

/// Nanoseconds of `CLOCK_MONOTONIC`: the same clock in every process of the machine, so a
/// deadline computed by clusterd means the same instant to deployd.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Not paired: this appliance manages itself, nothing to elect.
    Single,
    /// Paired, not (yet) in contact with the cluster store.
    Starting,
    /// Paired, the other node (or nobody yet) holds the management role.
    Standby,
    /// Paired and holding the management role until `activeUntilNs`.
    Active,
}

/// The management role this node holds, as etcd knows it (see deployd's `EtcdStore` fence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fence {
    pub key: String,
    pub create_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub me: String,
    pub role: Role,
    /// The node holding the management role, as last seen.
    pub active: Option<String>,
    pub active_address: Option<IpAddr>,
    /// While active: the election key this node created.
    pub fence: Option<Fence>,
    /// While active: the `CLOCK_MONOTONIC` instant (ns) at which this node stops acting as
    /// active unless its lease is renewed first. Always before etcd can elect anyone else.
    pub active_until_ns: Option<u64>,
    /// While active: when this node became active (`CLOCK_MONOTONIC`, ns).
    pub active_since_ns: Option<u64>,
    /// This node's own etcd endpoint (for deployd's store); none on a single appliance.
    pub store_endpoint: Option<String>,
    /// The certificate files deployd connects to the store with (mutual TLS), if the pair
    /// has them.
    #[serde(default)]
    pub store_tls: Option<crate::config::TlsFiles>,
    /// This node's storage address: compute modules boot the volumes this node creates from
    /// it (whichever node serves them now). None on a single appliance.
    #[serde(default)]
    pub storage_address: Option<IpAddr>,
}

impl Status {
    pub fn single(me: &str) -> Status {
        Status {
            me: me.into(),
            role: Role::Single,
            active: Some(me.into()),
            active_address: None,
            fence: None,
            active_until_ns: None,
            active_since_ns: None,
            store_endpoint: None,
            store_tls: None,
            storage_address: None,
        }
    }

    /// Whether this node may act as the active one at `now_ns` (`CLOCK_MONOTONIC`).
    pub fn is_active_at(&self, now_ns: u64) -> bool {
        match self.role {
            Role::Single => true,
            Role::Active => self.active_until_ns.is_some_and(|until| now_ns < until),
            Role::Starting | Role::Standby => false,
        }
    }
}

/// What a node publishes under [`NODES_PREFIX`], refreshed every second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub name: String,
    pub address: IpAddr,
    pub version: String,
    pub role: Role,
    /// RFC 3339, the node's wall clock.
    pub time: String,
}

/// One member of the pair as `/rest/appliance/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    /// `node` or `witness`.
    pub kind: String,
    pub address: IpAddr,
    /// Active, Standby, Unavailable (nodes); Online, Unavailable (the witness).
    pub role: String,
    /// OK, Critical.
    pub health: String,
    pub version: Option<String>,
    /// The last heartbeat seen (RFC 3339), if any.
    pub last_heartbeat: Option<String>,
    /// Whether its etcd member answers.
    pub store_reachable: bool,
}
