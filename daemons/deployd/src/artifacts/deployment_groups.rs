//! `/rest/deployment-groups`: read-only. A deployment group stands for the appliances a
//! backup belongs to; this appliance has exactly one, `default`, created on first start with
//! an id that never changes (clients pass its URI as `deploymentGroupURI`). Create, update
//! and delete answer 405, as the HPE SDKs mark them unavailable.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Collection;
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::meta::{Expect, Kind, MetaError, MetaStore, Op};
use crate::state::AppState;
use crate::tasks::now_iso;

pub const DEPLOYMENT_GROUPS: Collection = Collection {
    kind: Kind::DeploymentGroup,
    path: "/rest/deployment-groups",
    category: "deployment-groups",
    noun: "deployment group",
    type_v3: "DeploymentGroup",
    type_v5: "DeploymentGroup",
    list_type: "DeploymentGroupCollection",
};

/// Name of the appliance's one group.
pub const DEFAULT_GROUP: &str = "default";

/// Creates the `default` group unless a group exists; returns its id.
pub fn ensure_default(meta: &dyn MetaStore) -> Result<String, MetaError> {
    if let Some(r) = meta.list(Kind::DeploymentGroup)?.into_iter().next() {
        return Ok(r.id);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    meta.apply(vec![Op::Put {
        kind: Kind::DeploymentGroup,
        id: id.clone(),
        value: json!({
            "name": DEFAULT_GROUP,
            "description": "The deployment group of this appliance",
            "status": "OK",
            "state": null,
            "created": now,
            "modified": now,
        }),
        expect: Expect::Absent,
    }])?;
    Ok(id)
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        // Other methods get the router's 405 with HPE's error body: groups are read-only.
        .route("/rest/deployment-groups", get(list))
        .route("/rest/deployment-groups/{id}", get(read))
}

/// Lists deployment groups.
#[utoipa::path(get, path = "/rest/deployment-groups", tag = "deployment-groups", params(ListQuery),
    responses((status = 200, description = "DeploymentGroup collection", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .meta
        .list(Kind::DeploymentGroup)?
        .iter()
        .map(|r| DEPLOYMENT_GROUPS.render(r, ctx.version))
        .collect();
    Ok(Json(envelope(
        DEPLOYMENT_GROUPS.path,
        DEPLOYMENT_GROUPS.category,
        DEPLOYMENT_GROUPS.list_type,
        members,
        &q,
    )?))
}

/// One deployment group.
#[utoipa::path(get, path = "/rest/deployment-groups/{id}", tag = "deployment-groups",
    responses((status = 200, description = "DeploymentGroup", body = Object),
              (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        DEPLOYMENT_GROUPS.render(&DEPLOYMENT_GROUPS.get(&st, &id)?, ctx.version),
    ))
}
