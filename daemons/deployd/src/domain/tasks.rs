//! Tasks as clients change them: the cancel of a deploy or capture (`PUT /rest/tasks/{id}`
//! with `"taskState": "Cancelling"`, as OneView's task API takes it), and the activity log a
//! failed or cancelled run left with its task.

use serde_json::Value;

use super::error::DomainError;
use crate::services::Services;
use crate::services::tasks::{CancelError, TaskHandle, output_tail};

/// Where the activity logs of failed and cancelled runs are kept, per task.
pub const TASK_LOG: &str = "tasks";

/// How many task logs are kept (the oldest go first).
const TASK_LOGS_KEPT: usize = 200;

/// Where a task's kept activity log can be read.
pub fn log_location(task_id: &str) -> String {
    format!("/rest/tasks/{task_id}/log (streamerctl task log {task_id})")
}

/// Keeps a failed or cancelled run's activity log with its task; returns its end for the
/// task's `taskOutput`.
pub fn keep_run_log(s: &Services, task: &TaskHandle, log: &str) -> Vec<String> {
    if log.trim().is_empty() {
        return Vec::new();
    }
    s.files.log(TASK_LOG, &task.id, log.trim_end());
    s.files.prune_logs(TASK_LOG, TASK_LOGS_KEPT);
    output_tail(log)
}

/// The `taskState` values a client sends to cancel a task.
pub const CANCEL_REQUESTS: [&str; 2] = ["Cancelling", "Stopping"];

/// Cancels task `id` on behalf of `user`, who asked for `requested_state`; returns the task.
pub fn cancel(
    s: &Services,
    id: &str,
    user: &str,
    requested_state: &str,
) -> Result<Value, DomainError> {
    if !CANCEL_REQUESTS.contains(&requested_state) {
        return Err(DomainError::invalid(
            "INVALID_TASK_STATE",
            format!(
                "taskState {requested_state:?} cannot be set: a task's state changes only to \
                 cancel it, with \"Cancelling\"."
            ),
        ));
    }
    s.tasks.cancel(id, user).map_err(|e| match e {
        CancelError::NotFound(_) => DomainError::not_found(format!("Task {id}")),
        CancelError::Ended(state) => DomainError::conflict(
            "TASK_ENDED",
            format!("Task {id} has already ended ({state}): there is nothing to cancel."),
            "Nothing to do.",
        ),
        CancelError::NotCancellable => DomainError::conflict(
            "TASK_NOT_CANCELLABLE",
            format!("Task {id} cannot be cancelled: only deploys and captures can."),
            "Wait for it to end.",
        ),
        CancelError::Meta(e) => e.into(),
    })
}

/// The activity log kept with task `id` (a failed or cancelled run's).
pub fn log(s: &Services, id: &str) -> Result<String, DomainError> {
    if s.tasks.get(id)?.is_none() {
        return Err(DomainError::not_found(format!("Task {id}")));
    }
    let text = s.files.read_log(TASK_LOG, id)?;
    if text.is_empty() {
        return Err(DomainError::NotFound(format!(
            "Task {id} has no activity log: one is kept only for a deploy or capture whose \
             run failed or was cancelled (a successful run's log is the OS volume's or golden \
             image's)."
        )));
    }
    Ok(text)
}
