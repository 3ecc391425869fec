//! `/rest/build-plans`: OS build plans, ordered plan-script steps plus the custom attributes
//! (type, constraints, default) those scripts use.
//!
//! Create is synchronous (201 with the entity); update answers 202 with a completed task, as
//! HPE's Go client expects; delete is refused while a deployment plan uses the plan. Every
//! `planScriptUri` must name an existing plan script (400 otherwise, OneView's rule for bad
//! references in a body); `planScriptName` is filled in from the script. A deploy plan sent
//! without `customAttributes` gets them derived from its scripts' `@Name:default@` tokens;
//! capture plans have none.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::attributes::{self, AttributeInput};
use super::plan_scripts::PLAN_SCRIPTS;
use super::{Collection, check_if_match, check_name, loose_bool, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::meta::{Kind, Record};
use crate::state::AppState;
use crate::tasks::now_iso;
use planscript::attributes::declared;

pub const BUILD_PLANS: Collection = Collection {
    kind: Kind::BuildPlan,
    path: "/rest/build-plans",
    category: "oe-build-plans",
    noun: "build plan",
    type_v3: "OeBuildPlan",
    type_v5: "OeBuildPlanV5",
    list_type: "OeBuildPlanCollection",
};

/// What a build plan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildPlanType {
    Deploy,
    Capture,
}

impl<'de> Deserialize<'de> for BuildPlanType {
    /// Any case: bundles write `deploy`, the Ruby and Go examples `Deploy`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "deploy" => Ok(Self::Deploy),
            "capture" => Ok(Self::Capture),
            _ => Err(serde::de::Error::custom(format!(
                "oeBuildPlanType {s:?} is not deploy or capture"
            ))),
        }
    }
}

/// A step's serial number: `"1"` in bundles, `1` from some clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialNumber(pub u32);

impl<'de> Deserialize<'de> for SerialNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let n = match &v {
            Value::String(s) => s.trim().parse::<u32>().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };
        n.map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!("serialNumber {v} is not a whole number"))
        })
    }
}

/// One step as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildStepInput {
    /// Order of the step, `"1"` or `1`; unique in the plan.
    #[schema(value_type = String)]
    pub serial_number: SerialNumber,
    /// `/rest/plan-scripts/{id}` of an existing plan script.
    pub plan_script_uri: String,
    /// `null` or a string passed to the step.
    #[serde(default)]
    pub parameters: Option<String>,
}

/// The fields a client sends to create or replace a build plan. Server fields it echoes back
/// (`uri`, `eTag`, `planScriptName`, ...) are ignored.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildPlanInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `OeBuildPlan` or `OeBuildPlanV5`; optional.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    pub oe_build_plan_type: BuildPlanType,
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub hp_provided: bool,
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub read_only: bool,
    #[serde(default)]
    pub build_step: Option<Vec<BuildStepInput>>,
    /// Absent or `null` on a deploy plan: derived from the scripts.
    #[serde(default)]
    pub custom_attributes: Option<Vec<AttributeInput>>,
}

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

/// Checks a type string against the collection's two forms.
pub fn check_type(c: &Collection, given: Option<&str>) -> Result<(), ApiError> {
    match given {
        None => Ok(()),
        Some(t) if t == c.type_v3 || t == c.type_v5 => Ok(()),
        Some(t) => Err(ApiError::bad_request(
            "INVALID_TYPE",
            format!(
                "type {t:?} is not {} or {} for a {}.",
                c.type_v3, c.type_v5, c.noun
            ),
        )),
    }
}

fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = BUILD_PLANS.render(r, ctx.version);
    doc["buildPlanid"] = json!(r.id);
    attributes::mask_passwords(&mut doc["customAttributes"]);
    doc
}

/// Resolves and orders the steps: every script must exist; serial numbers must be unique.
fn resolve_steps(
    st: &AppState,
    steps: &[BuildStepInput],
) -> Result<(Vec<Value>, Vec<String>), ApiError> {
    let mut problems = Vec::new();
    let mut sorted: Vec<&BuildStepInput> = steps.iter().collect();
    sorted.sort_by_key(|s| s.serial_number.0);
    for pair in sorted.windows(2) {
        if pair[0].serial_number == pair[1].serial_number {
            problems.push(format!(
                "serialNumber {} is used by more than one step",
                pair[0].serial_number.0
            ));
        }
    }
    let mut docs = Vec::with_capacity(sorted.len());
    let mut contents = Vec::with_capacity(sorted.len());
    for step in sorted {
        let uri = &step.plan_script_uri;
        let script = match PLAN_SCRIPTS.id_in(uri) {
            Some(id) => st.meta.get(Kind::PlanScript, id)?,
            None => None,
        };
        let Some(script) = script else {
            problems.push(format!(
                "step {}: planScriptUri {uri:?} does not reference an existing plan script",
                step.serial_number.0
            ));
            continue;
        };
        contents.push(
            script.value["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        docs.push(json!({
            "serialNumber": step.serial_number.0.to_string(),
            "planScriptUri": PLAN_SCRIPTS.uri(&script.id),
            "planScriptName": script.value["name"],
            "parameters": step.parameters,
        }));
    }
    if problems.is_empty() {
        Ok((docs, contents))
    } else {
        Err(ApiError::bad_request(
            "INVALID_BUILD_STEP",
            format!("The build steps are not valid: {}.", problems.join("; ")),
        ))
    }
}

