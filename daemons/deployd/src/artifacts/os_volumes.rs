//! `/rest/os-volumes`: the volumes deployed for servers, read-only through the API.
//!
//! Type string: `OeVolume`, the Python SDK's default (the Go client's comment says
//! `OSVolume`, unverified; see the reference §1.4). Records are created by deployment through
//! [`create_os_volume_record`]; reads are enriched from storaged (size, allocated bytes,
//! state, export). `/archive/{id or name}` serves the volume's activity log as text.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::Collection;
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::files;
use crate::meta::{Expect, Kind, Op, Record};
use crate::state::AppState;
use crate::storage::{Storage, StorageError};
use crate::tasks::now_iso;

pub const OS_VOLUMES: Collection = Collection {
    kind: Kind::OsVolume,
    path: "/rest/os-volumes",
    category: "os-volumes",
    noun: "OS volume",
    type_v3: "OeVolume",
    type_v5: "OeVolume",
    list_type: "OeVolumeCollection",
};

const LOG: &str = "os-volumes";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/os-volumes", get(list))
        .route("/rest/os-volumes/{id}", get(read).delete(remove))
        .route("/rest/os-volumes/{id}/storage", get(storage))
        .route("/rest/os-volumes/archive/{id}", get(archive))
}

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
pub fn create_os_volume_record(st: &AppState, v: &NewOsVolume) -> Result<String, ApiError> {
    super::check_name("OS volume", &v.name)?;
    OS_VOLUMES.check_name_free(st, &v.name, None)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    st.meta.apply(vec![Op::Put {
        kind: Kind::OsVolume,
        id: id.clone(),
        value: json!({
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
        }),
        expect: Expect::Absent,
    }])?;
    log_os_volume(
        st,
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

fn update(st: &AppState, id: &str, f: impl Fn(&mut Value)) -> Result<(), ApiError> {
    loop {
        let r = OS_VOLUMES.get(st, id)?;
        let mut v = r.value;
        f(&mut v);
        v["modified"] = json!(now_iso());
        match st.meta.apply(vec![Op::Put {
            kind: Kind::OsVolume,
            id: id.to_string(),
            value: v,
            expect: Expect::Revision(r.revision),
        }]) {
            Ok(_) => return Ok(()),
            Err(crate::meta::MetaError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Marks a deployed OS volume complete: a restart no longer removes it.
pub fn mark_ready(st: &AppState, id: &str) -> Result<(), ApiError> {
    update(st, id, |v| v["deployState"] = json!("ready"))
}

/// storaged's name of the OS volume's content.
pub fn storage_volume_of(st: &AppState, id: &str) -> Option<String> {
    st.meta
        .get(Kind::OsVolume, id)
        .ok()
        .flatten()
        .and_then(|r| r.value["storageVolume"].as_str().map(str::to_string))
}

/// Removes an OS volume record and its activity log (its content is the caller's).
pub fn delete_os_volume_record(st: &AppState, id: &str) {
    let r = st.meta.apply(vec![Op::Delete {
        kind: Kind::OsVolume,
        id: id.to_string(),
        expect: Expect::Any,
    }]);
    if let Err(e) = r {
        tracing::error!("OS volume record {id} not deleted: {e}");
    }
    files::remove_log(st, LOG, id);
}

/// Deletes storaged volume `volume` (export first), then the capture snapshots above it
/// that nothing else is layered on.
pub async fn delete_content(st: &AppState, volume: &str) -> Result<(), StorageError> {
    let storage = Storage::new(&st.config.storaged_socket);
    let chain = match storage.info(volume).await {
        Ok(i) => i.parent_chain,
        Err(StorageError::Refused(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    storage.unexport_and_delete(volume).await?;
    for parent in chain {
        match storage.info(&parent).await {
            Ok(i)
                if i.record
                    .name
                    .starts_with(crate::deploy::CAPTURE_SNAPSHOT_PREFIX)
                    && i.children.is_empty() =>
            {
                storage.delete(&parent).await?;
            }
            _ => break,
        }
    }
    Ok(())
}

/// A profile lets go of its OS volume: the export is removed, and the volume either deleted
/// (`keep == false`) or kept, unassigned.
pub async fn release(st: &AppState, id: &str, keep: bool) -> Result<(), ApiError> {
    let Some(volume) = storage_volume_of(st, id) else {
        return Ok(());
    };
    if keep {
        let storage = Storage::new(&st.config.storaged_socket);
        match storage.export_remove(&volume).await {
            Ok(()) | Err(StorageError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
        update(st, id, |v| v["statelessServerUri"] = Value::Null)?;
        log_os_volume(st, id, "released by its server profile; kept");
    } else {
        delete_content(st, &volume).await?;
        delete_os_volume_record(st, id);
    }
    Ok(())
}

/// Appends a line to an OS volume's activity log.
pub fn log_os_volume(st: &AppState, id: &str, line: &str) {
    files::log(st, LOG, id, line);
}

/// storaged's view of the volume, or why it is not available.
async fn storage_view(st: &AppState, r: &Record) -> Value {
    let volume = r.value["storageVolume"].as_str().unwrap_or_default();
    match Storage::new(&st.config.storaged_socket).info(volume).await {
        Ok(i) => json!({
            "volumeId": i.record.id,
            "volumeName": i.record.name,
            "state": i.record.state,
            "size": i.record.size,
            "allocatedBytes": i.allocated_bytes,
            "blockSize": i.record.block_size,
            "parentChain": i.parent_chain,
            "export": i.export.map(|e| json!({
                "allow": e.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "readOnly": e.read_only,
            })),
            "connections": i.connections,
        }),
        Err(StorageError::Refused(m)) => {
            json!({"volumeId": volume, "state": "missing", "error": m})
        }
        Err(e) => json!({"volumeId": volume, "state": "unknown", "error": e.to_string()}),
    }
}

async fn render(st: &AppState, r: &Record, ctx: &Ctx) -> Value {
    let mut doc = OS_VOLUMES.render(r, ctx.version);
    let s = storage_view(st, r).await;
    doc["size"] = s["size"].clone();
    doc["allocatedCapacity"] = s["allocatedBytes"].clone();
    doc["state"] = s["state"].clone();
    doc["oeVolumeId"] = s["volumeId"].clone();
    doc["export"] = s["export"].clone();
    doc["exportState"] = json!(if s["export"].is_null() {
        "NotExported"
    } else {
        "Exported"
    });
    if s.get("error").is_some() {
        doc["status"] = json!("Critical");
    }
    doc
}

/// Lists OS volumes.
#[utoipa::path(get, path = "/rest/os-volumes", tag = "os-volumes", params(ListQuery),
    responses((status = 200, description = "OeVolume collection", body = Object)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut members = Vec::new();
    for r in st.meta.list(Kind::OsVolume)? {
        members.push(render(&st, &r, &ctx).await);
    }
    Ok(Json(envelope(
        OS_VOLUMES.path,
        OS_VOLUMES.category,
        OS_VOLUMES.list_type,
        members,
        &q,
    )?))
}

/// One OS volume.
#[utoipa::path(get, path = "/rest/os-volumes/{id}", tag = "os-volumes",
    responses((status = 200, description = "OeVolume", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = OS_VOLUMES.get(&st, &id)?;
    Ok(Json(render(&st, &r, &ctx).await))
}

/// The storage behind an OS volume, as storaged reports it.
#[utoipa::path(get, path = "/rest/os-volumes/{id}/storage", tag = "os-volumes",
    responses((status = 200, description = "storage details", body = Object), (status = 404, body = ErrorBody)))]
pub async fn storage(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = OS_VOLUMES.get(&st, &id)?;
    Ok(Json(storage_view(&st, &r).await))
}

/// The OS volume's activity log; `{id}` may be its id or its name (the Python SDK sends
/// the name).
#[utoipa::path(get, path = "/rest/os-volumes/archive/{id}", tag = "os-volumes",
    responses((status = 200, description = "text/plain log", content_type = "text/plain", body = String),
              (status = 404, body = ErrorBody)))]
pub async fn archive(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = match st.meta.get(Kind::OsVolume, &id)? {
        Some(r) => r,
        None => OS_VOLUMES
            .by_name(&st, &id)?
            .ok_or_else(|| ApiError::not_found(format!("The OS volume {id}")))?,
    };
    let text = files::read_log(&st, LOG, &r.id)?;
    Ok(files::text_download(text, "archive_log.txt"))
}

/// Deletes an OS volume no server profile uses; 409 while one does or while it is being
/// deployed. 202 with a completed task named "Delete".
#[utoipa::path(delete, path = "/rest/os-volumes/{id}", tag = "os-volumes",
    responses((status = 202, description = "TaskResourceV2 named Delete", body = Object),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = OS_VOLUMES.get(&st, &id)?;
    let name = r.value["name"].as_str().unwrap_or(&id).to_string();
    if r.value["deployState"].as_str() == Some("deploying") {
        return Err(ApiError::conflict(
            "RESOURCE_IN_USE",
            format!("The OS volume {name:?} is being deployed."),
            "Wait for the deployment task to end.",
        ));
    }
    if let Some(profile) = r.value["statelessServerUri"].as_str()
        && super::server_profiles::SERVER_PROFILES
            .id_in(profile)
            .map(|pid| st.meta.get(Kind::ServerProfile, pid))
            .transpose()?
            .flatten()
            .is_some()
    {
        return Err(ApiError::conflict(
            "RESOURCE_IN_USE",
            format!("The OS volume {name:?} is in use by server profile {profile}."),
            "Delete the server profile, or re-deploy it, first.",
        ));
    }
    let volume = r.value["storageVolume"].as_str().unwrap_or_default();
    delete_content(&st, volume).await?;
    delete_os_volume_record(&st, &id);
    let task = st.tasks.start(
        "Delete",
        ctx.user(),
        &crate::tasks::Associated {
            category: OS_VOLUMES.category.into(),
            name,
            uri: OS_VOLUMES.uri(&id),
        },
    )?;
    task.complete(None, "OS volume deleted");
    Ok(task.accepted())
}
