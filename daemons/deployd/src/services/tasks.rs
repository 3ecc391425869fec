//! Tasks: asynchronous work as HPE's TaskResourceV2, persisted in the metadata store.
//!
//! A handler that starts long work creates a task, answers `202 Accepted` with
//! `Location: /rest/tasks/<id>` and the task body, and runs the work in the background,
//! recording progress, completion or the failure (as `taskErrors`). The HPE SDKs' task
//! monitors poll the task until `taskState` is terminal, then GET
//! `associatedResource.resourceUri`. Tasks still running when deployd stops are marked
//! `Error` ("interrupted") when it starts again.
//!
//! **Cancel.** Deploys and captures start as cancellable tasks (`isCancellable: true`): each
//! has a [`Cancel`] registered here until it ends. [`Tasks::cancel`] sets it and shows the
//! task as `Stopping`; the work notices within moments, cleans up as a failure does, and
//! ends the task `Terminated` ([`TaskHandle::terminate`]). The states are the ones HPE's
//! SDKs know: `Stopping` is pending, `Terminated` an error end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::clock::now_iso;
use crate::meta::{Expect, Kind, MetaError, MetaStore, Op};
use plan_engine::run::CancelFlag;

/// A cancel request: the async side of a task awaits [`Cancel::cancelled`], a plan run's
/// blocking thread polls its [`CancelFlag`].
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    flag: CancelFlag,
    by: Mutex<Option<String>>,
    notify: Notify,
}

impl Cancel {
    /// Requests the cancel, on behalf of user `by` (the first request is kept).
    pub fn cancel(&self, by: &str) {
        self.inner
            .by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| by.to_string());
        self.inner.flag.cancel();
        self.inner.notify.notify_waiters();
    }

    /// Who cancelled, once someone did.
    pub fn by(&self) -> Option<String> {
        self.inner
            .by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.flag.is_cancelled()
    }

    /// The flag a blocking plan run polls.
    pub fn flag(&self) -> CancelFlag {
        self.inner.flag.clone()
    }

    /// Resolves (to who cancelled) once the cancel is requested.
    pub async fn cancelled(&self) -> String {
        loop {
            let notified = self.inner.notify.notified();
            if let Some(by) = self.by() {
                return by;
            }
            notified.await;
        }
    }
}

/// A cancellable task while it runs.
#[derive(Debug)]
struct Control {
    cancel: Cancel,
    resource_uri: String,
    /// Set to true when the task ends.
    done: watch::Sender<bool>,
}

/// Why a task could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no task {0}")]
    NotFound(String),
    #[error("the task has already ended ({0})")]
    Ended(String),
    #[error("this task cannot be cancelled (only deploys and captures can)")]
    NotCancellable,
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What a failed task records about its failure: HPE's error entry (`errorCode`,
/// `message`, `recommendedActions`).
pub trait TaskError {
    fn code(&self) -> &str;
    fn message(&self) -> String;
    fn action(&self) -> String;
}

/// The resource a task works on.
#[derive(Debug, Clone)]
pub struct Associated {
    pub category: String,
    pub name: String,
    pub uri: String,
}

/// The task store, and the cancel requests of the cancellable tasks running.
#[derive(Debug, Clone)]
pub struct Tasks {
    meta: Arc<dyn MetaStore>,
    controls: Arc<Mutex<HashMap<String, Control>>>,
}

/// One running task; dropping it without finishing leaves it Running (a restart marks it).
#[derive(Debug, Clone)]
pub struct TaskHandle {
    tasks: Tasks,
    pub id: String,
}

