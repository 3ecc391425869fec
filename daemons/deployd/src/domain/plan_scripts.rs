//! Plan scripts: guestfish scripts with custom attributes. The stored document, the
//! `customAttributes` derived from the content (a JSON-encoded string, as Image Streamer
//! returns it), line differences against other content, and the build plans that use one
//! (a script in use cannot be deleted).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::attributes;
use super::collection::PLAN_SCRIPTS;
use super::definitions::Definition;
use super::error::DomainError;
use super::input::loose_bool;
use super::records::{self, is_read_only};
use super::references::{UsedBy, users_of};
use crate::meta::{MetaStore, Record};
use crate::services::clock::now_iso;

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

/// The `customAttributes` string of a script's content.
pub fn custom_attributes_of(content: &str) -> String {
    let list: Vec<Value> = attributes::derived(planscript::attributes::declared(content))
        .iter()
        .map(attributes::Attribute::document)
        .collect();
    Value::Array(list).to_string()
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

/// Plan scripts as [`Definition`]s (create, replace, delete).
#[derive(Debug)]
pub struct PlanScripts;

impl Definition for PlanScripts {
    const COLLECTION: &'static super::collection::Collection = &PLAN_SCRIPTS;
    type Input = PlanScriptInput;

    fn name(input: &PlanScriptInput) -> &str {
        &input.name
    }

    fn document(
        _meta: &dyn MetaStore,
        input: &PlanScriptInput,
        created: &str,
        _current: Option<&Record>,
    ) -> Result<Value, DomainError> {
        Ok(document(input, created, false))
    }
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

/// Line differences between plan script `id` and `given` content:
/// `{id, identical, differences}`.
pub fn differences(meta: &dyn MetaStore, id: &str, given: &str) -> Result<Value, DomainError> {
    let current = records::get(meta, &PLAN_SCRIPTS, id)?;
    let stored = current.value["content"].as_str().unwrap_or_default();
    let diffs = line_diff(stored, given);
    Ok(json!({"id": id, "identical": diffs.is_empty(), "differences": diffs}))
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

/// Build plans using plan script `id`, and whether it is read-only:
/// `{readOnly, usedBy}`.
pub fn used_by_readonly(meta: &dyn MetaStore, id: &str) -> Result<Value, DomainError> {
    let current = records::get(meta, &PLAN_SCRIPTS, id)?;
    let used: Vec<UsedBy> = users_of(meta, PLAN_SCRIPTS.kind, id)?;
    Ok(json!({"readOnly": is_read_only(&current), "usedBy": used}))
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
