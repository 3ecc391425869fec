//! `/rest/deployment-plans`: a deploy build plan, an optional golden image, and the attribute
//! defaults, visibility and editability the server administrator gets.
//!
//! Attributes are the build plan's: sent without `customAttributes` a plan takes the build
//! plan's defaults; sent with them, each entry overrides the build-plan attribute of the
//! same name (value, description, visible, editable, and type/constraints if given) and
//! build-plan attributes not mentioned keep their defaults. Names the build plan does not
//! have are refused. Password values are masked in every response (see
//! [`super::attributes`]). `/osdp` is OneView's projection of the plan; `/usedby` lists the
//! server profiles using it, and delete is refused while there are any.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::attributes::{self, AttributeInput, Problems};
use super::build_plans::{BUILD_PLANS, check_type};
use super::usage::{self, UsedBy};
use super::{Collection, check_if_match, check_name, loose_bool, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::meta::{Kind, Record};
use crate::state::AppState;
use crate::tasks::now_iso;

pub const DEPLOYMENT_PLANS: Collection = Collection {
    kind: Kind::DeploymentPlan,
    path: "/rest/deployment-plans",
    category: "oe-deployment-plans",
    noun: "deployment plan",
    type_v3: "OEDeploymentPlan",
    type_v5: "OEDeploymentPlanV5",
    list_type: "OEDeploymentPlanCollection",
};

/// Where golden images live (the golden-image module owns the collection itself).
const GOLDEN_IMAGES_PATH: &str = "/rest/golden-images/";

/// The fields a client sends to create or replace a deployment plan.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPlanInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `OEDeploymentPlan` or `OEDeploymentPlanV5`; optional.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub hp_provided: bool,
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub read_only: bool,
    /// `/rest/build-plans/{id}` of a deploy build plan.
    #[serde(rename = "oeBuildPlanURI", alias = "oeBuildPlanUri")]
    pub oe_build_plan_uri: String,
    /// `null` or `/rest/golden-images/{id}`.
    #[serde(rename = "goldenImageURI", alias = "goldenImageUri", default)]
    pub golden_image_uri: Option<String>,
    /// Absent or `null`: the build plan's attributes and defaults.
    #[serde(default)]
    pub custom_attributes: Option<Vec<AttributeInput>>,
}

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

fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = DEPLOYMENT_PLANS.render(r, ctx.version);
    attributes::mask_passwords(&mut doc["customAttributes"]);
    doc
}

fn bad_reference(message: String) -> ApiError {
    ApiError::bad_request("INVALID_REFERENCE", message)
}

/// The deploy build plan `uri` names, or 400.
fn build_plan_of(st: &AppState, uri: &str) -> Result<Record, ApiError> {
    let r = match BUILD_PLANS.id_in(uri) {
        Some(id) => st.meta.get(Kind::BuildPlan, id)?,
        None => None,
    }
    .ok_or_else(|| {
        bad_reference(format!(
            "oeBuildPlanURI {uri:?} does not reference an existing build plan."
        ))
    })?;
    if r.value["oeBuildPlanType"] != "deploy" {
        return Err(bad_reference(format!(
            "oeBuildPlanURI {uri:?} is a capture build plan; a deployment plan needs a deploy build plan."
        )));
    }
    Ok(r)
}

/// `None` for no golden image; the URI if it names an existing golden image; else 400.
fn golden_image_of(st: &AppState, uri: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(uri) = uri.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let id = uri
        .strip_prefix(GOLDEN_IMAGES_PATH)
        .filter(|id| !id.is_empty() && !id.contains('/'));
    match id {
        Some(id) if st.meta.get(Kind::GoldenImage, id)?.is_some() => Ok(Some(uri.to_string())),
        _ => Err(bad_reference(format!(
            "goldenImageURI {uri:?} does not reference an existing golden image."
        ))),
    }
}

fn attribute_doc(a: &attributes::Attribute, id: String, visible: bool, editable: bool) -> Value {
    let mut d = a.document();
    d["id"] = json!(id);
    d["visible"] = json!(visible);
    d["editable"] = json!(editable);
    d
}

