//! `/rest/plan-scripts`: guestfish scripts with custom attributes.
//!
//! Create is synchronous (HPE's Go client requires the entity back); update answers 202 with a
//! completed task, as the SDKs expect; delete is refused while a build plan uses the script.
//! `customAttributes` is computed from the content and returned as a JSON-encoded string, as
//! Image Streamer does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::usage::{self, UsedBy};
use super::{Collection, check_if_match, check_name, loose_bool, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::meta::{Kind, Record};
use crate::state::AppState;
use crate::tasks::now_iso;
use planscript::attributes;

pub const PLAN_SCRIPTS: Collection = Collection {
    kind: Kind::PlanScript,
    path: "/rest/plan-scripts",
    category: "plan-scripts",
    noun: "plan script",
    type_v3: "PlanScript",
    type_v5: "PlanScript",
    list_type: "PlanScriptCollection",
};

/// What a plan script is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanType {
    Deploy,
    Capture,
    General,
}

impl<'de> Deserialize<'de> for PlanType {
    /// Any case: bundles write `deploy`, SDK examples `Deploy` or `General`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "deploy" => Ok(Self::Deploy),
            "capture" => Ok(Self::Capture),
            "general" => Ok(Self::General),
            _ => Err(serde::de::Error::custom(format!(
                "planType {s:?} is not deploy, capture or general"
            ))),
        }
    }
}

/// The fields a client sends to create or replace a plan script. Server fields it echoes
/// back (`uri`, `eTag`, `customAttributes`, ...) are ignored.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanScriptInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub plan_type: PlanType,
    #[serde(default)]
    pub content: String,
    /// HPE-provided scripts are read-only.
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub hp_provided: bool,
}

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

/// The `customAttributes` string of a script's content.
pub fn custom_attributes_of(content: &str) -> String {
    let list: Vec<Value> = super::attributes::derived(attributes::declared(content))
        .iter()
        .map(super::attributes::Attribute::document)
        .collect();
    Value::Array(list).to_string()
}

fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = PLAN_SCRIPTS.render(r, ctx.version);
    let content = doc["content"].as_str().unwrap_or_default().to_string();
    doc["customAttributes"] = json!(custom_attributes_of(&content));
    doc
}

/// The stored record of a plan script (bundle extraction writes the same shape).
pub fn document(input: &PlanScriptInput, created: &str, read_only: bool) -> Value {
    json!({
        "name": input.name,
        "description": input.description.clone().unwrap_or_default(),
        "planType": input.plan_type,
        "content": input.content,
        "hpProvided": input.hp_provided,
        "readOnly": read_only || input.hp_provided,
        "status": "OK",
        "state": null,
        "dependentArtifacts": [],
        "created": created,
        "modified": now_iso(),
    })
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/plan-scripts", get(list).post(create))
        .route(
            "/rest/plan-scripts/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/rest/plan-scripts/differences/{id}", post(differences))
        .route(
            "/rest/plan-scripts/{id}/usedby/readonly",
            get(used_by_readonly),
        )
}

/// Lists plan scripts.
#[utoipa::path(get, path = "/rest/plan-scripts", tag = "plan-scripts", params(ListQuery),
    responses((status = 200, description = "PlanScript collection", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .meta
        .list(Kind::PlanScript)?
        .iter()
        .map(|r| render(r, &ctx))
        .collect();
    Ok(Json(envelope(
        PLAN_SCRIPTS.path,
        PLAN_SCRIPTS.category,
        PLAN_SCRIPTS.list_type,
        members,
        &q,
    )?))
}

/// One plan script.
#[utoipa::path(get, path = "/rest/plan-scripts/{id}", tag = "plan-scripts",
    responses((status = 200, body = PlanScriptDoc), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&PLAN_SCRIPTS.get(&st, &id)?, &ctx)))
}

/// Creates a plan script (synchronous: 201 with the entity).
#[utoipa::path(post, path = "/rest/plan-scripts", tag = "plan-scripts",
    request_body = PlanScriptInput,
    responses((status = 201, body = PlanScriptDoc), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: PlanScriptInput = parse_body(&body)?;
    check_name("plan script", &input.name)?;
    PLAN_SCRIPTS.check_name_free(&st, &input.name, None)?;
    PLAN_SCRIPTS.create(&st, document(&input, &now_iso(), false), |r| {
        render(r, &ctx)
    })
}

/// Replaces a plan script; answers 202 with a completed task.
#[utoipa::path(put, path = "/rest/plan-scripts/{id}", tag = "plan-scripts",
    request_body = PlanScriptInput,
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
    let current = PLAN_SCRIPTS.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    let input: PlanScriptInput = parse_body(&body)?;
    check_name("plan script", &input.name)?;
    PLAN_SCRIPTS.check_writable(&current, false)?;
    PLAN_SCRIPTS.check_name_free(&st, &input.name, Some(&id))?;
    let created = current.value["created"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    PLAN_SCRIPTS.replace(&st, ctx.user(), &current, document(&input, &created, false))
}

/// Deletes a plan script; refused (409) while a build plan uses it or it is read-only.
#[utoipa::path(delete, path = "/rest/plan-scripts/{id}", tag = "plan-scripts",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let current = PLAN_SCRIPTS.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    PLAN_SCRIPTS.delete(&st, &current)
}

/// A line of a difference.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiffLine {
    /// `added` (in the given content only) or `removed` (in the stored script only).
    pub change: &'static str,
    /// 1-based line number in the content it comes from.
    pub line: usize,
    pub text: String,
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
    let current = PLAN_SCRIPTS.get(&st, &id)?;
    let given: String = serde_json::from_slice::<String>(&body)
        .or_else(|_| String::from_utf8(body.to_vec()))
        .map_err(|_| {
            ApiError::bad_request(
                "INVALID_CONTENT",
                "The content must be UTF-8 text or a JSON string.",
            )
        })?;
    let stored = current.value["content"].as_str().unwrap_or_default();
    let diffs = line_diff(stored, &given);
    Ok(Json(
        json!({"id": id, "identical": diffs.is_empty(), "differences": diffs}),
    ))
}

/// Longest-common-subsequence line diff (scripts are at most a few thousand lines).
fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(DiffLine {
                change: "added",
                line: j + 1,
                text: b[j].to_string(),
            });
            j += 1;
        } else {
            out.push(DiffLine {
                change: "removed",
                line: i + 1,
                text: a[i].to_string(),
            });
            i += 1;
        }
    }
    out
}

/// Build plans using the plan script, and whether it is read-only.
#[utoipa::path(get, path = "/rest/plan-scripts/{id}/usedby/readonly", tag = "plan-scripts",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn used_by_readonly(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let current = PLAN_SCRIPTS.get(&st, &id)?;
    let used: Vec<UsedBy> = usage::users_of(&st, &PLAN_SCRIPTS.uri(&id))?;
    Ok(Json(
        json!({"readOnly": super::is_read_only(&current), "usedBy": used}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_attributes_string_lists_script_attributes() {
        let s = custom_attributes_of("echo @Host:web01@ @Nic.ipaddress@ @_Initiator1.ip@");
        let v: Vec<Value> = serde_json::from_str(&s).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["name"], "Host");
        assert_eq!(v[0]["value"], "web01");
        assert_eq!(v[1]["type"], "nic");
    }

    #[test]
    fn diff_reports_added_and_removed_lines() {
        let d = line_diff("a\nb\nc", "a\nc\nd");
        let summary: Vec<(&str, usize)> = d.iter().map(|l| (l.change, l.line)).collect();
        assert_eq!(summary, vec![("removed", 2), ("added", 3)]);
    }
}