impl Tasks {
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Self {
            meta,
            controls: Arc::default(),
        }
    }

    fn controls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Control>> {
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a Running task named `name` (use `"Delete"` for deletions: the Python SDK
    /// then skips fetching the deleted resource).
    pub fn start(&self, name: &str, owner: &str, on: &Associated) -> Result<TaskHandle, MetaError> {
        self.create(name, owner, on, false)
    }

    /// As [`Tasks::start`], for work that can be cancelled: returns the cancel request the
    /// work must watch.
    pub fn start_cancellable(
        &self,
        name: &str,
        owner: &str,
        on: &Associated,
    ) -> Result<(TaskHandle, Cancel), MetaError> {
        let task = self.create(name, owner, on, true)?;
        let cancel = Cancel::default();
        self.controls().insert(
            task.id.clone(),
            Control {
                cancel: cancel.clone(),
                resource_uri: on.uri.clone(),
                done: watch::Sender::new(false),
            },
        );
        Ok((task, cancel))
    }

    /// Requests the cancel of running task `id` on behalf of `by`; returns the task as it
    /// now stands (`Stopping`).
    pub fn cancel(&self, id: &str, by: &str) -> Result<Value, CancelError> {
        let cancel = self.controls().get(id).map(|c| c.cancel.clone());
        let Some(cancel) = cancel else {
            let task = self
                .get(id)?
                .ok_or_else(|| CancelError::NotFound(id.into()))?;
            let state = task["taskState"].as_str().unwrap_or_default().to_string();
            return Err(match state.as_str() {
                "Running" | "New" | "Starting" | "Pending" | "Stopping" => {
                    CancelError::NotCancellable
                }
                _ => CancelError::Ended(state),
            });
        };
        cancel.cancel(by);
        let reason = format!("Cancel requested by {by}");
        self.update(id, |v| {
            if v["taskState"] == "Running" {
                v["taskState"] = json!("Stopping");
                v["stateReason"] = json!(reason);
            }
        })?;
        self.get(id)?
            .ok_or_else(|| CancelError::NotFound(id.into()))
    }

    /// Requests the cancel of the cancellable task working on `resource_uri`, if one runs;
    /// the receiver turns true when it has ended.
    pub fn cancel_work_on(&self, resource_uri: &str, by: &str) -> Option<watch::Receiver<bool>> {
        let found = self
            .controls()
            .iter()
            .find(|(_, c)| c.resource_uri == resource_uri)
            .map(|(id, c)| (id.clone(), c.done.subscribe()));
        let (id, done) = found?;
        if let Err(e) = self.cancel(&id, by) {
            tracing::warn!("cancelling task {id}: {e}");
        }
        Some(done)
    }

    /// The task ended: its cancel request is forgotten and whoever waits for it is told.
    fn ended(&self, id: &str) {
        if let Some(c) = self.controls().remove(id) {
            c.done.send_replace(true);
        }
    }

    fn create(
        &self,
        name: &str,
        owner: &str,
        on: &Associated,
        cancellable: bool,
    ) -> Result<TaskHandle, MetaError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_iso();
        let task = json!({
            "type": "TaskResourceV2",
            "category": "tasks",
            "uri": format!("/rest/tasks/{id}"),
            "name": name,
            "owner": owner,
            "taskType": "User",
            "userInitiated": true,
            "hidden": false,
            "taskState": "Running",
            "isCancellable": cancellable,
            "taskStatus": format!("{name} {}", on.name),
            "stateReason": null,
            "percentComplete": 0,
            "computedPercentComplete": 0,
            "completedSteps": 0,
            "totalSteps": 0,
            "expectedDuration": 0,
            "progressUpdates": [],
            "taskErrors": [],
            "taskOutput": [],
            "data": {},
            "parentTaskUri": null,
            "associatedTaskUri": null,
            "associatedResource": {
                "associationType": "MANAGED_BY",
                "resourceCategory": on.category,
                "resourceName": on.name,
                "resourceUri": on.uri,
            },
            "created": now,
            "modified": now,
        });
        self.meta.apply(vec![Op::Put {
            kind: Kind::Task,
            id: id.clone(),
            value: task,
            expect: Expect::Absent,
        }])?;
        Ok(TaskHandle {
            tasks: self.clone(),
            id,
        })
    }

    /// The task as the API shows it, if it exists.
    pub fn get(&self, id: &str) -> Result<Option<Value>, MetaError> {
        Ok(self.meta.get(Kind::Task, id)?.map(|r| {
            let mut v = r.value;
            v["eTag"] = json!(r.revision.to_string());
            v
        }))
    }

    pub fn list(&self) -> Result<Vec<Value>, MetaError> {
        Ok(self
            .meta
            .list(Kind::Task)?
            .into_iter()
            .map(|r| {
                let mut v = r.value;
                v["eTag"] = json!(r.revision.to_string());
                v
            })
            .collect())
    }

    fn update(&self, id: &str, f: impl Fn(&mut Value)) -> Result<(), MetaError> {
        // Read-modify-write with the record's revision, retried if a concurrent update won.
        loop {
            let Some(r) = self.meta.get(Kind::Task, id)? else {
                return Ok(());
            };
            let mut v = r.value;
            f(&mut v);
            v["modified"] = json!(now_iso());
            match self.meta.apply(vec![Op::Put {
                kind: Kind::Task,
                id: id.to_string(),
                value: v,
                expect: Expect::Revision(r.revision),
            }]) {
                Ok(_) => return Ok(()),
                Err(MetaError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Marks every task left Running by a previous process as failed.
    pub fn fail_interrupted(&self) -> Result<usize, MetaError> {
        let mut n = 0;
        for r in self.meta.list(Kind::Task)? {
            if matches!(
                r.value["taskState"].as_str(),
                Some("Running" | "New" | "Starting" | "Stopping")
            ) {
                n += 1;
                self.update(&r.id, |v| {
                    v["taskState"] = json!("Error");
                    v["isCancellable"] = json!(false);
                    v["taskStatus"] = json!("Interrupted by a restart of the appliance's deployment service");
                    v["taskErrors"] = json!([error_entry("TASK_INTERRUPTED", "The task was interrupted by a restart of deployd; its partial work was cleaned up.", "Retry the operation.")]);
                })?;
            }
        }
        Ok(n)
    }
}

/// HPE's ErrorMessage entity, as `taskErrors` lists them and error responses carry them.
fn error_entry(code: &str, message: &str, action: &str) -> Value {
    json!({
        "errorCode": code,
        "message": message,
        "details": "",
        "recommendedActions": [action],
        "nestedErrors": [],
        "errorSource": null,
        "data": {},
    })
}

/// Lines kept in a failed or cancelled task's `taskOutput` (the end of the run's log).
pub const OUTPUT_LINES: usize = 200;
/// Bytes kept in a failed or cancelled task's `taskOutput`.
pub const OUTPUT_BYTES: usize = 64 << 10;

/// The end of `log` as `taskOutput`: its last [`OUTPUT_LINES`] lines, at most
/// [`OUTPUT_BYTES`] bytes, the first line saying what was left out.
pub fn output_tail(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut kept: Vec<String> = Vec::new();
    let mut bytes = 0;
    for line in lines.iter().rev() {
        if kept.len() == OUTPUT_LINES || bytes + line.len() > OUTPUT_BYTES {
            break;
        }
        bytes += line.len();
        kept.push((*line).to_string());
    }
    kept.reverse();
    let left_out = lines.len() - kept.len();
    if left_out > 0 {
        kept.insert(
            0,
            format!("[{left_out} earlier lines of the activity log are in the task's log]"),
        );
    }
    kept
}

impl TaskHandle {
    /// Records a step's progress.
    pub fn progress(&self, percent: u8, status: &str) {
        let status = status.to_string();
        let r = self.tasks.update(&self.id, |v| {
            v["percentComplete"] = json!(percent);
            v["computedPercentComplete"] = json!(percent);
            // A cancel requested meanwhile stays visible.
            if v["taskState"] != "Stopping" {
                v["taskStatus"] = json!(status);
            }
            let mut updates = v["progressUpdates"].as_array().cloned().unwrap_or_default();
            updates.push(
                json!({"id": updates.len() + 1, "statusUpdate": status, "timestamp": now_iso()}),
            );
            v["progressUpdates"] = Value::Array(updates);
        });
        if let Err(e) = r {
            tracing::warn!("task {}: progress not recorded: {e}", self.id);
        }
    }

    /// Completes the task; `resource_uri` replaces the associated resource's URI when the
    /// work created the resource.
    pub fn complete(&self, resource_uri: Option<&str>, status: &str) {
        let status = status.to_string();
        let uri = resource_uri.map(str::to_string);
        let r = self.tasks.update(&self.id, |v| {
            v["taskState"] = json!("Completed");
            v["isCancellable"] = json!(false);
            v["stateReason"] = Value::Null;
            v["taskStatus"] = json!(status);
            v["percentComplete"] = json!(100);
            v["computedPercentComplete"] = json!(100);
            if let Some(u) = &uri {
                v["associatedResource"]["resourceUri"] = json!(u);
            }
        });
        if let Err(e) = r {
            tracing::error!("task {}: completion not recorded: {e}", self.id);
        }
        self.tasks.ended(&self.id);
    }

    /// Fails the task with `error`.
    pub fn fail(&self, error: &dyn TaskError) {
        self.end("Error", None, error, Vec::new());
    }

    /// Fails the task with `error`, keeping `output` (see [`output_tail`]) as `taskOutput`.
    pub fn fail_with_output(&self, error: &dyn TaskError, output: Vec<String>) {
        self.end("Error", None, error, output);
    }

    /// Ends a cancelled task (`Terminated`, cancelled by `by`).
    pub fn terminate(&self, by: &str, error: &dyn TaskError, output: Vec<String>) {
        self.end(
            "Terminated",
            Some(format!("Cancelled by {by}")),
            error,
            output,
        );
    }

    fn end(&self, state: &str, reason: Option<String>, error: &dyn TaskError, output: Vec<String>) {
        let message = error.message();
        let body = error_entry(error.code(), &message, &error.action());
        let r = self.tasks.update(&self.id, |v| {
            v["taskState"] = json!(state);
            v["isCancellable"] = json!(false);
            v["stateReason"] = json!(reason);
            v["taskStatus"] = json!(message);
            v["taskErrors"] = json!([body]);
            if !output.is_empty() {
                v["taskOutput"] = json!(output);
            }
        });
        if let Err(e) = r {
            tracing::error!("task {}: end not recorded: {e}", self.id);
        }
        self.tasks.ended(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_keeps_the_end_of_the_log_and_says_what_it_left_out() {
        let log: String = (1..=500).map(|i| format!("line {i}\n")).collect();
        let out = output_tail(&log);
        assert_eq!(out.len(), OUTPUT_LINES + 1);
        assert_eq!(
            out[0],
            "[300 earlier lines of the activity log are in the task's log]"
        );
        assert_eq!(out[1], "line 301");
        assert_eq!(out.last().unwrap(), "line 500");
        let wide = format!("{}\nlast\n", "x".repeat(OUTPUT_BYTES));
        assert_eq!(
            output_tail(&wide),
            vec![
                "[1 earlier lines of the activity log are in the task's log]".to_string(),
                "last".to_string()
            ]
        );
        assert!(output_tail("").is_empty());
    }
}
