//! clusterd: the pair's membership, health, management election, virtual IP and alerts.
//!
//! etcd is the engine (Debian's `etcd-server` on both nodes and a witness): leases,
//! elections and transactions come from it, not from code of ours. Modules:
//! * [`config`]: the pair's description (`STATE/cluster.json`), written by pairing.
//! * [`node`]: a node's lease, heartbeat, election, self-fencing and health.
//! * [`vip`]: the management virtual IP (rtnetlink, gratuitous ARP).
//! * [`pairing`]: join tokens, the pair's CA, joining and leaving.
//! * [`storage`]: which node serves each group of OS volumes, takeover, Outdated, resync
//!   (carried out by storaged).
//! * [`alerts`]: OneView-shaped alerts, raised and cleared by themselves.
//! * [`status`]: what the control interface reports; the election key deployd fences on.
//! * [`control`]: the D-Bus (zbus, peer to peer) interface and its client.
//! * [`cli`]: the command line (the node daemon, `etcd`, `witness`).

pub mod alerts;
pub mod cli;
pub mod config;
pub mod control;
pub mod node;
pub mod pairing;
pub mod status;
pub mod storage;
pub mod vip;

use std::sync::Arc;

use crate::alerts::Alert;
use crate::node::Shared;
use crate::status::{NodeInfo, Status};

impl control::View for Shared {
    fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The members as the health loop last saw them (every second), with who is active as
    /// of now: right after a takeover the list must not still name the old active node.
    fn nodes(&self) -> Vec<NodeInfo> {
        let active = self.status.borrow().active.clone();
        let mut nodes = self.nodes.lock().clone();
        for n in &mut nodes {
            if n.role == "Active" || n.role == "Standby" {
                n.role = if active.as_deref() == Some(n.name.as_str()) {
                    "Active".into()
                } else {
                    "Standby".into()
                };
            }
        }
        nodes
    }

    fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().list()
    }
}

/// A single appliance's view: always the active node of itself, no alerts of the pair.
#[derive(Debug)]
pub struct Single {
    pub me: String,
}

impl control::View for Single {
    fn status(&self) -> Status {
        Status::single(&self.me)
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        Vec::new()
    }

    fn alerts(&self) -> Vec<Alert> {
        Vec::new()
    }
}

/// The view the control interface serves for `shared`.
pub fn view(shared: &Arc<Shared>) -> Arc<dyn control::View> {
    Arc::clone(shared) as Arc<dyn control::View>
}
