//! `/rest/tasks`: list, read, cancel (`PUT` with `"taskState": "Cancelling"`) and the
//! activity log a failed or cancelled run left (`/rest/tasks/{id}/log`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::api::body::parse_body;
use crate::api::collection::{ListQuery, envelope};
use crate::api::download::text_download;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::domain::{DomainError, tasks};
use crate::state::AppState;

/// The part of a task a client may change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskUpdate {
    /// `Cancelling` to cancel the task (a running or queued deploy or capture).
    pub task_state: String,
}

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

/// Cancels a running or queued deploy or capture: `{"taskState": "Cancelling"}`. The task
/// shows `Stopping` until its work has cleaned up, then ends `Terminated`.
#[utoipa::path(put, path = "/rest/tasks/{id}", tag = "tasks", request_body = TaskUpdate,
    responses((status = 200, description = "TaskResourceV2, now Stopping", body = Object),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "ended, or not cancellable", body = ErrorBody)))]
pub async fn update_task(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let update: TaskUpdate = parse_body(&body)?;
    Ok(Json(tasks::cancel(
        &st.services,
        &id,
        ctx.user(),
        &update.task_state,
    )?))
}

/// The activity log of a failed or cancelled run, kept with its task.
#[utoipa::path(get, path = "/rest/tasks/{id}/log", tag = "tasks",
    responses((status = 200, description = "text/plain log", content_type = "text/plain", body = String),
              (status = 404, body = ErrorBody)))]
pub async fn task_log(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let text = tasks::log(&st.services, &id)?;
    Ok(text_download(text, &format!("task-{id}.log")))
}
