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
//! with the reason (for a plan script: its name, line and command). A cancel before 5 does
//! the same and ends the task `Terminated`; from 5 on the deploy is done and a cancel comes
//! too late. Either way the run's activity log stays with the task ([`keep_run_log`]).

use std::sync::Arc;

use appliance_layout::ISCSI_PORT;
use serde_json::json;
use storaged::export::{ChapSecret, IscsiAccess};
use storaged::iscsi::TARGET_PREFIX;

use crate::domain::collection::{OS_VOLUMES, SERVER_PROFILES};
use crate::domain::error::DomainError;
use crate::domain::os_volumes::{self, NewOsVolume};
use crate::domain::ready::{Base, ReadyDeployment};
use crate::domain::server_hardware::{BootProtocol, ComputeModule, set_power};
use crate::domain::server_profiles;
use crate::domain::tasks::{keep_run_log, log_location};
use crate::services::Services;
use crate::services::plan_runs::RunReport;
use crate::services::redfish::IscsiBoot;
use crate::services::tasks::{Cancel, TaskHandle};

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
    /// Who asked (slots are shared fairly between owners).
    pub owner: String,
}

/// The plan-script failure as a task error.
pub fn failed_run(report: &RunReport, task_id: &str) -> Option<DomainError> {
    report.result.as_ref().err().map(|f| DomainError::Conflict {
        code: "PLAN_SCRIPT_FAILED",
        message: f.to_string(),
        action: format!(
            "Correct the plan script or the attribute values, then run it again. The run's \
             activity log ends in the task's taskOutput; all of it is at {}.",
            log_location(task_id)
        ),
    })
}

/// The end of a cancelled deploy or capture, as a task error.
pub fn cancelled(what: &str, by: &str, task_id: &str) -> DomainError {
    DomainError::Conflict {
        code: "TASK_CANCELLED",
        message: format!("The {what} was cancelled by {by}; what it had made was removed."),
        action: format!(
            "Start it again when ready. The activity log of its run, if it ran, is at {}.",
            log_location(task_id)
        ),
    }
}

/// Ends `task` for a failed or cancelled deploy or capture, keeping `log`.
pub fn end_failed(
    s: &Services,
    task: &TaskHandle,
    cancel: &Cancel,
    what: &str,
    e: &DomainError,
    log: &str,
) {
    let output = keep_run_log(s, task, log);
    match cancel.by() {
        Some(by) => task.terminate(&by, &cancelled(what, &by, &task.id), output),
        None => task.fail_with_output(e, output),
    }
}

