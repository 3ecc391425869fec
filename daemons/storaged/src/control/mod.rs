//! The local control interface: D-Bus, peer to peer, on a Unix socket (no bus daemon).
//!
//! `storaged serve` answers on the socket ([`server`]); `storaged volume ...` and the other
//! daemons call it through [`client`]. Only root can open the socket (mode 0600), which is the
//! whole of its access control: the REST API in deployd is where users are authenticated.
//! Results are returned as JSON documents of the [`crate::store::record`] types.

pub mod client;
pub mod error;
pub mod pair;
pub mod server;

/// Object path of the storage interface.
pub const OBJECT_PATH: &str = "/org/streamer/Storage1";
/// D-Bus interface name.
pub const INTERFACE: &str = "org.streamer.Storage1";
/// The pair's interface, on the same object (a pair member's storaged only).
pub const PAIR_INTERFACE: &str = "org.streamer.StoragePair1";
/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = appliance_layout::STORAGED_SOCKET;