/// Validates `input` and builds the stored document.
fn document(
    st: &AppState,
    mut input: BuildPlanInput,
    created: &str,
    stored_attributes: &Value,
) -> Result<Value, ApiError> {
    check_name("build plan", &input.name)?;
    check_type(&BUILD_PLANS, input.type_.as_deref())?;
    let (steps, contents) = resolve_steps(st, input.build_step.as_deref().unwrap_or_default())?;
    let attrs = match (input.oe_build_plan_type, input.custom_attributes.as_mut()) {
        (BuildPlanType::Capture, Some(list)) if !list.is_empty() => {
            return Err(ApiError::bad_request(
                "INVALID_CUSTOM_ATTRIBUTES",
                "A capture build plan has no custom attributes.",
            ));
        }
        (BuildPlanType::Capture, _) => Vec::new(),
        (BuildPlanType::Deploy, None) => attributes::derived(declared(&contents.join("\n"))),
        (BuildPlanType::Deploy, Some(list)) => {
            attributes::unmask_passwords(list, stored_attributes);
            attributes::check_list(list)?
        }
    };
    Ok(json!({
        "name": input.name,
        "description": input.description.unwrap_or_default(),
        "oeBuildPlanType": input.oe_build_plan_type,
        "hpProvided": input.hp_provided,
        "readOnly": input.read_only || input.hp_provided,
        "buildStep": steps,
        "customAttributes": attrs.iter().map(attributes::Attribute::document).collect::<Vec<_>>(),
        "status": "OK",
        "state": null,
        "dependentArtifacts": [],
        "created": created,
        "modified": now_iso(),
    }))
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/build-plans", get(list).post(create))
        .route(
            "/rest/build-plans/{id}",
            get(read).put(update).delete(remove),
        )
}

/// Lists build plans (filter e.g. `oeBuildPlanType=capture`).
#[utoipa::path(get, path = "/rest/build-plans", tag = "build-plans", params(ListQuery),
    responses((status = 200, description = "OeBuildPlan collection", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .meta
        .list(Kind::BuildPlan)?
        .iter()
        .map(|r| render(r, &ctx))
        .collect();
    Ok(Json(envelope(
        BUILD_PLANS.path,
        BUILD_PLANS.category,
        BUILD_PLANS.list_type,
        members,
        &q,
    )?))
}

/// One build plan.
#[utoipa::path(get, path = "/rest/build-plans/{id}", tag = "build-plans",
    responses((status = 200, body = BuildPlanDoc), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&BUILD_PLANS.get(&st, &id)?, &ctx)))
}

/// Creates a build plan (synchronous: 201 with the entity).
#[utoipa::path(post, path = "/rest/build-plans", tag = "build-plans",
    request_body = BuildPlanInput,
    responses((status = 201, body = BuildPlanDoc), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: BuildPlanInput = parse_body(&body)?;
    BUILD_PLANS.check_name_free(&st, &input.name, None)?;
    let value = document(&st, input, &now_iso(), &Value::Null)?;
    BUILD_PLANS.create(&st, value, |r| render(r, &ctx))
}

/// Replaces a build plan; answers 202 with a completed task. Read-only plans: 409.
#[utoipa::path(put, path = "/rest/build-plans/{id}", tag = "build-plans",
    request_body = BuildPlanInput,
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
    let current = BUILD_PLANS.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    let input: BuildPlanInput = parse_body(&body)?;
    BUILD_PLANS.check_writable(&current, false)?;
    BUILD_PLANS.check_name_free(&st, &input.name, Some(&id))?;
    let created = current.value["created"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let value = document(&st, input, &created, &current.value["customAttributes"])?;
    BUILD_PLANS.replace(&st, ctx.user(), &current, value)
}

/// Deletes a build plan; refused (409) while a deployment plan uses it or it is read-only.
#[utoipa::path(delete, path = "/rest/build-plans/{id}", tag = "build-plans",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 412, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let current = BUILD_PLANS.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    BUILD_PLANS.delete(&st, &current)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn serial_numbers_and_plan_types_accept_both_forms() {
        let s: BuildStepInput =
            serde_json::from_value(json!({"serialNumber": "2", "planScriptUri": "x"})).unwrap();
        assert_eq!(s.serial_number, SerialNumber(2));
        let s: BuildStepInput = serde_json::from_value(
            json!({"serialNumber": 3, "planScriptUri": "x", "parameters": "1"}),
        )
        .unwrap();
        assert_eq!(s.serial_number, SerialNumber(3));
        assert!(
            serde_json::from_value::<BuildStepInput>(
                json!({"serialNumber": "two", "planScriptUri": "x"})
            )
            .is_err()
        );
        let t: BuildPlanType = serde_json::from_value(json!("Capture")).unwrap();
        assert_eq!(t, BuildPlanType::Capture);
        assert!(serde_json::from_value::<BuildPlanType>(json!("general")).is_err());
        assert!(check_type(&BUILD_PLANS, Some("OeBuildPlan")).is_ok());
        assert!(check_type(&BUILD_PLANS, Some("OeBuildPlanV5")).is_ok());
        assert!(check_type(&BUILD_PLANS, Some("PlanScript")).is_err());
    }
}
