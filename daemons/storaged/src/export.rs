//! What the boot protocols may serve: export lookup with per-export client allow-lists.
//!
//! The store implements [`ExportCatalog`]; protocol servers (NBD now, iSCSI later) call it on
//! every connection, so a compute module reaches only the volumes exported to its address.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::block::BlockDevice;

/// Why an export could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// No export has that name (or the client may not know it exists).
    #[error("no export named {0:?}")]
    Unknown(String),
    /// The export exists but this client is not on its allow-list.
    #[error("client {client} is not allowed to use export {name:?}")]
    Denied { name: String, client: IpAddr },
}

/// Who may log in to an exported volume over iSCSI, beside its address allow-list (which
/// holds for every protocol).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IscsiAccess {
    /// Initiator names (IQNs) allowed; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiators: Vec<String>,
    /// The CHAP name and secret the initiator must answer with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<ChapSecret>,
    /// Mutual CHAP: the name and secret this target answers an initiator's challenge with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_chap: Option<ChapSecret>,
}

/// A CHAP name and secret.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChapSecret {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapSecret")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One export as listed by NBD_OPT_LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The volume's id (an iSCSI target is named after it).
    pub id: String,
    pub name: String,
    pub description: String,
}

/// An export opened for one connection. Dropping it ends the connection's use of the volume,
/// which is what lets the store refuse to delete a volume that is in use.
pub struct OpenExport {
    /// The name the client asked for.
    pub name: String,
    /// Human-readable description (NBD_INFO_DESCRIPTION).
    pub description: String,
    /// The device to serve.
    pub device: Arc<dyn BlockDevice>,
    /// Held for the connection's lifetime.
    pub lease: Box<dyn Send + Sync>,
    /// Whether this node still serves the volume (on a pair, its group may move to the other
    /// node: the connection then closes, and the client reconnects to the new owner).
    pub served: crate::ownership::Served,
    /// Who may log in over iSCSI (the NBD server does not look).
    pub iscsi: IscsiAccess,
    /// The volume's id (the iSCSI unit serial number).
    pub volume_id: String,
}

impl fmt::Debug for OpenExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenExport")
            .field("name", &self.name)
            .field("size", &self.device.size())
            .field("read_only", &self.device.read_only())
            .finish_non_exhaustive()
    }
}

/// The set of exports a protocol server may hand out.
pub trait ExportCatalog: Send + Sync + 'static {
    /// Opens export `name` (a volume id or name) for `client`.
    fn open(&self, name: &str, client: IpAddr) -> Result<OpenExport, ExportError>;

    /// The exports `client` is allowed to see.
    fn list(&self, client: IpAddr) -> Vec<ExportSummary>;
}
