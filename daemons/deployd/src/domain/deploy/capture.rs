//! Capture: a new golden image from an OS volume, which is never changed.
//!
//! 1. snapshot the OS volume (O(1); it keeps running on a new layer over the snapshot);
//! 2. clone the snapshot (writable, temporary) and run the capture build plan on the clone;
//! 3. snapshot the clone as the golden image's frozen volume, record the golden image;
//! 4. delete the clone.
//!
//! The first snapshot stays as an ancestor of both the OS volume and the golden image (it is
//! their shared content); it is deleted with the last of them. On failure or cancel the
//! clone and the golden volume are deleted, and the run's activity log stays with the task.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::job::{check_cancel, end_failed, failed_run, waiting_status};
use crate::domain::collection::{BUILD_PLANS, GOLDEN_IMAGES, OS_VOLUMES};
use crate::domain::error::DomainError;
use crate::domain::golden_images::{self, CaptureRequest};
use crate::domain::os_volumes::{self, CAPTURE_SNAPSHOT_PREFIX};
use crate::domain::ready::ready_build_plan;
use crate::domain::records::{self, Change, start_cancellable_task, with_retries};
use crate::services::Services;
use crate::services::clock::now_iso;
use crate::services::tasks::{Cancel, TaskHandle};

/// Prefix of the writable clones a capture runs its build plan on (always temporary).
pub const CAPTURE_CLONE_PREFIX: &str = "capture-clone-";

/// Starts the capture of a checked request; the task ("Add") has the new golden image as its
/// resource.
pub fn start(
    s: &Arc<Services>,
    user: &str,
    req: CaptureRequest,
) -> Result<TaskHandle, DomainError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (task, cancel) = start_cancellable_task(
        s,
        &GOLDEN_IMAGES,
        "Add",
        user,
        &req.name,
        &GOLDEN_IMAGES.uri(&id),
    )?;
    let bg = Arc::clone(s);
    let t = task.clone();
    let owner = user.to_string();
    tokio::spawn(async move { run(bg, req, id, t, cancel, owner).await });
    Ok(task)
}

/// Runs a capture whose references were checked; `id` is the new golden image's id.
pub async fn run(
    s: Arc<Services>,
    req: CaptureRequest,
    id: String,
    task: TaskHandle,
    cancel: Cancel,
    owner: String,
) {
    let storage = &s.storage;
    let snapshot = format!("{CAPTURE_SNAPSHOT_PREFIX}{id}");
    let clone = format!("{CAPTURE_CLONE_PREFIX}{id}");
    let mut log = String::new();
    let r = capture(
        &s, &req, &id, &task, &cancel, &owner, &snapshot, &clone, &mut log,
    )
    .await;
    if let Err(e) = storage.unexport_and_delete(&clone).await {
        tracing::error!("capture {id}: temporary clone {clone} not deleted: {e}");
    }
    match r {
        Ok(()) => task.complete(Some(&GOLDEN_IMAGES.uri(&id)), "Golden image captured"),
        Err(e) => {
            if let Err(e) = storage.unexport_and_delete(&id).await {
                tracing::error!("capture {id}: golden volume not deleted: {e}");
            }
            // The snapshot is the OS volume's parent now: it stays (it is its content).
            s.files.remove_log(golden_images::LOG, &id);
            end_failed(&s, &task, &cancel, "capture", &e, &log);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn capture(
    s: &Services,
    req: &CaptureRequest,
    id: &str,
    task: &TaskHandle,
    cancel: &Cancel,
    owner: &str,
    snapshot: &str,
    clone: &str,
    log: &mut String,
) -> Result<(), DomainError> {
    let storage = &s.storage;
    let source = req.os_volume.value["storageVolume"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (plan, _) = ready_build_plan(
        &*s.meta,
        &BUILD_PLANS.uri(&req.build_plan.id),
        &[],
        &[],
        &BTreeMap::new(),
    )?;
    let permit = s
        .runs
        .slot(owner, cancel, |place, running| {
            task.progress(5, &waiting_status(place, running))
        })
        .await?;
    let stop = || check_cancel(cancel, "capture", &task.id);
    stop()?;
    task.progress(10, "Taking a snapshot of the OS volume");
    storage.snapshot(&source, snapshot).await?;
    os_volumes::log(
        s,
        &req.os_volume.id,
        &format!(
            "snapshot {snapshot} taken for capture of golden image {:?}",
            req.name
        ),
    );
    task.progress(20, "Cloning the snapshot");
    storage.clone_volume(snapshot, clone).await?;
    stop()?;
    task.progress(
        30,
        &format!("Running capture build plan {:?}", plan.build_plan_name),
    );
    let report = s
        .runs
        .run_on_volume(
            storage,
            clone,
            plan.sources.clone(),
            plan.secrets.clone(),
            cancel,
        )
        .await?;
    drop(permit);
    *log = format!(
        "captured from OS volume {:?} with build plan {:?} in {} ms:\n{}",
        req.os_volume.value["name"].as_str().unwrap_or_default(),
        plan.build_plan_name,
        report.elapsed.as_millis(),
        report.log.trim_end()
    );
    golden_images::log(s, id, log);
    stop()?;
    if let Some(e) = failed_run(&report, &task.id) {
        return Err(e);
    }
    task.progress(80, "Freezing the result as the golden image");
    let info = storage.snapshot(clone, id).await?;
    let record = json!({
        "name": req.name,
        "description": req.description,
        "size": info.record.size,
        "checkSum": null,
        "imageCapture": true,
        "readOnly": false,
        "importedFromBundle": false,
        "bundleName": null,
        "bundleURI": null,
        "osVolumeURI": OS_VOLUMES.uri(&req.os_volume.id),
        "buildPlanUri": BUILD_PLANS.uri(&req.build_plan.id),
        "storageVolume": info.record.id,
        "created": now_iso(),
        "modified": now_iso(),
    });
    with_retries(|| {
        records::check_name_free(&*s.meta, &GOLDEN_IMAGES, &req.name, None)?;
        let mut change = Change::new(&*s.meta);
        change.create(GOLDEN_IMAGES.kind, id, record.clone());
        change.commit()?;
        Ok(())
    })
}
