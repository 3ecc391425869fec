//! Volumes: chains of copy-on-write layers, and the one read and write path through them.
//!
//! A volume is its own top [`layer`] plus the chain of its parents' layers. Golden images are
//! frozen (immutable) volumes; an OS volume is a writable layer over one. Reads walk the chain
//! per run of blocks; every write, zero and trim goes through [`write`], the single place where
//! replication to the peer appliance and change tracking hook in.

pub mod activity;
pub mod chain;
pub mod changes;
pub mod layer;
pub mod overlap;
pub mod presence;
pub mod write;

pub use activity::ActivityLog;
pub use chain::Volume;
pub use changes::{CatalogOp, ChangeMap, LocalOnly, PeerCopy, Replica, WriteOp};
