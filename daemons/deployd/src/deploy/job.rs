//! One deploy: make an OS volume for a server profile and hand it to its compute module.
//!
//! 1. record the OS volume as `deploying` (so a restart knows to clean it up);
//! 2. wait for a plan-run slot;
//! 3. clone the golden image in storaged (O(1)), or create an empty volume of `VolumeSize`;
//! 4. export it to 127.0.0.1 only, run the build plan on it over NBD, remove that export;
//! 5. export it to the compute module's `deploymentIpv4` only, mark the record ready, set the
//!    profile's `osVolumeUri` and boot target;
//! 6. power the module on if asked; delete (or keep) the OS volume this one replaces.
//!
//! Any failure before 5 deletes the volume, its export and its record, and fails the task
//! with the reason (for a plan script: its name, line and command).

use std::sync::Arc;

use serde_json::json;

use super::plan::{Base, ReadyDeployment};
use super::runner::RunReport;
use crate::api::error::ApiError;
use crate::artifacts::os_volumes::{
    self, NewOsVolume, OS_VOLUMES, create_os_volume_record, log_os_volume,
};
use crate::artifacts::server_hardware::{ComputeModule, set_power};
use crate::artifacts::server_profiles::{self, SERVER_PROFILES};
use crate::state::AppState;
use crate::storage::Storage;
use crate::tasks::TaskHandle;
use plan_engine::exec::Source;

/// Everything a deploy needs, checked before its task started.
#[derive(Debug, Clone)]
pub struct DeployJob {
    pub profile_id: String,
    pub profile_name: String,
    pub module: ComputeModule,
    pub ready: ReadyDeployment,
    pub power_on: bool,
    /// The OS volume record this deploy replaces (a re-deploy).
    pub previous: Option<String>,
    /// Keep `previous` (unexported) instead of deleting it.
    pub keep_previous: bool,
}

/// Runs `sources` on storaged volume `volume`, exported to this host only for the run. The
/// export is removed whatever happens.
pub async fn run_plan_on_volume(
    st: &Arc<AppState>,
    volume: &str,
    sources: Vec<Source>,
    secrets: Vec<String>,
) -> Result<RunReport, ApiError> {
    let storage = Storage::new(&st.config.storaged_socket);
    storage.export_add(volume, &["127.0.0.1"]).await?;
    let runner = Arc::clone(&st.deployer.runner);
    let nbd = st.config.nbd_addr;
    let export = volume.to_string();
    let ran = tokio::task::spawn_blocking(move || runner.run(nbd, &export, &sources, secrets))
        .await
        .map_err(|e| ApiError::Internal(format!("the plan run stopped: {e}")));
    let unexported = storage.export_remove(volume).await;
    let report =
        ran?.map_err(|e| ApiError::Internal(format!("the plan run could not start: {e}")))?;
    unexported?;
    Ok(report)
}

/// The plan-script failure as a task error.
pub fn failed_run(report: &RunReport) -> Option<ApiError> {
    report.result.as_ref().err().map(|f| ApiError::Conflict {
        code: "PLAN_SCRIPT_FAILED",
        message: f.to_string(),
        action: "Correct the plan script or the attribute values, then deploy again; the \
                 activity log of the run is in the task."
            .into(),
    })
}

/// Runs the deploy; records the outcome on the task, the profile and the OS volume.
pub async fn run(st: Arc<AppState>, job: DeployJob, task: TaskHandle) {
    let storage_name = format!("os-volume-{}", uuid::Uuid::new_v4());
    let made = make_volume(&st, &job, &task, &storage_name).await;
    match made {
        Ok(os_id) => finish(&st, &job, &task, &os_id).await,
        Err((os_id, e)) => {
            let storage = Storage::new(&st.config.storaged_socket);
            if let Err(del) = storage.unexport_and_delete(&storage_name).await {
                tracing::error!(
                    "deploy of {}: volume {storage_name} not deleted: {del}",
                    job.profile_name
                );
            }
            if let Some(id) = os_id {
                os_volumes::delete_os_volume_record(&st, &id);
            }
            server_profiles::set_state(&st, &job.profile_id, "Error", |_| {});
            task.fail(&e);
        }
    }
}

