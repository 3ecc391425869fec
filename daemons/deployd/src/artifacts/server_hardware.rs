//! `/rest/server-hardware`: the compute modules OS volumes are deployed for.
//!
//! A module is registered with its MAC addresses, the address it boots from
//! (`deploymentIpv4`: its OS volume is exported to that address only) and its Redfish
//! management endpoint. The endpoint's credentials are stored but never returned; reads show
//! the power state as Redfish reports it, and `PUT .../powerState` sends OneView's power
//! requests as Redfish `ComputerSystem.Reset` actions.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Collection, check_if_match, check_name, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::meta::{Expect, Kind, Op, Record};
use crate::redfish::{RedfishEndpoint, reset_type};
use crate::state::AppState;
use crate::tasks::{Associated, now_iso};

pub const SERVER_HARDWARE: Collection = Collection {
    kind: Kind::ServerHardware,
    path: "/rest/server-hardware",
    category: "server-hardware",
    noun: "server hardware",
    type_v3: "server-hardware-7",
    type_v5: "server-hardware-7",
    list_type: "server-hardware-list-7",
};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/server-hardware", get(list).post(create))
        .route("/rest/server-hardware/{id}", get(read).delete(remove))
        .route("/rest/server-hardware/{id}/powerState", put(power))
}

/// A compute module registration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerHardwareInput {
    pub name: String,
    #[serde(default)]
    pub mac_addresses: Vec<String>,
    /// The address the module boots from; its OS volume is exported to this address only.
    #[schema(value_type = String)]
    pub deployment_ipv4: Ipv4Addr,
    pub redfish: RedfishEndpoint,
}

/// What deployment needs to know about a module.
#[derive(Debug, Clone)]
pub struct ComputeModule {
    pub id: String,
    pub uri: String,
    pub name: String,
    pub macs: Vec<String>,
    pub deployment_ipv4: String,
    pub redfish: Option<RedfishEndpoint>,
}

