//! OS volumes: the volumes deployed for servers. Deployment creates them ([`create_record`],
//! then [`mark_ready`]); clients only read and delete them. The content is a storaged volume;
//! what storaged reports about it (size, allocation, export, connections) is part of every
//! read. Each keeps a text activity log (the plan runs of its deploy).

use serde_json::{Value, json};

use super::collection::{OS_VOLUMES, SERVER_PROFILES};
use super::error::DomainError;
use super::input::check_name;
use super::records::{self, Change, with_retries};
use crate::meta::{MetaError, Record};
use crate::services::Services;
use crate::services::clock::now_iso;
use crate::services::storage::StorageError;
use crate::services::tasks::TaskHandle;

/// Activity log directory name.
pub const LOG: &str = "os-volumes";

/// Prefix of the frozen volumes a capture takes of an OS volume (ancestors of that volume
/// and of the captured golden image; deleted with the last volume above them).
pub const CAPTURE_SNAPSHOT_PREFIX: &str = "capture-snapshot-";

/// What deployment knows when it has made an OS volume.
#[derive(Debug, Clone)]
pub struct NewOsVolume {
    pub name: String,
    pub description: String,
    /// storaged's id of the volume.
    pub storage_volume: String,
    pub deployment_plan_uri: Option<String>,
    pub golden_image_uri: Option<String>,
    pub server_profile_uri: Option<String>,
    /// The task making it: the record stays `deploying` until [`mark_ready`], and a restart
    /// deletes volumes left in that state.
    pub deploying: Option<String>,
}

/// Records an OS volume made by deployment; returns its id. The first line of its activity
/// log says where it came from.
pub fn create_record(s: &Services, v: &NewOsVolume) -> Result<String, DomainError> {
    check_name("OS volume", &v.name)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    let value = json!({
        "name": v.name,
        "description": v.description,
        "storageVolume": v.storage_volume,
        "deploymentPlanUri": v.deployment_plan_uri,
        "goldenVolumeUri": v.golden_image_uri,
        "statelessServerUri": v.server_profile_uri,
        "deployState": if v.deploying.is_some() { "deploying" } else { "ready" },
        "deployTaskUri": v.deploying.as_ref().map(|t| format!("/rest/tasks/{t}")),
        "status": "OK",
        "created": now,
        "modified": now,
    });
    with_retries(|| {
        records::check_name_free(&*s.meta, &OS_VOLUMES, &v.name, None)?;
        let mut change = Change::new(&*s.meta);
        change.create(OS_VOLUMES.kind, &id, value.clone());
        change.commit()?;
        Ok(())
    })?;
    log(
        s,
        &id,
        &format!(
            "created {:?} on volume {} from deployment plan {} and golden image {}",
            v.name,
            v.storage_volume,
            v.deployment_plan_uri.as_deref().unwrap_or("(none)"),
            v.golden_image_uri.as_deref().unwrap_or("(none)")
        ),
    );
    Ok(id)
}

/// Changes OS volume `id` with `f`, retrying on concurrent updates.
fn update(s: &Services, id: &str, f: impl Fn(&mut Value)) -> Result<(), DomainError> {
    loop {
        let r = records::get(&*s.meta, &OS_VOLUMES, id)?;
        let mut v = r.value.clone();
        f(&mut v);
        v["modified"] = json!(now_iso());
        let mut change = Change::new(&*s.meta);
        change.replace(&r, v)?;
        match change.commit() {
            Ok(_) => return Ok(()),
            Err(records::WriteError::Failed(DomainError::Modified { .. }))
            | Err(records::WriteError::Race(_)) => continue,
            Err(records::WriteError::Failed(e)) => return Err(e),
        }
    }
}

/// Marks a deployed OS volume complete: a restart no longer removes it.
pub fn mark_ready(s: &Services, id: &str) -> Result<(), DomainError> {
    update(s, id, |v| v["deployState"] = json!("ready"))
}

/// storaged's name of the OS volume's content.
pub fn storage_volume_of(s: &Services, id: &str) -> Option<String> {
    s.meta
        .get(OS_VOLUMES.kind, id)
        .ok()
        .flatten()
        .and_then(|r| r.value["storageVolume"].as_str().map(str::to_string))
}

/// Removes an OS volume record and its activity log (its content is the caller's).
pub fn delete_record(s: &Services, id: &str) {
    let r = (|| {
        let Some(current) = s.meta.get(OS_VOLUMES.kind, id)? else {
            return Ok(());
        };
        let mut change = Change::new(&*s.meta);
        change.delete_any(&current)?;
        change.commit().map(drop).map_err(|e| match e {
            records::WriteError::Race(m) => MetaError::Backend(m),
            records::WriteError::Failed(e) => MetaError::Backend(e.to_string()),
        })
    })();
    if let Err(e) = r {
        tracing::error!("OS volume record {id} not deleted: {e}");
    }
    s.files.remove_log(LOG, id);
}

