//! deployd: the appliance's REST API, artifact store and deployment manager.
//!
//! It serves HPE Image Streamer's REST resource model over HTTPS so existing HPE tooling
//! works unchanged, keeps artifact metadata in a transactional store with revisions (the
//! eTags), and keeps golden image and OS volume content in storaged.
//!
//! Layers, each importing only the ones below it:
//!
//! ```text
//! daemon, server      the program: command line, start order, HTTPS
//! rest                one module per HPE resource: handlers and OpenAPI annotations
//! ui                  the web console's embedded files at / (a client of rest, no logic)
//! api                 the transport: versions, sessions, roles, errors → statuses, paging
//! state               what a handler can reach (the composition root)
//! domain              records and their rules; deploy, capture, bundles (DomainError)
//! auth                users, password hashes, sessions, the login rate limit
//! services            storaged, plan runs, Redfish, tasks, files, audit log, clock
//! meta                the metadata store (redb; etcd behind the same trait later)
//! ```
//!
//! The plan-script language, its engine, the sandbox and volume attachment are crates of
//! their own (`planscript`, `plan-engine`, `plan-sandbox`, `volume-attach`).
//!
//! It must never run a plan script outside its sandbox, and never return a password or a
//! management credential in a response.

pub mod api;
pub mod auth;
pub mod daemon;
pub mod domain;
pub mod meta;
pub mod rest;
pub mod server;
pub mod services;
pub mod state;
pub mod tls;
pub mod ui;
