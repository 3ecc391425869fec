//! The REST resources: one module per HPE resource, holding its handlers and their OpenAPI
//! annotations, and nothing else. The collections that behave alike (list, read, create,
//! replace, delete) are declarations served by [`crud`]; the rules are the domain's.
//! [`router`] assembles them under the transport's middleware.

pub mod appliance;
pub mod artifact_bundles;
pub mod audit_logs;
pub mod build_plans;
pub mod cluster;
pub mod crud;
pub mod deployment_groups;
pub mod deployment_plans;
pub mod golden_images;
pub mod login_sessions;
pub mod openapi;
pub mod os_volumes;
pub mod pairing;
pub mod plan_scripts;
pub mod server_hardware;
pub mod server_profiles;
pub mod tasks;
pub mod users;
pub mod version;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::api::{JSON_BODY_LIMIT, transport};
use crate::state::AppState;

/// The whole API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/rest/version", get(version::get_version))
        .route(
            "/rest/login-sessions",
            post(login_sessions::login)
                .put(login_sessions::renew)
                .delete(login_sessions::logout),
        )
        .route("/rest/tasks", get(tasks::list_tasks))
        .route(
            "/rest/tasks/{id}",
            get(tasks::get_task).put(tasks::update_task),
        )
        .route("/rest/tasks/{id}/log", get(tasks::task_log))
        .route("/rest/openapi.json", get(openapi::get_openapi))
        .route("/rest/appliance/shutdown", post(appliance::shutdown))
        .route("/rest/appliance/nodes", get(cluster::list_nodes))
        .route("/rest/appliance/storage", get(cluster::storage))
        .route(
            "/rest/appliance/pair",
            get(pairing::get_pair)
                .post(pairing::start_pairing)
                .delete(pairing::unpair),
        )
        .route("/rest/appliance/pair/join", post(pairing::join))
        .route(
            "/rest/appliance/pair/join-requests",
            post(pairing::join_request),
        )
        .route("/rest/alerts", get(cluster::list_alerts))
        .route("/rest/audit-logs", get(audit_logs::list))
        .route("/rest/alerts/{id}", get(cluster::get_alert))
        .merge(users::routes())
        .merge(plan_scripts::routes())
        .merge(build_plans::routes())
        .merge(deployment_plans::routes())
        .merge(deployment_groups::routes())
        .merge(golden_images::routes())
        .merge(os_volumes::routes())
        .merge(artifact_bundles::routes())
        .merge(server_hardware::routes())
        .merge(server_profiles::routes())
        .fallback(transport::not_found)
        .method_not_allowed_fallback(transport::method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            transport::transport,
        ))
        .with_state(state)
}