/// Deletes storaged volume `volume` (export first), then the capture snapshots above it
/// that nothing else is layered on.
pub async fn delete_content(s: &Services, volume: &str) -> Result<(), StorageError> {
    let chain = match s.storage.info(volume).await {
        Ok(i) => i.parent_chain,
        Err(StorageError::Refused(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    s.storage.unexport_and_delete(volume).await?;
    for parent in chain {
        match s.storage.info(&parent).await {
            Ok(i)
                if i.record.name.starts_with(CAPTURE_SNAPSHOT_PREFIX) && i.children.is_empty() =>
            {
                s.storage.delete(&parent).await?;
            }
            _ => break,
        }
    }
    Ok(())
}

/// A profile lets go of its OS volume: the export is removed, and the volume either deleted
/// (`keep == false`) or kept, unassigned.
pub async fn release(s: &Services, id: &str, keep: bool) -> Result<(), DomainError> {
    let Some(volume) = storage_volume_of(s, id) else {
        return Ok(());
    };
    if keep {
        match s.storage.export_remove(&volume).await {
            Ok(()) | Err(StorageError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
        update(s, id, |v| v["statelessServerUri"] = Value::Null)?;
        log(s, id, "released by its server profile; kept");
    } else {
        delete_content(s, &volume).await?;
        delete_record(s, id);
    }
    Ok(())
}

/// Deletes OS volume `current`, which no server profile may use and no deploy may be making.
/// Returns the completed "Delete" task.
pub async fn delete(s: &Services, user: &str, current: &Record) -> Result<TaskHandle, DomainError> {
    let id = &current.id;
    let name = current.value["name"].as_str().unwrap_or(id).to_string();
    if current.value["deployState"].as_str() == Some("deploying") {
        return Err(DomainError::conflict(
            "RESOURCE_IN_USE",
            format!("The OS volume {name:?} is being deployed."),
            "Wait for the deployment task to end.",
        ));
    }
    if let Some(profile) = current.value["statelessServerUri"].as_str()
        && records::at_uri(&*s.meta, &SERVER_PROFILES, profile)?.is_some()
    {
        return Err(DomainError::conflict(
            "RESOURCE_IN_USE",
            format!("The OS volume {name:?} is in use by server profile {profile}."),
            "Delete the server profile, or re-deploy it, first.",
        ));
    }
    let volume = current.value["storageVolume"].as_str().unwrap_or_default();
    delete_content(s, volume).await?;
    delete_record(s, id);
    let task = records::start_task(s, &OS_VOLUMES, "Delete", user, &name, &OS_VOLUMES.uri(id))?;
    task.complete(None, "OS volume deleted");
    Ok(task)
}

/// The OS volume `key` names: its id, else its name (the Python SDK sends the name).
pub fn by_id_or_name(s: &Services, key: &str) -> Result<Record, DomainError> {
    match s.meta.get(OS_VOLUMES.kind, key)? {
        Some(r) => Ok(r),
        None => records::by_name(&*s.meta, &OS_VOLUMES, key)?
            .ok_or_else(|| DomainError::not_found(format!("The OS volume {key}"))),
    }
}

/// Appends a line to an OS volume's activity log.
pub fn log(s: &Services, id: &str, line: &str) {
    s.files.log(LOG, id, line);
}

/// The OS volume's activity log, as text.
pub fn read_log(s: &Services, id: &str) -> Result<String, DomainError> {
    Ok(s.files.read_log(LOG, id)?)
}

/// storaged's view of the volume of `r`, or why it is not available.
pub async fn storage_view(s: &Services, r: &Record) -> Value {
    let volume = r.value["storageVolume"].as_str().unwrap_or_default();
    match s.storage.info(volume).await {
        Ok(i) => json!({
            "volumeId": i.record.id,
            "volumeName": i.record.name,
            "state": i.record.state,
            "size": i.record.size,
            "allocatedBytes": i.allocated_bytes,
            "blockSize": i.record.block_size,
            "parentChain": i.parent_chain,
            // (Never the CHAP secret.)
            "export": i.export.map(|e| json!({
                "allow": e.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "readOnly": e.read_only,
                "iscsiInitiators": e.iscsi.as_ref().map(|a| a.initiators.clone()),
                "chap": e.iscsi.as_ref().is_some_and(|a| a.chap.is_some()),
            })),
            "connections": i.connections,
        }),
        Err(StorageError::Refused(m)) => {
            json!({"volumeId": volume, "state": "missing", "error": m})
        }
        Err(e) => json!({"volumeId": volume, "state": "unknown", "error": e.to_string()}),
    }
}
