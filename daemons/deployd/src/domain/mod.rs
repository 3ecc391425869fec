//! The domain: the appliance's records and their rules, and the work that joins them
//! (deploy, capture, bundle extraction). It speaks in the appliance's terms and returns
//! [`DomainError`]s; it knows nothing of HTTP. Below it: the services and the metadata store.
//!
//! * The records' rules, one module per kind: [`plan_scripts`], [`build_plans`],
//!   [`deployment_plans`] (the three [`definitions`] clients write whole, through one generic
//!   path), [`golden_images`], [`os_volumes`], [`server_hardware`], [`server_profiles`],
//!   [`artifact_bundles`], [`deployment_groups`], [`users`].
//! * What they share: [`collection`] (kinds, URIs, names of each collection), [`records`]
//!   (reads, and the atomic [`records::Change`] that keeps names unique and references whole),
//!   [`references`] (which names are unique, which references must resolve, who uses what),
//!   [`secrets`] (which fields are sealed at rest),
//!   [`attributes`] (custom attributes as plans carry them), [`input`], [`error`].
//! * Making a deployment plan runnable: [`ready`] (scripts with every attribute resolved) and
//!   [`system_attributes`].
//! * The HPE artifact-bundle format: [`bundle`].
//! * Orchestration, above all of the above: [`deploy`] (what a profile change sets off, the
//!   deploy job, capture, recovery after a stop), and [`tasks`] (cancel, kept run logs).

pub mod artifact_bundles;
pub mod attributes;
pub mod build_plans;
pub mod bundle;
pub mod collection;
pub mod definitions;
pub mod deploy;
pub mod deployment_groups;
pub mod deployment_plans;
pub mod error;
pub mod golden_images;
pub mod input;
pub mod os_volumes;
pub mod plan_scripts;
pub mod ready;
pub mod records;
pub mod references;
pub mod secrets;
pub mod server_hardware;
pub mod server_profiles;
pub mod system_attributes;
pub mod tasks;
pub mod users;

pub use error::DomainError;
