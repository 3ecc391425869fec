//! What a change to a server profile sets off: creating one with a deployment plan deploys
//! its OS volume (see [`super::job`]); changing the plan or a value re-deploys onto a new OS
//! volume, and the old one is deleted or, with `keepOsVolume`, kept; removing the plan or the
//! profile releases the OS volume (its export removed, the volume deleted unless kept).
//! Deleting a profile whose deploy runs cancels the deploy and waits for its cleanup first.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::job::{self, DeployJob};
use crate::domain::collection::SERVER_PROFILES;
use crate::domain::error::DomainError;
use crate::domain::os_volumes;
use crate::domain::records::{
    self, Change, IfMatch, WriteError, start_cancellable_task, start_task, with_retries,
};
use crate::domain::server_profiles::{
    ServerProfileInput, check, document, os_volume_id, pairs, refuse_if_busy, value_text,
};
use crate::meta::{Kind, Record};
use crate::services::Services;
use crate::services::tasks::{Cancel, TaskHandle};

/// How long deleting a profile waits for its cancelled deploy to clean up.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

fn spawn_deploy(s: &Arc<Services>, task: &TaskHandle, cancel: Cancel, job: DeployJob) {
    let bg = Arc::clone(s);
    let t = task.clone();
    tokio::spawn(async move { job::run(bg, job, t, cancel).await });
}

/// The task of a create or update: cancellable when it deploys.
fn profile_task(
    s: &Arc<Services>,
    name: &str,
    user: &str,
    profile: &str,
    id: &str,
    deploys: bool,
) -> Result<(TaskHandle, Cancel), DomainError> {
    let uri = SERVER_PROFILES.uri(id);
    if deploys {
        start_cancellable_task(s, &SERVER_PROFILES, name, user, profile, &uri)
    } else {
        Ok((
            start_task(s, &SERVER_PROFILES, name, user, profile, &uri)?,
            Cancel::default(),
        ))
    }
}

/// Creates a server profile; with a deployment plan, its task ("Create") is the deploy.
pub fn create(
    s: &Arc<Services>,
    user: &str,
    input: ServerProfileInput,
) -> Result<TaskHandle, DomainError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (module, ready) = with_retries(|| {
        let (module, ready) = check(&*s.meta, &input, &Value::Null, None)?;
        let attrs = pairs(
            &input.os_deployment_settings.clone().unwrap_or_default(),
            &Value::Null,
        );
        let mut doc = document(&input, None, &attrs);
        if ready.is_some() {
            doc["state"] = json!("Deploying");
        }
        let mut change = Change::new(&*s.meta);
        // One profile per compute module, also against a concurrent create.
        change.expect_no_referrers(Kind::ServerHardware, &module.id);
        change.create(SERVER_PROFILES.kind, &id, doc);
        change.commit()?;
        Ok((module, ready))
    })?;
    let (task, cancel) = profile_task(s, "Create", user, &input.name, &id, ready.is_some())?;
    match ready {
        None => task.complete(Some(&SERVER_PROFILES.uri(&id)), "Server profile created"),
        Some(ready) => spawn_deploy(
            s,
            &task,
            cancel,
            DeployJob {
                profile_id: id,
                profile_name: input.name,
                module,
                ready,
                power_on: input.power_on_after_deploy,
                previous: None,
                keep_previous: input.keep_os_volume,
                owner: user.to_string(),
            },
        ),
    }
    Ok(task)
}