/// Steps 1–5; `Err` carries the OS volume record to remove, if it was made.
async fn make_volume(
    st: &Arc<AppState>,
    job: &DeployJob,
    task: &TaskHandle,
    storage_name: &str,
) -> Result<String, (Option<String>, ApiError)> {
    let storage = Storage::new(&st.config.storaged_socket);
    let ready = &job.ready;
    let golden_uri = match &ready.base {
        Base::GoldenImage { uri, .. } => Some(uri.clone()),
        Base::Empty { .. } => None,
    };
    let short = &storage_name["os-volume-".len()..][..8];
    let os_id = create_os_volume_record(
        st,
        &NewOsVolume {
            name: format!("{}-{short}", job.profile_name),
            description: format!("OS volume of server profile {:?}", job.profile_name),
            storage_volume: storage_name.to_string(),
            deployment_plan_uri: Some(ready.deployment_plan_uri.clone()),
            golden_image_uri: golden_uri,
            server_profile_uri: Some(SERVER_PROFILES.uri(&job.profile_id)),
            deploying: Some(task.id.clone()),
        },
    )
    .map_err(|e| (None, e))?;
    let fail = |e: ApiError| (Some(os_id.clone()), e);
    if st.deployer.runs.available_permits() == 0 {
        task.progress(5, "Waiting for a free plan-run slot");
    }
    let permit = Arc::clone(&st.deployer.runs)
        .acquire_owned()
        .await
        .map_err(|e| fail(ApiError::Internal(e.to_string())))?;
    match &ready.base {
        Base::GoldenImage { volume, uri } => {
            task.progress(10, &format!("Cloning golden image {uri}"));
            storage
                .clone_volume(volume, storage_name)
                .await
                .map_err(|e| fail(e.into()))?;
        }
        Base::Empty { bytes } => {
            task.progress(
                10,
                &format!("Creating an empty OS volume of {} MiB", bytes >> 20),
            );
            storage
                .create(storage_name, *bytes)
                .await
                .map_err(|e| fail(e.into()))?;
        }
    }
    task.progress(
        30,
        &format!("Running build plan {:?}", ready.plan.build_plan_name),
    );
    let report = run_plan_on_volume(
        st,
        storage_name,
        ready.plan.sources.clone(),
        ready.plan.secrets.clone(),
    )
    .await
    .map_err(fail)?;
    drop(permit);
    log_os_volume(
        st,
        &os_id,
        &format!(
            "build plan {:?} ran in {} ms:\n{}",
            ready.plan.build_plan_name,
            report.elapsed.as_millis(),
            report.log.trim_end()
        ),
    );
    for e in &report.cleanup_errors {
        log_os_volume(st, &os_id, &format!("cleanup after the run: {e}"));
    }
    if let Some(e) = failed_run(&report) {
        return Err(fail(e));
    }
    task.progress(
        80,
        &format!(
            "Exporting the OS volume to compute module {:?} ({})",
            job.module.name, job.module.deployment_ipv4
        ),
    );
    storage
        .export_add(storage_name, &[job.module.deployment_ipv4.as_str()])
        .await
        .map_err(|e| fail(e.into()))?;
    os_volumes::mark_ready(st, &os_id).map_err(fail)?;
    Ok(os_id)
}

/// Steps 5 (profile) and 6.
async fn finish(st: &Arc<AppState>, job: &DeployJob, task: &TaskHandle, os_id: &str) {
    let nbd = st.config.boot_nbd_addr.unwrap_or(st.config.nbd_addr);
    let storage_volume = os_volumes::storage_volume_of(st, os_id).unwrap_or_default();
    let os_uri = OS_VOLUMES.uri(os_id);
    let target = json!({
        "protocol": "nbd",
        "address": nbd.ip().to_string(),
        "port": nbd.port(),
        "exportName": storage_volume,
    });
    server_profiles::set_state(st, &job.profile_id, "Normal", |v| {
        v["osDeploymentSettings"]["osVolumeUri"] = json!(os_uri);
        v["bootTarget"] = target.clone();
    });
    if let Some(prev) = &job.previous {
        task.progress(90, "Releasing the previous OS volume");
        if let Err(e) = os_volumes::release(st, prev, job.keep_previous).await {
            tracing::error!("re-deploy of {}: previous OS volume: {e}", job.profile_name);
        }
    }
    if job.power_on {
        task.progress(
            95,
            &format!("Powering on compute module {:?}", job.module.name),
        );
        if let Err(e) = set_power(&job.module, "On", "MomentaryPress").await {
            // The OS volume is deployed and kept; only the power-on failed.
            task.fail(&ApiError::Unavailable(format!(
                "The OS volume was deployed, but powering on the compute module failed: {e}"
            )));
            return;
        }
    }
    task.complete(
        Some(&SERVER_PROFILES.uri(&job.profile_id)),
        "Server profile deployed",
    );
}
