//! `/rest/deployment-plans`: a deploy build plan, an optional golden image, and the attribute
//! defaults, visibility and editability the server administrator gets.
//!
//! Create is synchronous (201 with the entity); update answers 202 with a completed task;
//! delete is refused while a server profile uses the plan. Password values are masked in
//! every response. `/osdp` is OneView's projection of the plan; `/usedby` lists the server
//! profiles using it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::crud::{self, Editable, Resource};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::domain::attributes;
use crate::domain::collection::{Collection, DEPLOYMENT_PLANS};
use crate::domain::deployment_plans::{self, DeploymentPlans};
use crate::domain::records;
use crate::domain::references::{UsedBy, users_of};
use crate::meta::Record;
use crate::state::AppState;

/// A deployment plan as returned.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPlanDoc {
    #[serde(rename = "type")]
    pub type_: String,
    pub uri: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub hp_provided: bool,
    pub read_only: bool,
    #[serde(rename = "oeBuildPlanURI")]
    pub oe_build_plan_uri: String,
    #[serde(rename = "goldenImageURI")]
    pub golden_image_uri: Option<String>,
    /// `{id, name, description, value, constraints, type, visible, editable}`; passwords
    /// shown as `****` when set.
    #[schema(value_type = Vec<Object>)]
    pub custom_attributes: Vec<Value>,
    pub e_tag: String,
    pub created: String,
    pub modified: String,
    pub category: String,
}

impl Resource for DeploymentPlans {
    const COLLECTION: &'static Collection = &DEPLOYMENT_PLANS;
    const PLURAL: &'static str = "deployment plans";
    const MEMBER_SCHEMA: Option<&'static str> = Some("DeploymentPlanDoc");

    fn render(_st: &AppState, r: &Record, ctx: &Ctx) -> Value {
        let mut doc = crud::render(&DEPLOYMENT_PLANS, r, ctx.version);
        attributes::mask_passwords(&mut doc["customAttributes"]);
        doc
    }
}

impl Editable for DeploymentPlans {
    const INPUT_SCHEMA: &'static str = "DeploymentPlanInput";
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/deployment-plans",
            get(crud::list::<DeploymentPlans>).post(crud::create::<DeploymentPlans>),
        )
        .route(
            "/rest/deployment-plans/{id}",
            get(crud::read::<DeploymentPlans>)
                .put(crud::update::<DeploymentPlans>)
                .delete(crud::remove::<DeploymentPlans>),
        )
        .route("/rest/deployment-plans/{id}/usedby", get(used_by))
        .route("/rest/deployment-plans/{id}/osdp", get(osdp))
}

/// What uses a deployment plan.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedByBody {
    /// Server profiles whose OS deployment settings name the plan.
    pub used_by: Vec<UsedBy>,
}

/// The server profiles using a deployment plan.
#[utoipa::path(get, path = "/rest/deployment-plans/{id}/usedby", tag = "deployment-plans",
    responses((status = 200, body = UsedByBody), (status = 404, body = ErrorBody)))]
pub async fn used_by(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<UsedByBody>, ApiError> {
    let meta = &*st.services.meta;
    records::get(meta, &DEPLOYMENT_PLANS, &id)?;
    Ok(Json(UsedByBody {
        used_by: users_of(meta, DEPLOYMENT_PLANS.kind, &id)?,
    }))
}

/// The plan as OneView's OS deployment plan (`type: Osdp`): its visible attributes as
/// `additionalParameters`, passwords masked.
#[utoipa::path(get, path = "/rest/deployment-plans/{id}/osdp", tag = "deployment-plans",
    responses((status = 200, description = "Osdp", body = Object), (status = 404, body = ErrorBody)))]
pub async fn osdp(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = records::get(&*st.services.meta, &DEPLOYMENT_PLANS, &id)?;
    let plan = DeploymentPlans::render(&st, &r, &ctx);
    Ok(Json(deployment_plans::osdp(&plan, &id)))
}