/// `Err` once a cancel was requested.
pub fn check_cancel(cancel: &Cancel, what: &str, task_id: &str) -> Result<(), DomainError> {
    match cancel.by() {
        Some(by) => Err(cancelled(what, &by, task_id)),
        None => Ok(()),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ...
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What a task waiting for a plan-run slot shows.
pub fn waiting_status(place: usize, running: usize) -> String {
    format!(
        "Waiting for a plan-run slot: {} in the queue ({running} plan runs going)",
        ordinal(place)
    )
}

/// Runs the deploy; records the outcome on the task, the profile and the OS volume.
pub async fn run(s: Arc<Services>, job: DeployJob, task: TaskHandle, cancel: Cancel) {
    let storage_name = format!("os-volume-{}", uuid::Uuid::new_v4());
    let made = make_volume(&s, &job, &task, &cancel, &storage_name).await;
    match made {
        Ok(os_id) => finish(&s, &job, &task, &os_id).await,
        Err((os_id, e)) => {
            if let Err(del) = s.storage.unexport_and_delete(&storage_name).await {
                tracing::error!(
                    "deploy of {}: volume {storage_name} not deleted: {del}",
                    job.profile_name
                );
            }
            // The OS volume's log (the run's) goes with its record: keep it with the task.
            let log = match &os_id {
                Some(id) => s.files.read_log(os_volumes::LOG, id).unwrap_or_default(),
                None => String::new(),
            };
            if let Some(id) = os_id {
                os_volumes::delete_record(&s, &id);
            }
            server_profiles::set_state(&s, &job.profile_id, "Error", |_| {});
            end_failed(&s, &task, &cancel, "deploy", &e, &log);
        }
    }
}

/// Steps 1–5; `Err` carries the OS volume record to remove, if it was made.
async fn make_volume(
    s: &Services,
    job: &DeployJob,
    task: &TaskHandle,
    cancel: &Cancel,
    storage_name: &str,
) -> Result<String, (Option<String>, DomainError)> {
    let storage = &s.storage;
    let ready = &job.ready;
    let golden_uri = match &ready.base {
        Base::GoldenImage { uri, .. } => Some(uri.clone()),
        Base::Empty { .. } => None,
    };
    let short = &storage_name["os-volume-".len()..][..8];
    let os_id = os_volumes::create_record(
        s,
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
    let fail = |e: DomainError| (Some(os_id.clone()), e);
    let stop = || check_cancel(cancel, "deploy", &task.id).map_err(fail);
    let permit = s
        .runs
        .slot(&job.owner, cancel, |place, running| {
            task.progress(5, &waiting_status(place, running))
        })
        .await
        .map_err(|e| fail(e.into()))?;
    stop()?;
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
    stop()?;
    task.progress(
        30,
        &format!("Running build plan {:?}", ready.plan.build_plan_name),
    );
    let report = s
        .runs
        .run_on_volume(
            storage,
            storage_name,
            ready.plan.sources.clone(),
            ready.plan.secrets.clone(),
            cancel,
        )
        .await
        .map_err(|e| fail(e.into()))?;
    drop(permit);
    os_volumes::log(
        s,
        &os_id,
        &format!(
            "build plan {:?} ran in {} ms:\n{}",
            ready.plan.build_plan_name,
            report.elapsed.as_millis(),
            report.log.trim_end()
        ),
    );
    for e in &report.cleanup_errors {
        os_volumes::log(s, &os_id, &format!("cleanup after the run: {e}"));
    }
    stop()?;
    if let Some(e) = failed_run(&report, &task.id) {
        return Err(fail(e));
    }
    task.progress(
        80,
        &format!(
            "Exporting the OS volume to compute module {:?} ({})",
            job.module.name, job.module.deployment_ipv4
        ),
    );
    let allow = [job.module.deployment_ipv4.as_str()];
    match job.module.boot_protocol {
        BootProtocol::Nbd => {
            storage
                .export_add(storage_name, &allow)
                .await
                .map_err(|e| fail(e.into()))?;
        }
        BootProtocol::Iscsi => {
            // Only this module's initiator, with a CHAP secret of its own for this volume,
            // given to the module's NIC firmware and to nobody else (never returned).
            let secret = hex::encode(uuid::Uuid::new_v4().as_bytes());
            let access = IscsiAccess {
                initiators: vec![job.module.initiator_name.clone()],
                chap: Some(ChapSecret {
                    user: job.module.initiator_name.clone(),
                    secret: secret.clone(),
                }),
                mutual_chap: None,
            };
            let rec = storage
                .export_add_iscsi(storage_name, &allow, &access)
                .await
                .map_err(|e| fail(e.into()))?;
            task.progress(
                85,
                &format!(
                    "Setting the iSCSI boot of compute module {:?} through Redfish",
                    job.module.name
                ),
            );
            let portal = boot_address(s, ISCSI_PORT);
            let boot = IscsiBoot {
                initiator_name: job.module.initiator_name.clone(),
                initiator_ip: job.module.deployment_ipv4.clone(),
                target_name: format!("{TARGET_PREFIX}{}", rec.volume),
                target_ip: portal.ip().to_string(),
                target_port: portal.port(),
                lun: 0,
                chap_user: job.module.initiator_name.clone(),
                chap_secret: secret,
            };
            let redfish = job.module.redfish.as_ref().ok_or_else(|| {
                fail(DomainError::invalid(
                    "NO_REDFISH_ENDPOINT",
                    "The compute module boots over iSCSI but has no Redfish endpoint to give \
                     its NIC the boot settings: register it with one.",
                ))
            })?;
            redfish
                .set_iscsi_boot(job.module.macs.first().map(String::as_str), &boot)
                .await
                .map_err(|e| {
                    fail(DomainError::Unavailable(format!(
                        "The compute module's iSCSI boot could not be set: {e}"
                    )))
                })?;
        }
    }
    os_volumes::mark_ready(s, &os_id).map_err(fail)?;
    Ok(os_id)
}

/// Where compute modules boot from, on `port`: on a pair this node's storage address, which
/// moves to the other node with the volumes it serves; a single appliance's own deployment
/// address otherwise.
fn boot_address(s: &Services, port: u16) -> std::net::SocketAddr {
    let ip = s
        .cluster
        .status()
        .and_then(|st| st.storage_address)
        .unwrap_or_else(|| s.settings.boot_nbd_addr.ip());
    std::net::SocketAddr::new(ip, port)
}

/// Steps 5 (profile) and 6.
async fn finish(s: &Services, job: &DeployJob, task: &TaskHandle, os_id: &str) {
    let storage_volume = os_volumes::storage_volume_of(s, os_id).unwrap_or_default();
    let os_uri = OS_VOLUMES.uri(os_id);
    let target = match job.module.boot_protocol {
        BootProtocol::Nbd => {
            let nbd = boot_address(s, s.settings.boot_nbd_addr.port());
            json!({
                "protocol": "nbd",
                "address": nbd.ip().to_string(),
                "port": nbd.port(),
                "exportName": storage_volume,
            })
        }
        BootProtocol::Iscsi => {
            // As the module's NIC was given it (the CHAP secret is not shown).
            let portal = boot_address(s, ISCSI_PORT);
            let id = s
                .storage
                .info(&storage_volume)
                .await
                .map(|i| i.record.id)
                .unwrap_or_default();
            json!({
                "protocol": "iscsi",
                "address": portal.ip().to_string(),
                "port": portal.port(),
                "targetName": format!("{TARGET_PREFIX}{id}"),
                "lun": 0,
                "initiatorName": job.module.initiator_name,
                "chapUsername": job.module.initiator_name,
                "exportName": storage_volume,
            })
        }
    };
    server_profiles::set_state(s, &job.profile_id, "Normal", |v| {
        v["osDeploymentSettings"]["osVolumeUri"] = json!(os_uri);
        v["bootTarget"] = target.clone();
    });
    if let Some(prev) = &job.previous {
        task.progress(90, "Releasing the previous OS volume");
        if let Err(e) = os_volumes::release(s, prev, job.keep_previous).await {
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
            task.fail(&DomainError::Unavailable(format!(
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
