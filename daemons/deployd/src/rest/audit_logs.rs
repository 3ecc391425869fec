//! `GET /rest/audit-logs`: the audit log (every change and login attempt: who, from where,
//! what, the result, and on a pair which node), newest first; on a pair, both nodes' entries
//! (the log is cluster-wide). OneView's collection parameters apply (`start`, `count`,
//! `filter`, `sort`) to the newest [`WINDOW`] entries.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::Value;

use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::state::AppState;

/// How many of the newest entries a request looks at.
pub const WINDOW: usize = 5000;

/// The newest audit entries.
#[utoipa::path(get, path = "/rest/audit-logs", tag = "appliance", params(ListQuery),
    responses((status = 200, description = "Audit log entries, newest first", body = Object),
              (status = 503, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = tokio::task::spawn_blocking(move || st.audit.recent(WINDOW))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(envelope(
        "/rest/audit-logs",
        "audit-logs",
        "AuditLogCollection",
        entries,
        &q,
    )?))
}
