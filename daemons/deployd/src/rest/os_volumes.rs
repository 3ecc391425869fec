//! `/rest/os-volumes`: the volumes deployed for servers, read-only through the API (they are
//! made by deploys); delete is refused while a profile uses one.
//!
//! Type string: `OeVolume`, the Python SDK's default (the Go client's comment says
//! `OSVolume`, unverified; see the reference §1.4). Reads are enriched from storaged (size,
//! allocated bytes, state, export). `/archive/{id or name}` serves the volume's activity log.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::crud;
use crate::api::collection::ListQuery;
use crate::api::download::text_download;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::task::accepted;
use crate::api::transport::Ctx;
use crate::domain::collection::OS_VOLUMES;
use crate::domain::{os_volumes, records};
use crate::meta::Record;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/os-volumes", get(list))
        .route("/rest/os-volumes/{id}", get(read).delete(remove))
        .route("/rest/os-volumes/{id}/storage", get(storage))
        .route("/rest/os-volumes/archive/{id}", get(archive))
}

/// The OS volume as the API shows it, with storaged's view of its content.
async fn render(st: &AppState, r: &Record, ctx: &Ctx) -> Value {
    let mut doc = crud::render(&OS_VOLUMES, r, ctx.version);
    let s = os_volumes::storage_view(&st.services, r).await;
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
    for r in st.services.meta.list(OS_VOLUMES.kind)? {
        members.push(render(&st, &r, &ctx).await);
    }
    crud::collection_of(&OS_VOLUMES, members, &q)
}

/// One OS volume.
#[utoipa::path(get, path = "/rest/os-volumes/{id}", tag = "os-volumes",
    responses((status = 200, description = "OeVolume", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = records::get(&*st.services.meta, &OS_VOLUMES, &id)?;
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
    let r = records::get(&*st.services.meta, &OS_VOLUMES, &id)?;
    Ok(Json(os_volumes::storage_view(&st.services, &r).await))
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
    let r = os_volumes::by_id_or_name(&st.services, &id)?;
    let text = os_volumes::read_log(&st.services, &r.id)?;
    Ok(text_download(text, "archive_log.txt"))
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
    let s = &st.services;
    let r = records::get(&*s.meta, &OS_VOLUMES, &id)?;
    let task = os_volumes::delete(s, ctx.user(), &r).await?;
    Ok(accepted(&s.tasks, &task))
}
