//! What the catalog records about volumes and exports; also the shapes the control interface
//! returns.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Whether a volume can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// Accepts writes (an OS volume).
    Writable,
    /// Immutable (a golden image or a snapshot); may have children.
    Frozen,
}

/// The catalog record of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// UUID, fixed for the volume's life.
    pub id: String,
    /// Unique, chosen by the user (defaults to the id).
    pub name: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// Copy-on-write granularity in bytes.
    pub block_size: u32,
    /// The layer holding this volume's own blocks (`layers/<layer>.data`, `.map`).
    pub layer: String,
    /// The volume this one is layered on, if any.
    pub parent: Option<String>,
    pub state: VolumeState,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// `sha256:<hex>` of the whole virtual content, recorded on import.
    pub checksum: Option<String>,
    /// Where the content came from (file name on import).
    pub origin: Option<String>,
    /// On a pair, a writable volume's group: the node whose storage address serves it
    /// (`ownership`). None: this node's own (and every volume of a single appliance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// On a pair, a writable volume's data generation: the same on both copies while they
    /// are in sync (0: as created). The node serving it starts a new one when it goes on
    /// without the peer ([`crate::store::Store::start_generations_without_peer`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// While this node writes without the peer: the generation the peer's copy was left at.
    /// A resync from the activity log is enough for a peer copy at that generation (or at
    /// this one); a copy at any other generation is resynced whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_generation: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Who may use a volume over the boot protocols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// The exported volume's id.
    pub volume: String,
    /// Client addresses or networks allowed to connect; empty means any client.
    pub allow: Vec<IpNet>,
    /// Serve read-only even if the volume is writable.
    pub read_only: bool,
    /// Who may log in over iSCSI (initiator names, CHAP); none: any initiator, no CHAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<crate::export::IscsiAccess>,
}

/// A volume as `list` and `info` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    #[serde(flatten)]
    pub record: VolumeRecord,
    /// Bytes of storage this volume's own layer occupies.
    pub allocated_bytes: u64,
    /// Ids from the parent up to the base.
    pub parent_chain: Vec<String>,
    /// Ids of the volumes layered directly on this one.
    pub children: Vec<String>,
    pub export: Option<ExportRecord>,
    /// Open connections.
    pub connections: usize,
}

/// A problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The volume or file concerned.
    pub subject: String,
    pub what: String,
}

/// The result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub volumes_checked: usize,
    pub checksums_checked: usize,
    pub problems: Vec<Problem>,
}
