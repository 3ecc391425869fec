//! What the domain works with: storaged (volume content), plan runs, compute modules'
//! Redfish endpoints, tasks, the state directory's files, the audit log, the clock, the pair
//! (clusterd), and the metadata store underneath. Services know nothing of HTTP or of the domain's rules.

pub mod audit;
pub mod clock;
pub mod cluster;
pub mod files;
pub mod pairing;
pub mod plan_runs;
pub mod redfish;
pub mod storage;
pub mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::meta::MetaStore;

use cluster::Cluster;
use files::StateFiles;
use plan_runs::PlanRuns;
use storage::Storage;
use tasks::Tasks;

/// Settings the domain's work depends on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// storaged's NBD server as compute modules reach it: their boot target's address.
    pub boot_nbd_addr: SocketAddr,
    /// Largest disk image a golden image file may unpack to.
    pub max_image_bytes: u64,
}

/// The services, shared by every request and background task.
#[derive(Debug)]
pub struct Services {
    pub meta: Arc<dyn MetaStore>,
    pub storage: Storage,
    pub tasks: Tasks,
    pub runs: PlanRuns,
    pub files: StateFiles,
    pub settings: Settings,
    /// The pair this node belongs to, if any: who takes changes.
    pub cluster: Arc<Cluster>,
}