/// Updates profile `current` (from [`current`]); a changed deployment plan or attribute value
/// re-deploys onto a new OS volume. Returns the task ("Update").
pub async fn update(
    s: &Arc<Services>,
    user: &str,
    current: &Record,
    input: ServerProfileInput,
) -> Result<TaskHandle, DomainError> {
    let id = current.id.clone();
    let stored_attrs = &current.value["osDeploymentSettings"]["osCustomAttributes"];
    let previous = os_volume_id(&current.value);
    let moving =
        current.value["serverHardwareUri"].as_str() != Some(input.server_hardware_uri.as_str());
    if previous.is_some() && moving {
        return Err(DomainError::conflict(
            "PROFILE_DEPLOYED",
            "The server profile's OS volume is exported to its compute module; it cannot move to another.",
            "Delete the profile and create one for the other compute module.",
        ));
    }
    let (module, ready, redeploy, undeploy) = with_retries(|| {
        let (module, ready) = check(&*s.meta, &input, stored_attrs, Some(&id))?;
        let settings = input.os_deployment_settings.clone().unwrap_or_default();
        let attrs = pairs(&settings, stored_attrs);
        let old_plan = current.value["osDeploymentSettings"]["osDeploymentPlanUri"]
            .as_str()
            .filter(|s| !s.is_empty());
        let old_attrs: Vec<(String, String)> = stored_attrs
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| (value_text(&a["name"]), value_text(&a["value"])))
            .collect();
        let changed = old_plan
            != settings
                .os_deployment_plan_uri
                .as_deref()
                .filter(|s| !s.is_empty())
            || old_attrs != attrs
            || current.value["state"].as_str() == Some("Error");
        let mut doc = document(&input, Some(&current.value), &attrs);
        let redeploy = changed && ready.is_some();
        if redeploy {
            doc["state"] = json!("Deploying");
        }
        let undeploy = ready.is_none() && previous.is_some();
        if undeploy {
            doc["osDeploymentSettings"]["osVolumeUri"] = Value::Null;
            doc["bootTarget"] = Value::Null;
        }
        let mut change = Change::new(&*s.meta);
        if moving {
            change.expect_no_referrers(Kind::ServerHardware, &module.id);
        }
        change.replace(current, doc)?;
        change.commit()?;
        Ok((module, ready, redeploy, undeploy))
    })?;
    let (task, cancel) = profile_task(s, "Update", user, &input.name, &id, redeploy)?;
    if redeploy && let Some(ready) = ready {
        spawn_deploy(
            s,
            &task,
            cancel,
            DeployJob {
                profile_id: id,
                profile_name: input.name,
                module,
                ready,
                power_on: input.power_on_after_deploy,
                previous,
                keep_previous: input.keep_os_volume,
                owner: user.to_string(),
            },
        );
        return Ok(task);
    }
    if undeploy
        && let Some(prev) = previous
        && let Err(e) = os_volumes::release(s, &prev, input.keep_os_volume).await
    {
        task.fail(&e);
        return Ok(task);
    }
    task.complete(Some(&SERVER_PROFILES.uri(&id)), "Server profile updated");
    Ok(task)
}

/// The profile a delete acts on: it must exist and match `If-Match`. A deploy running on it
/// is cancelled first (by `user`), and its cleanup awaited; the profile is then taken as the
/// cleanup left it.
pub async fn deletable(
    s: &Services,
    user: &str,
    id: &str,
    if_match: &IfMatch,
) -> Result<Record, DomainError> {
    let r = records::current(&*s.meta, &SERVER_PROFILES, id, if_match)?;
    if refuse_if_busy(&r).is_ok() {
        return Ok(r);
    }
    if let Some(mut done) = s.tasks.cancel_work_on(&SERVER_PROFILES.uri(id), user) {
        let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|ended| *ended)).await;
    }
    let r = records::current(&*s.meta, &SERVER_PROFILES, id, &IfMatch(None))?;
    refuse_if_busy(&r)?;
    Ok(r)
}

/// Deletes profile `current` (from [`deletable`]): its OS volume's export is removed and,
/// unless `keepOsVolume`, the volume. Returns the completed task ("Delete").
pub async fn delete(s: &Services, user: &str, current: &Record) -> Result<TaskHandle, DomainError> {
    let id = &current.id;
    let name = current.value["name"].as_str().unwrap_or(id).to_string();
    let keep = current.value["keepOsVolume"].as_bool().unwrap_or(false);
    if let Some(os) = os_volume_id(&current.value) {
        os_volumes::release(s, &os, keep).await?;
    }
    let mut change = Change::new(&*s.meta);
    change.delete_any(current)?;
    change.commit().map_err(|e| match e {
        WriteError::Failed(e) => e,
        WriteError::Race(m) => DomainError::Internal(m),
    })?;
    let task = start_task(
        s,
        &SERVER_PROFILES,
        "Delete",
        user,
        &name,
        &SERVER_PROFILES.uri(id),
    )?;
    task.complete(None, "Server profile deleted");
    Ok(task)
}
