//! Capture: a new golden image from an OS volume, which is never changed.
//!
//! 1. snapshot the OS volume (O(1); it keeps running on a new layer over the snapshot);
//! 2. clone the snapshot (writable, temporary) and run the capture build plan on the clone;
//! 3. snapshot the clone as the golden image's frozen volume, record the golden image;
//! 4. delete the clone.
//!
//! The first snapshot stays as an ancestor of both the OS volume and the golden image (it is
//! their shared content); it is deleted with the last of them. On failure the clone, the
//! golden volume and an unneeded snapshot are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::job::{failed_run, run_plan_on_volume};
use super::plan::ready_build_plan;
use super::{CAPTURE_CLONE_PREFIX, CAPTURE_SNAPSHOT_PREFIX};
use crate::api::error::ApiError;
use crate::artifacts::build_plans::BUILD_PLANS;
use crate::artifacts::golden_images::{self, CaptureRequest, GOLDEN_IMAGES};
use crate::artifacts::os_volumes::log_os_volume;
use crate::meta::{Expect, Kind, Op};
use crate::state::AppState;
use crate::storage::Storage;
use crate::tasks::{TaskHandle, now_iso};

/// Runs a capture whose references were checked; `id` is the new golden image's id.
pub async fn run(st: Arc<AppState>, req: CaptureRequest, id: String, task: TaskHandle) {
    let storage = Storage::new(&st.config.storaged_socket);
    let snapshot = format!("{CAPTURE_SNAPSHOT_PREFIX}{id}");
    let clone = format!("{CAPTURE_CLONE_PREFIX}{id}");
    let r = capture(&st, &req, &id, &task, &snapshot, &clone).await;
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
            task.fail(&e);
        }
    }
}

async fn capture(
    st: &Arc<AppState>,
    req: &CaptureRequest,
    id: &str,
    task: &TaskHandle,
    snapshot: &str,
    clone: &str,
) -> Result<(), ApiError> {
    let storage = Storage::new(&st.config.storaged_socket);
    let source = req.os_volume.value["storageVolume"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (plan, _) = ready_build_plan(
        st,
        &BUILD_PLANS.uri(&req.build_plan.id),
        &[],
        &[],
        &BTreeMap::new(),
    )?;
    if st.deployer.runs.available_permits() == 0 {
        task.progress(5, "Waiting for a free plan-run slot");
    }
    let permit = Arc::clone(&st.deployer.runs)
        .acquire_owned()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    task.progress(10, "Taking a snapshot of the OS volume");
    storage.snapshot(&source, snapshot).await?;
    log_os_volume(
        st,
        &req.os_volume.id,
        &format!(
            "snapshot {snapshot} taken for capture of golden image {:?}",
            req.name
        ),
    );
    task.progress(20, "Cloning the snapshot");
    storage.clone_volume(snapshot, clone).await?;
    task.progress(
        30,
        &format!("Running capture build plan {:?}", plan.build_plan_name),
    );
    let report = run_plan_on_volume(st, clone, plan.sources.clone(), plan.secrets.clone()).await?;
    drop(permit);
    golden_images::log(
        st,
        id,
        &format!(
            "captured from OS volume {:?} with build plan {:?} in {} ms:\n{}",
            req.os_volume.value["name"].as_str().unwrap_or_default(),
            plan.build_plan_name,
            report.elapsed.as_millis(),
            report.log.trim_end()
        ),
    );
    if let Some(e) = failed_run(&report) {
        crate::files::remove_log(st, "golden-images", id);
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
        "osVolumeURI": crate::artifacts::os_volumes::OS_VOLUMES.uri(&req.os_volume.id),
        "buildPlanUri": BUILD_PLANS.uri(&req.build_plan.id),
        "storageVolume": info.record.id,
        "created": now_iso(),
        "modified": now_iso(),
    });
    GOLDEN_IMAGES.check_name_free(st, &req.name, None)?;
    st.meta.apply(vec![Op::Put {
        kind: Kind::GoldenImage,
        id: id.to_string(),
        value: record,
        expect: Expect::Absent,
    }])?;
    Ok(())
}