impl ComputeModule {
    pub fn of(r: &Record) -> Self {
        let v = &r.value;
        Self {
            id: r.id.clone(),
            uri: SERVER_HARDWARE.uri(&r.id),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            macs: v["macAddresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect(),
            deployment_ipv4: v["deploymentIpv4"].as_str().unwrap_or_default().to_string(),
            redfish: serde_json::from_value(v["redfish"].clone()).ok(),
        }
    }
}

/// The module at `uri`, if it is one of ours.
pub fn module_at(st: &AppState, uri: &str) -> Result<Option<ComputeModule>, ApiError> {
    Ok(SERVER_HARDWARE
        .id_in(uri)
        .map(|id| st.meta.get(Kind::ServerHardware, id))
        .transpose()?
        .flatten()
        .map(|r| ComputeModule::of(&r)))
}

fn check_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split([':', '-']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The module as the API shows it: credentials removed, power state from Redfish.
async fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = SERVER_HARDWARE.render(r, ctx.version);
    let endpoint: Option<RedfishEndpoint> = serde_json::from_value(r.value["redfish"].clone()).ok();
    doc["redfish"] = json!({
        "address": r.value["redfish"]["address"],
        "insecure": r.value["redfish"]["insecure"],
    });
    doc["powerState"] = match endpoint {
        Some(e) => match e.power_state().await {
            Ok(s) => json!(s),
            Err(err) => {
                doc["powerStateError"] = json!(err.to_string());
                json!("Unknown")
            }
        },
        None => json!("Unknown"),
    };
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
    let records = st.meta.list(Kind::ServerHardware)?;
    let members = futures_util::future::join_all(records.iter().map(|r| render(r, &ctx))).await;
    Ok(Json(envelope(
        SERVER_HARDWARE.path,
        SERVER_HARDWARE.category,
        SERVER_HARDWARE.list_type,
        members,
        &q,
    )?))
}

/// One compute module.
#[utoipa::path(get, path = "/rest/server-hardware/{id}", tag = "server-hardware",
    responses((status = 200, description = "server hardware", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = SERVER_HARDWARE.get(&st, &id)?;
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
    check_name("server hardware", &input.name)?;
    SERVER_HARDWARE.check_name_free(&st, &input.name, None)?;
    let bad_macs: Vec<&String> = input
        .mac_addresses
        .iter()
        .filter(|m| !check_mac(m))
        .collect();
    if !bad_macs.is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_MAC_ADDRESS",
            format!("These are not MAC addresses: {bad_macs:?}."),
        ));
    }
    if input.redfish.address.trim().is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_REDFISH_ADDRESS",
            "redfish.address must be host:port of the module's management processor.",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    st.meta.apply(vec![Op::Put {
        kind: Kind::ServerHardware,
        id: id.clone(),
        value: json!({
            "name": input.name,
            "macAddresses": input.mac_addresses,
            "deploymentIpv4": input.deployment_ipv4.to_string(),
            "redfish": input.redfish,
            "created": now,
            "modified": now,
        }),
        expect: Expect::Absent,
    }])?;
    let r = SERVER_HARDWARE.get(&st, &id)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, SERVER_HARDWARE.uri(&id))],
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
    let r = SERVER_HARDWARE.get(&st, &id)?;
    check_if_match(&headers, &r)?;
    let uri = SERVER_HARDWARE.uri(&id);
    if let Some(p) = st
        .meta
        .list(Kind::ServerProfile)?
        .into_iter()
        .find(|p| p.value["serverHardwareUri"].as_str() == Some(uri.as_str()))
    {
        return Err(ApiError::conflict(
            "RESOURCE_IN_USE",
            format!(
                "The server hardware {:?} is assigned to server profile {:?}.",
                r.value["name"].as_str().unwrap_or(&id),
                p.value["name"].as_str().unwrap_or(&p.id)
            ),
            "Delete the server profile first.",
        ));
    }
    st.meta.apply(vec![Op::Delete {
        kind: Kind::ServerHardware,
        id,
        expect: Expect::Revision(r.revision),
    }])?;
    Ok(StatusCode::NO_CONTENT)
}

/// A power request in OneView's shape.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerInput {
    /// `On` or `Off`.
    pub power_state: String,
    /// `MomentaryPress`, `PressAndHold`, `ColdBoot` or `Reset`.
    pub power_control: String,
}

/// Sends `ComputerSystem.Reset` to `module`'s Redfish endpoint.
pub async fn set_power(
    module: &ComputeModule,
    power_state: &str,
    power_control: &str,
) -> Result<(), ApiError> {
    let Some(reset) = reset_type(power_state, power_control) else {
        return Err(ApiError::bad_request(
            "INVALID_POWER_REQUEST",
            format!(
                "powerState {power_state:?} with powerControl {power_control:?} is not a power \
                 request: use On or Off with MomentaryPress or PressAndHold, or On with Reset or \
                 ColdBoot."
            ),
        ));
    };
    let endpoint = module.redfish.as_ref().ok_or_else(|| {
        ApiError::Internal(format!(
            "compute module {:?} has no Redfish endpoint",
            module.name
        ))
    })?;
    endpoint
        .reset(reset)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
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
    let r = SERVER_HARDWARE.get(&st, &id)?;
    let input: PowerInput = parse_body(&body)?;
    let module = ComputeModule::of(&r);
    if reset_type(&input.power_state, &input.power_control).is_none() {
        return set_power(&module, &input.power_state, &input.power_control)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response());
    }
    let task = st.tasks.start(
        "Update power state",
        ctx.user(),
        &Associated {
            category: SERVER_HARDWARE.category.into(),
            name: module.name.clone(),
            uri: module.uri.clone(),
        },
    )?;
    match set_power(&module, &input.power_state, &input.power_control).await {
        Ok(()) => task.complete(None, &format!("Power {}", input.power_state)),
        Err(e) => task.fail(&e),
    }
    Ok(task.accepted())
}