/// The plan's attributes: the build plan's, overridden by `given` (see the module docs).
/// Ids are kept from `stored` by name, or taken from the input, or generated.
fn merge_attributes(
    build_plan: &Record,
    given: Option<&mut Vec<AttributeInput>>,
    stored: &Value,
) -> Result<Vec<Value>, ApiError> {
    let bp_name = build_plan.value["name"].as_str().unwrap_or(&build_plan.id);
    let defaults: Vec<attributes::Attribute> = build_plan.value["customAttributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(attributes::from_document)
        .collect();
    let stored_id = |name: &str| {
        stored
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"].as_str() == Some(name))
            .and_then(|s| s["id"].as_str().map(str::to_string))
    };
    let new_id = || uuid::Uuid::new_v4().to_string();
    let given: &[AttributeInput] = match given {
        Some(list) => {
            attributes::unmask_passwords(list, stored);
            list.as_slice()
        }
        None => &[],
    };
    let mut problems = Problems::default();
    let mut seen: Vec<&str> = Vec::new();
    for a in given {
        if seen.contains(&a.name.as_str()) {
            problems.add(&a.name, "the name is given twice");
        }
        seen.push(&a.name);
        if !defaults.iter().any(|d| d.name == a.name) {
            problems.add(
                &a.name,
                format!("the build plan {bp_name:?} has no attribute of this name"),
            );
        }
        if let Some(id) = &a.id
            && uuid::Uuid::parse_str(id).is_err()
        {
            problems.add(&a.name, format!("id {id:?} is not a UUID"));
        }
    }
    let mut out = Vec::with_capacity(defaults.len());
    for d in &defaults {
        let Some(a) = given.iter().find(|a| a.name == d.name) else {
            out.push(attribute_doc(
                d,
                stored_id(&d.name).unwrap_or_else(new_id),
                true,
                true,
            ));
            continue;
        };
        match attributes::check_one(a, Some(d)) {
            Ok(attr) => out.push(attribute_doc(
                &attr,
                a.id.clone()
                    .or_else(|| stored_id(&a.name))
                    .unwrap_or_else(new_id),
                a.visible.unwrap_or(true),
                a.editable.unwrap_or(true),
            )),
            Err(e) => problems.add(&a.name, e),
        }
    }
    problems.into_result()?;
    Ok(out)
}

/// Validates `input` and builds the stored document.
fn document(
    st: &AppState,
    mut input: DeploymentPlanInput,
    created: &str,
    stored_attributes: &Value,
) -> Result<Value, ApiError> {
    check_name("deployment plan", &input.name)?;
    check_type(&DEPLOYMENT_PLANS, input.type_.as_deref())?;
    let bp = build_plan_of(st, &input.oe_build_plan_uri)?;
    let golden_image = golden_image_of(st, input.golden_image_uri.as_deref())?;
    let attrs = merge_attributes(&bp, input.custom_attributes.as_mut(), stored_attributes)?;
    Ok(json!({
        "name": input.name,
        "description": input.description.unwrap_or_default(),
        "hpProvided": input.hp_provided,
        "readOnly": input.read_only || input.hp_provided,
        "oeBuildPlanURI": BUILD_PLANS.uri(&bp.id),
        "goldenImageURI": golden_image,
        "customAttributes": attrs,
        "status": "OK",
        "state": null,
        "created": created,
        "modified": now_iso(),
    }))
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/deployment-plans", get(list).post(create))
        .route(
            "/rest/deployment-plans/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/rest/deployment-plans/{id}/usedby", get(used_by))
        .route("/rest/deployment-plans/{id}/osdp", get(osdp))
}

/// Lists deployment plans.
#[utoipa::path(get, path = "/rest/deployment-plans", tag = "deployment-plans", params(ListQuery),
    responses((status = 200, description = "OEDeploymentPlan collection", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .meta
        .list(Kind::DeploymentPlan)?
        .iter()
        .map(|r| render(r, &ctx))
        .collect();
    Ok(Json(envelope(
        DEPLOYMENT_PLANS.path,
        DEPLOYMENT_PLANS.category,
        DEPLOYMENT_PLANS.list_type,
        members,
        &q,
    )?))
}

/// One deployment plan.
#[utoipa::path(get, path = "/rest/deployment-plans/{id}", tag = "deployment-plans",
    responses((status = 200, body = DeploymentPlanDoc), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&DEPLOYMENT_PLANS.get(&st, &id)?, &ctx)))
}

/// Creates a deployment plan (synchronous: 201 with the entity).
#[utoipa::path(post, path = "/rest/deployment-plans", tag = "deployment-plans",
    request_body = DeploymentPlanInput,
    responses((status = 201, body = DeploymentPlanDoc), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: DeploymentPlanInput = parse_body(&body)?;
    DEPLOYMENT_PLANS.check_name_free(&st, &input.name, None)?;
    let value = document(&st, input, &now_iso(), &Value::Null)?;
    DEPLOYMENT_PLANS.create(&st, value, |r| render(r, &ctx))
}

/// Replaces a deployment plan; answers 202 with a completed task. Read-only plans: 409.
#[utoipa::path(put, path = "/rest/deployment-plans/{id}", tag = "deployment-plans",
    request_body = DeploymentPlanInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn update(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let current = DEPLOYMENT_PLANS.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    let input: DeploymentPlanInput = parse_body(&body)?;
    DEPLOYMENT_PLANS.check_writable(&current, false)?;
    DEPLOYMENT_PLANS.check_name_free(&st, &input.name, Some(&id))?;
    let created = current.value["created"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let value = document(&st, input, &created, &current.value["customAttributes"])?;
    DEPLOYMENT_PLANS.replace(&st, ctx.user(), &current, value)
}

/// Deletes a deployment plan; refused (409) while a server profile uses it or it is
/// read-only.
#[utoipa::path(delete, path = "/rest/deployment-plans/{id}", tag = "deployment-plans",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 412, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let current = DEPLOYMENT_PLANS.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    DEPLOYMENT_PLANS.delete(&st, &current)
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
    DEPLOYMENT_PLANS.get(&st, &id)?;
    Ok(Json(UsedByBody {
        used_by: usage::users_of(&st, &DEPLOYMENT_PLANS.uri(&id))?,
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
    let plan = render(&DEPLOYMENT_PLANS.get(&st, &id)?, &ctx);
    let params: Vec<Value> = plan["customAttributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["visible"] != false)
        .map(|a| {
            json!({
                "caId": a["id"],
                "caConstraints": a["constraints"],
                "caEditable": a["editable"],
                "caType": a["type"],
                "description": a["description"],
                "name": a["name"],
                "value": a["value"],
            })
        })
        .collect();
    Ok(Json(json!({
        "type": "Osdp",
        "category": "os-deployment-plans",
        "id": id,
        "uri": format!("{}/osdp", DEPLOYMENT_PLANS.uri(&id)),
        "name": plan["name"],
        "description": plan["description"],
        "nativePlanUri": DEPLOYMENT_PLANS.uri(&id),
        "deploymentType": "i3s",
        "additionalParameters": params,
        "eTag": plan["eTag"],
        "created": plan["created"],
        "modified": plan["modified"],
    })))
}
