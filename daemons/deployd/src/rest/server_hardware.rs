//! `/rest/server-hardware`: the compute modules OS volumes are deployed for.
//!
//! A module is registered with its MAC addresses, the address it boots from
//! (`deploymentIpv4`: its OS volume is exported to that address only) and its Redfish
//! management endpoint. The endpoint's credentials are stored but never returned; reads show
//! the power state as Redfish reports it, and `PUT .../powerState` sends OneView's power
//! requests as Redfish `ComputerSystem.Reset` actions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::Value;

use super::crud;
use crate::api::body::{if_match, parse_body};
use crate::api::collection::ListQuery;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::task::accepted;
use crate::api::transport::Ctx;
use crate::domain::collection::SERVER_HARDWARE;
use crate::domain::records;
use crate::domain::server_hardware::{self, PowerInput, ServerHardwareInput};
use crate::meta::Record;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/server-hardware", get(list).post(create))
        .route("/rest/server-hardware/{id}", get(read).delete(remove))
        .route("/rest/server-hardware/{id}/powerState", put(power))
}

/// The module as the API shows it: credentials removed, power state from Redfish.
async fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = crud::render(&SERVER_HARDWARE, r, ctx.version);
    server_hardware::show(&mut doc, r).await;
    doc
}

/// Lists compute modules.
#[utoipa::path(get, path = "/rest/server-hardware", tag = "server-hardware", params(ListQuery),
    responses((status = 200, description = "server hardware collection", body = Object)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let records = st.services.meta.list(SERVER_HARDWARE.kind)?;
    let members = futures_util::future::join_all(records.iter().map(|r| render(r, &ctx))).await;
    crud::collection_of(&SERVER_HARDWARE, members, &q)
}

/// One compute module.
#[utoipa::path(get, path = "/rest/server-hardware/{id}", tag = "server-hardware",
    responses((status = 200, description = "server hardware", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = records::get(&*st.services.meta, &SERVER_HARDWARE, &id)?;
    Ok(Json(render(&r, &ctx).await))
}

/// Registers a compute module; 201 with the module (credentials never returned).
#[utoipa::path(post, path = "/rest/server-hardware", tag = "server-hardware",
    request_body = ServerHardwareInput,
    responses((status = 201, description = "server hardware", body = Object),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: ServerHardwareInput = parse_body(&body)?;
    let r = server_hardware::create(&st.services, &input)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, SERVER_HARDWARE.uri(&r.id))],
        Json(render(&r, &ctx).await),
    )
        .into_response())
}

/// Removes a compute module; 409 while a server profile is assigned to it.
#[utoipa::path(delete, path = "/rest/server-hardware/{id}", tag = "server-hardware",
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let r = records::current(
        &*st.services.meta,
        &SERVER_HARDWARE,
        &id,
        &if_match(&headers),
    )?;
    server_hardware::delete(&st.services, &r)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Powers a module on or off through Redfish; 202 with the finished task.
#[utoipa::path(put, path = "/rest/server-hardware/{id}/powerState", tag = "server-hardware",
    request_body = PowerInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn power(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let r = records::get(&*s.meta, &SERVER_HARDWARE, &id)?;
    let input: PowerInput = parse_body(&body)?;
    let task = server_hardware::power(s, ctx.user(), &r, &input).await?;
    Ok(accepted(&s.tasks, &task))
}
