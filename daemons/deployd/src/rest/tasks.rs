//! `/rest/tasks`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::Value;

use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::domain::DomainError;
use crate::state::AppState;

/// Lists tasks.
#[utoipa::path(get, path = "/rest/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "TaskResourceV2 collection", body = Object),
              (status = 401, body = ErrorBody)))]
pub async fn list_tasks(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st.services.tasks.list()?;
    Ok(Json(envelope(
        "/rest/tasks",
        "tasks",
        "TaskResourceCollectionV2",
        members,
        &q,
    )?))
}

/// One task.
#[utoipa::path(get, path = "/rest/tasks/{id}", tag = "tasks",
    responses((status = 200, description = "TaskResourceV2", body = Object),
              (status = 404, body = ErrorBody)))]
pub async fn get_task(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task = st.services.tasks.get(&id)?;
    Ok(Json(task.ok_or_else(|| {
        DomainError::not_found(format!("Task {id}"))
    })?))
}
