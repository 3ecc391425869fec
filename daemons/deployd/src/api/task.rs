//! Work that runs as a task answers `202 Accepted` with `Location: /rest/tasks/<id>` and the
//! task's body, as the HPE SDKs' task monitors expect.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::domain::DomainError;
use crate::services::tasks::{TaskHandle, Tasks};

/// The `202 Accepted` response for `task`.
pub fn accepted(tasks: &Tasks, task: &TaskHandle) -> Response {
    match tasks.get(&task.id) {
        Ok(Some(body)) => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/rest/tasks/{}", task.id))],
            Json(body),
        )
            .into_response(),
        Ok(None) => {
            ApiError::from(DomainError::not_found(format!("Task {}", task.id))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
