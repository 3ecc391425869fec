//! The pair, read-only: `/rest/appliance/nodes` (each member's role, health, addresses,
//! version, last heartbeat) and `/rest/alerts` (OneView's alert resources: severity,
//! description, correctiveAction, alertState Active/Cleared, associated resource). Both come
//! from clusterd; a single appliance has no members to list and no pair alerts.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::Value;

use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::domain::DomainError;
use crate::services::cluster::ClusterError;
use crate::state::AppState;

fn unavailable(e: ClusterError) -> ApiError {
    DomainError::Unavailable(e.to_string()).into()
}

fn values<T: serde::Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .into_iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// The members of the pair.
#[utoipa::path(get, path = "/rest/appliance/nodes", tag = "appliance", params(ListQuery),
    responses((status = 200, description = "Appliance nodes", body = Object),
              (status = 503, body = ErrorBody)))]
pub async fn list_nodes(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let nodes = st.services.cluster.nodes().await.map_err(unavailable)?;
    let q = ListQuery {
        sort: q.sort.clone().or(Some("name:ascending".into())),
        ..q
    };
    Ok(Json(envelope(
        "/rest/appliance/nodes",
        "appliance-nodes",
        "ApplianceNodeCollection",
        values(nodes),
        &q,
    )?))
}

/// Alerts, active first.
#[utoipa::path(get, path = "/rest/alerts", tag = "alerts", params(ListQuery),
    responses((status = 200, description = "AlertResourceV3 collection", body = Object),
              (status = 503, body = ErrorBody)))]
pub async fn list_alerts(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let alerts = st.services.cluster.alerts().await.map_err(unavailable)?;
    let q = ListQuery {
        sort: q.sort.clone().or(Some("created:descending".into())),
        ..q
    };
    Ok(Json(envelope(
        "/rest/alerts",
        "alerts",
        "AlertResourceCollectionV3",
        values(alerts),
        &q,
    )?))
}

/// One alert.
#[utoipa::path(get, path = "/rest/alerts/{id}", tag = "alerts",
    responses((status = 200, description = "AlertResourceV3", body = Object),
              (status = 404, body = ErrorBody)))]
pub async fn get_alert(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alerts = st.services.cluster.alerts().await.map_err(unavailable)?;
    let alert = alerts
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::not_found(format!("Alert {id}")))?;
    Ok(Json(
        serde_json::to_value(alert).map_err(DomainError::internal)?,
    ))
}
