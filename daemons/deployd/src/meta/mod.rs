//! The metadata store: every resource the API manages, as JSON documents with revisions.
//!
//! The interface is etcd's shape on purpose: a global revision that every committed change
//! increments, each record carrying the revision that last modified it (its eTag), and atomic
//! multi-record transactions with per-record preconditions, including "no key under this
//! prefix" (etcd's compare over a key range). One appliance uses [`RedbStore`]; the HA pair
//! uses [`EtcdStore`]; both pass the same test suite (`suite.rs`).
//!
//! The store knows nothing of the domain: which names must be unique and which references
//! must resolve is `domain::records`, which writes index records ([`Kind::Name`],
//! [`Kind::Reference`]) beside the resources in the same transaction. Which fields are
//! secrets is the domain's too; [`SealedStore`] seals them over any store.

pub mod etcd_store;
mod redb_store;
pub mod sealed;
#[cfg(test)]
pub(crate) mod suite;

pub use etcd_store::{EtcdStore, Fence, WriteGate};
pub use redb_store::RedbStore;
pub use sealed::{SealedStore, SecretFields, SecretKey};

use serde_json::Value;

/// What kind of resource a record is; also its key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    PlanScript,
    BuildPlan,
    DeploymentPlan,
    GoldenImage,
    OsVolume,
    ArtifactBundle,
    DeploymentGroup,
    Task,
    User,
    ServerHardware,
    ServerProfile,
    /// A unique name: id `<kind prefix>/<name>`, value `{"id": <record id>}`.
    Name,
    /// A reference that must resolve: id `<target prefix>/<target id>/<source prefix>/<source
    /// id>`, so every record referring to a target is under one prefix.
    Reference,
    /// Markers of the store's own format (which migrations ran).
    Schema,
    /// A login session shared by the pair's nodes (id: the token's SHA-256).
    Session,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 15] = [
        Kind::PlanScript,
        Kind::BuildPlan,
        Kind::DeploymentPlan,
        Kind::GoldenImage,
        Kind::OsVolume,
        Kind::ArtifactBundle,
        Kind::DeploymentGroup,
        Kind::Task,
        Kind::User,
        Kind::ServerHardware,
        Kind::ServerProfile,
        Kind::Name,
        Kind::Reference,
        Kind::Schema,
        Kind::Session,
    ];

    /// The key prefix (and REST collection name).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::PlanScript => "plan-scripts",
            Self::BuildPlan => "build-plans",
            Self::DeploymentPlan => "deployment-plans",
            Self::GoldenImage => "golden-images",
            Self::OsVolume => "os-volumes",
            Self::ArtifactBundle => "artifact-bundles",
            Self::DeploymentGroup => "deployment-groups",
            Self::Task => "tasks",
            Self::User => "users",
            Self::ServerHardware => "server-hardware",
            Self::ServerProfile => "server-profiles",
            Self::Name => "names",
            Self::Reference => "references",
            Self::Schema => "schema",
            Self::Session => "sessions",
        }
    }
}

/// A store revision. Strictly increasing over committed transactions.
pub type Revision = u64;

/// A record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    pub id: String,
    /// Revision of the transaction that created the record.
    pub created: Revision,
    /// Revision of the transaction that last modified it (the eTag).
    pub revision: Revision,
    pub value: Value,
}

/// A precondition on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The record must not exist.
    Absent,
    /// The record must exist (any revision).
    Present,
    /// The record must exist at exactly this revision.
    Revision(Revision),
}

/// One change in a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put {
        kind: Kind,
        id: String,
        value: Value,
        expect: Expect,
    },
    Delete {
        kind: Kind,
        id: String,
        expect: Expect,
    },
    /// Changes nothing: the transaction commits only if `expect` holds for the record.
    Check {
        kind: Kind,
        id: String,
        expect: Expect,
    },
    /// Changes nothing: the transaction commits only if no record of `kind` has an id that
    /// starts with `prefix`.
    CheckNone { kind: Kind, prefix: String },
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A precondition did not hold; nothing was changed.
    #[error("{kind:?} {id}: {what}")]
    Conflict {
        kind: Kind,
        id: String,
        what: String,
    },
    /// The store cannot be reached (the pair's etcd has no quorum, or is down); nothing was
    /// changed.
    #[error("{0}")]
    Unavailable(String),
    /// This node lost the pair's management role: the write was refused as a whole.
    #[error("{0}")]
    NotActive(String),
    #[error("metadata store: {0}")]
    Backend(String),
}

/// Operations per transaction when copying a whole store.
const COPY_CHUNK: usize = 4096;

/// Copies every record of `from` into `to` once: nothing if `to` has the `Schema` record
/// `marker`; else every record (as it is: sealed secrets stay sealed), in transactions of
/// [`COPY_CHUNK`] operations, then the marker last, so an interrupted copy is done again
/// whole. Returns how many records were copied.
pub fn copy_all(
    from: &dyn MetaStore,
    to: &dyn MetaStore,
    marker: &str,
) -> Result<usize, MetaError> {
    if to.get(Kind::Schema, marker)?.is_some() {
        return Ok(0);
    }
    let mut ops = Vec::new();
    for kind in Kind::ALL {
        for r in from.list(kind)? {
            ops.push(Op::Put {
                kind,
                id: r.id,
                value: r.value,
                expect: Expect::Any,
            });
        }
    }
    let copied = ops.len();
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(COPY_CHUNK));
        to.apply(std::mem::replace(&mut ops, rest))?;
    }
    to.apply(vec![Op::Put {
        kind: Kind::Schema,
        id: marker.into(),
        value: serde_json::json!({"records": copied}),
        expect: Expect::Absent,
    }])?;
    Ok(copied)
}

/// Whether `expect` holds for a record whose revision is `current` (`None`: absent).
pub(crate) fn check(
    kind: Kind,
    id: &str,
    expect: Expect,
    current: Option<Revision>,
) -> Result<(), MetaError> {
    let fail = |what: String| {
        Err(MetaError::Conflict {
            kind,
            id: id.to_string(),
            what,
        })
    };
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) | (Expect::Present, Some(_)) => Ok(()),
        (Expect::Absent, Some(_)) => fail("already exists".into()),
        (Expect::Present | Expect::Revision(_), None) => fail("does not exist".into()),
        (Expect::Revision(want), Some(have)) if want == have => Ok(()),
        (Expect::Revision(want), Some(have)) => {
            fail(format!("was modified (revision {have}, expected {want})"))
        }
    }
}

/// The metadata store interface.
pub trait MetaStore: Send + Sync + std::fmt::Debug {
    fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, MetaError>;
    fn list(&self, kind: Kind) -> Result<Vec<Record>, MetaError>;
    /// The records of `kind` whose id starts with `prefix`, in id order.
    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Vec<Record>, MetaError>;
    /// Applies `ops` atomically if every precondition holds, and returns the new revision.
    /// Preconditions are checked in order against the state the earlier ops of the same
    /// transaction left; callers that must also run on etcd (where every comparison sees the
    /// state before the transaction) put their checks before their writes.
    fn apply(&self, ops: Vec<Op>) -> Result<Revision, MetaError>;
    /// The revision of the last committed transaction.
    fn revision(&self) -> Result<Revision, MetaError>;
}
