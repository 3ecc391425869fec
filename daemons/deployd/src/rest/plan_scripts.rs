//! `/rest/plan-scripts`: guestfish scripts with custom attributes.
//!
//! Create is synchronous (HPE's Go client requires the entity back); update answers 202 with a
//! completed task, as the SDKs expect; delete is refused while a build plan uses the script.
//! `customAttributes` is computed from the content and returned as a JSON-encoded string, as
//! Image Streamer does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::crud::{self, Editable, Resource};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::domain::collection::{Collection, PLAN_SCRIPTS};
use crate::domain::plan_scripts::{self, PlanScripts, PlanType};
use crate::meta::Record;
use crate::state::AppState;

/// A plan script as returned.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanScriptDoc {
    #[serde(rename = "type")]
    pub type_: String,
    pub uri: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub plan_type: PlanType,
    pub content: String,
    pub hp_provided: bool,
    pub read_only: bool,
    /// JSON-encoded list of `{name, value, type, constraints, description}` derived from
    /// the content's `@Name:default@` tokens.
    pub custom_attributes: String,
    pub e_tag: String,
    pub created: String,
    pub modified: String,
    pub category: String,
}

impl Resource for PlanScripts {
    const COLLECTION: &'static Collection = &PLAN_SCRIPTS;
    const PLURAL: &'static str = "plan scripts";
    const MEMBER_SCHEMA: Option<&'static str> = Some("PlanScriptDoc");

    fn render(_st: &AppState, r: &Record, ctx: &Ctx) -> Value {
        let mut doc = crud::render(&PLAN_SCRIPTS, r, ctx.version);
        let content = doc["content"].as_str().unwrap_or_default().to_string();
        doc["customAttributes"] = json!(plan_scripts::custom_attributes_of(&content));
        doc
    }
}

impl Editable for PlanScripts {
    const INPUT_SCHEMA: &'static str = "PlanScriptInput";
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/plan-scripts",
            get(crud::list::<PlanScripts>).post(crud::create::<PlanScripts>),
        )
        .route(
            "/rest/plan-scripts/{id}",
            get(crud::read::<PlanScripts>)
                .put(crud::update::<PlanScripts>)
                .delete(crud::remove::<PlanScripts>),
        )
        .route("/rest/plan-scripts/lint", post(lint))
        .route("/rest/plan-scripts/differences/{id}", post(differences))
        .route(
            "/rest/plan-scripts/{id}/usedby/readonly",
            get(used_by_readonly),
        )
}

/// Line differences between a plan script and the given content (a JSON string, or raw text).
#[utoipa::path(post, path = "/rest/plan-scripts/differences/{id}", tag = "plan-scripts",
    request_body = String,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn differences(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    crate::domain::records::get(&*st.services.meta, &PLAN_SCRIPTS, &id)?;
    let given: String = serde_json::from_slice::<String>(&body)
        .or_else(|_| String::from_utf8(body.to_vec()))
        .map_err(|_| {
            ApiError::bad_request(
                "INVALID_CONTENT",
                "The content must be UTF-8 text or a JSON string.",
            )
        })?;
    Ok(Json(plan_scripts::differences(
        &*st.services.meta,
        &id,
        &given,
    )?))
}

/// Checks plan-script text without storing it (the web console's editor, `streamerctl
/// plan-script lint --appliance`): the findings of the appliance's own lint, each at its
/// 1-based line (0: the whole text), and the custom attributes the text declares. The body is
/// `{"content": "..."}`, a JSON string, or the raw text.
#[utoipa::path(post, path = "/rest/plan-scripts/lint", tag = "plan-scripts",
    request_body = Object,
    responses((status = 200, description = "findings and customAttributes", body = Object),
              (status = 400, body = ErrorBody)))]
pub async fn lint(_ctx: Ctx, body: Bytes) -> Result<Json<Value>, ApiError> {
    let content = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => match o.get("content") {
            Some(Value::String(c)) => c.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "INVALID_CONTENT",
                    "The body has no \"content\" string: send {\"content\": \"<script text>\"}.",
                ));
            }
        },
        Ok(Value::String(c)) => c,
        _ => String::from_utf8_lossy(&body).into_owned(),
    };
    let findings: Vec<Value> = planscript::lint::lint(&content)
        .into_iter()
        .map(|f| {
            serde_json::json!({"line": f.line, "severity": f.severity.to_string(),
                               "message": f.message})
        })
        .collect();
    let attributes: Value = serde_json::from_str(&plan_scripts::custom_attributes_of(&content))
        .unwrap_or(Value::Array(Vec::new()));
    Ok(Json(serde_json::json!({
        "errors": findings.iter().filter(|f| f["severity"] == "error").count(),
        "findings": findings,
        "customAttributes": attributes,
    })))
}

/// Build plans using the plan script, and whether it is read-only.
#[utoipa::path(get, path = "/rest/plan-scripts/{id}/usedby/readonly", tag = "plan-scripts",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn used_by_readonly(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(plan_scripts::used_by_readonly(
        &*st.services.meta,
        &id,
    )?))
}
