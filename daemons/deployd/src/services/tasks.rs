//! Tasks: asynchronous work as HPE's TaskResourceV2, persisted in the metadata store.
//!
//! A handler that starts long work creates a task, answers `202 Accepted` with
//! `Location: /rest/tasks/<id>` and the task body, and runs the work in the background,
//! recording progress, completion or the failure (as `taskErrors`). The HPE SDKs' task
//! monitors poll the task until `taskState` is terminal, then GET
//! `associatedResource.resourceUri`. Tasks still running when deployd stops are marked
//! `Error` ("interrupted") when it starts again.

use std::sync::Arc;

use serde_json::{Value, json};

use super::clock::now_iso;
use crate::meta::{Expect, Kind, MetaError, MetaStore, Op};

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

/// The task store.
#[derive(Debug, Clone)]
pub struct Tasks {
    meta: Arc<dyn MetaStore>,
}

/// One running task; dropping it without finishing leaves it Running (a restart marks it).
#[derive(Debug, Clone)]
pub struct TaskHandle {
    tasks: Tasks,
    pub id: String,
}

impl Tasks {
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Self { meta }
    }

    /// Creates a Running task named `name` (use `"Delete"` for deletions: the Python SDK
    /// then skips fetching the deleted resource).
    pub fn start(&self, name: &str, owner: &str, on: &Associated) -> Result<TaskHandle, MetaError> {
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
                Some("Running" | "New" | "Starting")
            ) {
                n += 1;
                self.update(&r.id, |v| {
                    v["taskState"] = json!("Error");
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

impl TaskHandle {
    /// Records a step's progress.
    pub fn progress(&self, percent: u8, status: &str) {
        let status = status.to_string();
        let r = self.tasks.update(&self.id, |v| {
            v["percentComplete"] = json!(percent);
            v["computedPercentComplete"] = json!(percent);
            v["taskStatus"] = json!(status);
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
    }

    /// Fails the task with `error`.
    pub fn fail(&self, error: &dyn TaskError) {
        let message = error.message();
        let body = error_entry(error.code(), &message, &error.action());
        let r = self.tasks.update(&self.id, |v| {
            v["taskState"] = json!("Error");
            v["taskStatus"] = json!(message);
            v["taskErrors"] = json!([body]);
        });
        if let Err(e) = r {
            tracing::error!("task {}: failure not recorded: {e}", self.id);
        }
    }
}
