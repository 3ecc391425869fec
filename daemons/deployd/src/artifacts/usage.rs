//! Which resources use which: the references that make a delete a 409.

use serde::Serialize;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::meta::Kind;
use crate::state::AppState;

/// A resource that refers to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsedBy {
    pub category: String,
    pub name: String,
    pub uri: String,
}

fn refs_of(kind: Kind, doc: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    match kind {
        Kind::BuildPlan => doc["buildStep"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|st| s(&st["planScriptUri"]))
                    .collect()
            })
            .unwrap_or_default(),
        Kind::DeploymentPlan => [s(&doc["oeBuildPlanURI"]), s(&doc["goldenImageURI"])]
            .into_iter()
            .flatten()
            .collect(),
        Kind::ServerProfile => {
            let o = &doc["osDeploymentSettings"];
            [s(&o["osDeploymentPlanUri"]), s(&o["osVolumeUri"])]
                .into_iter()
                .flatten()
                .collect()
        }
        Kind::GoldenImage => [s(&doc["osVolumeURI"])].into_iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// Every resource whose references include `uri`.
pub fn users_of(st: &AppState, uri: &str) -> Result<Vec<UsedBy>, ApiError> {
    let mut out = Vec::new();
    for kind in [Kind::BuildPlan, Kind::DeploymentPlan, Kind::ServerProfile] {
        for r in st.meta.list(kind)? {
            if refs_of(kind, &r.value).iter().any(|u| u == uri) {
                out.push(UsedBy {
                    category: kind.prefix().to_string(),
                    name: r.value["name"].as_str().unwrap_or(&r.id).to_string(),
                    uri: format!("/rest/{}/{}", kind.prefix(), r.id),
                });
            }
        }
    }
    Ok(out)
}

/// A 409 if anything uses `uri`, naming every user.
pub fn refuse_if_used(st: &AppState, noun: &str, name: &str, uri: &str) -> Result<(), ApiError> {
    let users = users_of(st, uri)?;
    if users.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = users
        .iter()
        .map(|u| format!("{} {:?} ({})", u.category, u.name, u.uri))
        .collect();
    Err(ApiError::conflict(
        "RESOURCE_IN_USE",
        format!("The {noun} {name:?} is in use by {}.", list.join(", ")),
        "Remove the references to it first.",
    ))
}
