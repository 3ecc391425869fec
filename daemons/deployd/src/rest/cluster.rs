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

/// The OS volumes' storage on this node: on a pair, which groups of volumes it serves and
/// at which epoch, whether the other node's copies are current (`redundant`), the resync's
/// progress, degraded volumes, a split brain; a single appliance's is not replicated.
#[utoipa::path(get, path = "/rest/appliance/storage", tag = "appliance",
    responses((status = 200, description = "Replication state", body = Object),
              (status = 503, body = ErrorBody)))]
pub async fn storage(State(st): State<Arc<AppState>>, _ctx: Ctx) -> Result<Json<Value>, ApiError> {
    let status = st
        .services
        .storage
        .pair_status()
        .await
        .map_err(|e| ApiError::from(DomainError::Unavailable(e.to_string())))?;
    let capacity = data_capacity(&st.config.state_dir);
    let Some(s) = status else {
        return Ok(Json(serde_json::json!({
            "type": "ApplianceStorage",
            "uri": "/rest/appliance/storage",
            "replicated": false,
            "redundant": false,
            "capacity": capacity,
        })));
    };
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    v["type"] = "ApplianceStorage".into();
    v["uri"] = "/rest/appliance/storage".into();
    v["replicated"] = true.into();
    v["redundant"] = (!s.peer_outdated && s.degraded.is_empty() && s.split_brain.is_empty()).into();
    v["capacity"] = capacity;
    Ok(Json(v))
}

/// The size and free space of the filesystem holding deployd's state: on the appliance, the
/// data partition, which holds storaged's volumes too. `null` if it cannot be read.
fn data_capacity(dir: &std::path::Path) -> Value {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(v) => {
            let (frag, blocks) = (v.fragment_size(), v.blocks());
            let total = blocks.saturating_mul(frag);
            let free = v.blocks_available().saturating_mul(frag);
            serde_json::json!({
                "totalBytes": total,
                "freeBytes": free,
                "usedBytes": total.saturating_sub(v.blocks_free().saturating_mul(frag)),
            })
        }
        Err(_) => Value::Null,
    }
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
