//! The REST API: HPE Image Streamer's resource model over HTTPS.
//!
//! `transport` applies HPE's conventions to every request (X-API-Version, the `auth` session
//! header, roles, the audit log); each resource has its own module of handlers; `openapi`
//! describes them all.

pub mod appliance;
pub mod collection;
pub mod error;
pub mod sessions;
pub mod tasks;
pub mod transport;
pub mod users;
pub mod version;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::artifacts;
use crate::state::AppState;

/// Largest JSON body accepted (plan scripts are the largest JSON documents, tens of KiB).
pub const JSON_BODY_LIMIT: usize = 8 << 20;

/// The whole API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/rest/version", get(version::get_version))
        .route(
            "/rest/login-sessions",
            post(sessions::login)
                .put(sessions::renew)
                .delete(sessions::logout),
        )
        .route("/rest/tasks", get(tasks::list_tasks))
        .route("/rest/tasks/{id}", get(tasks::get_task))
        .route("/rest/openapi.json", get(crate::openapi::get_openapi))
        .route("/rest/appliance/shutdown", post(appliance::shutdown))
        .merge(users::routes())
        .merge(artifacts::plan_scripts::routes())
        .merge(artifacts::build_plans::routes())
        .merge(artifacts::deployment_plans::routes())
        .merge(artifacts::deployment_groups::routes())
        .merge(artifacts::golden_images::routes())
        .merge(artifacts::os_volumes::routes())
        .merge(artifacts::artifact_bundles::routes())
        .merge(artifacts::server_hardware::routes())
        .merge(artifacts::server_profiles::routes())
        .fallback(transport::not_found)
        .method_not_allowed_fallback(transport::method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            transport::transport,
        ))
        .with_state(state)
}
