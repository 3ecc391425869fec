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
        .route("/rest/os-volumes/{id}", get(read))
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
