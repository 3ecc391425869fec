//! deployd: the appliance's REST API, artifact store and deployment manager.
//!
//! It serves HPE Image Streamer's REST resource model over HTTPS so existing HPE tooling
//! works unchanged, keeps artifact metadata in a transactional store with revisions (the
//! eTags), and keeps golden image and OS volume content in storaged.
//!
//! It must never run a plan script outside its sandbox, and never return a password or a
//! management credential in a response.

pub mod api;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod bundle;
pub mod daemon;
pub mod deploy;
pub mod files;
pub mod meta;
pub mod openapi;
pub mod redfish;
pub mod server;
pub mod state;
pub mod storage;
pub mod tasks;
pub mod tls;
pub mod upload;
