//! storaged: the appliance's volume store and boot-volume service.
//!
//! Golden images are immutable volumes; OS volumes are copy-on-write clones of them, made in
//! O(1) whatever their size; captures are snapshots. Volumes are served to compute modules over
//! NBD, each export bound to the addresses allowed to use it, and driven locally over a D-Bus
//! peer-to-peer control socket.
//!
//! It must never acknowledge a FLUSH or FUA write before the data is on stable storage, and
//! never let one volume's failure damage another's data.

pub mod block;
pub mod cli;
pub mod control;
pub mod export;
pub mod imagefile;
pub mod iscsi;
pub mod nbd;
pub mod ownership;
pub mod replication;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod volume;
