//! `/rest/build-plans`: OS build plans, ordered plan-script steps plus the custom attributes
//! (type, constraints, default) those scripts use.
//!
//! Create is synchronous (201 with the entity); update answers 202 with a completed task, as
//! HPE's Go client expects; delete is refused while a deployment plan uses the plan.
//! Passwords among the attributes' values are masked.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};

use super::crud::{self, Editable, Resource};
use crate::api::transport::Ctx;
use crate::domain::attributes;
use crate::domain::build_plans::{BuildPlanType, BuildPlans};
use crate::domain::collection::{BUILD_PLANS, Collection};
use crate::meta::Record;
use crate::state::AppState;

/// A build plan as returned.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildPlanDoc {
    #[serde(rename = "type")]
    pub type_: String,
    pub uri: String,
    pub id: String,
    /// The same id, under the key bundles use.
    pub build_plan_id: String,
    pub name: String,
    pub description: String,
    pub oe_build_plan_type: BuildPlanType,
    pub hp_provided: bool,
    pub read_only: bool,
    #[schema(value_type = Vec<Object>)]
    pub build_step: Vec<Value>,
    /// `{name, description, value, constraints, type}`; passwords shown as `****`.
    #[schema(value_type = Vec<Object>)]
    pub custom_attributes: Vec<Value>,
    pub e_tag: String,
    pub created: String,
    pub modified: String,
    pub category: String,
}

impl Resource for BuildPlans {
    const COLLECTION: &'static Collection = &BUILD_PLANS;
    const PLURAL: &'static str = "build plans";
    const MEMBER_SCHEMA: Option<&'static str> = Some("BuildPlanDoc");

    fn render(_st: &AppState, r: &Record, ctx: &Ctx) -> Value {
        let mut doc = crud::render(&BUILD_PLANS, r, ctx.version);
        doc["buildPlanid"] = json!(r.id);
        attributes::mask_passwords(&mut doc["customAttributes"]);
        doc
    }
}

impl Editable for BuildPlans {
    const INPUT_SCHEMA: &'static str = "BuildPlanInput";
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/build-plans",
            get(crud::list::<BuildPlans>).post(crud::create::<BuildPlans>),
        )
        .route(
            "/rest/build-plans/{id}",
            get(crud::read::<BuildPlans>)
                .put(crud::update::<BuildPlans>)
                .delete(crud::remove::<BuildPlans>),
        )
}
