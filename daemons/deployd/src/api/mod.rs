//! The transport: what every request goes through before and after its resource's handler.
//!
//! [`transport`] applies HPE's conventions to every request (X-API-Version, the `auth`
//! session header, roles, oversized bodies, the audit log); [`error`] turns every failure into
//! a status and HPE's error body; [`collection`] pages, filters and sorts collections; [`body`],
//! [`upload`] and [`download`] read and write what requests and responses carry; [`task`]
//! answers for work that runs as a task. The resources themselves are `crate::rest`.

pub mod body;
pub mod collection;
pub mod download;
pub mod error;
pub mod task;
pub mod transport;
pub mod upload;
pub mod version;

/// Largest JSON body accepted (plan scripts are the largest JSON documents, tens of KiB).
pub const JSON_BODY_LIMIT: usize = 8 << 20;
