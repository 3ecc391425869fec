//! OS build plans: ordered plan-script steps plus the custom attributes (type, constraints,
//! default) those scripts use.
//!
//! Every `planScriptUri` must name an existing plan script (400 otherwise, OneView's rule for
//! bad references in a body); `planScriptName` is filled in from the script. A deploy plan
//! sent without `customAttributes` gets them derived from its scripts' `@Name:default@`
//! tokens; capture plans have none. A build plan in use by a deployment plan cannot be
//! deleted.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::attributes::{self, AttributeInput};
use super::collection::{BUILD_PLANS, Collection, PLAN_SCRIPTS};
use super::definitions::Definition;
use super::error::DomainError;
use super::input::{check_name, loose_bool};
use crate::meta::{MetaStore, Record};
use crate::services::clock::now_iso;
use planscript::attributes::declared;

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

/// Checks a type string against the collection's two forms.
pub fn check_type(c: &Collection, given: Option<&str>) -> Result<(), DomainError> {
    match given {
        None => Ok(()),
        Some(t) if t == c.type_v3 || t == c.type_v5 => Ok(()),
        Some(t) => Err(DomainError::invalid(
            "INVALID_TYPE",
            format!(
                "type {t:?} is not {} or {} for a {}.",
                c.type_v3, c.type_v5, c.noun
            ),
        )),
    }
}

/// Resolves and orders the steps: every script must exist; serial numbers must be unique.
fn resolve_steps(
    meta: &dyn MetaStore,
    steps: &[BuildStepInput],
) -> Result<(Vec<Value>, Vec<String>), DomainError> {
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
            Some(id) => meta.get(PLAN_SCRIPTS.kind, id)?,
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
        Err(DomainError::invalid(
            "INVALID_BUILD_STEP",
            format!("The build steps are not valid: {}.", problems.join("; ")),
        ))
    }
}

/// Validates `input` and builds the stored document.
fn document(
    meta: &dyn MetaStore,
    mut input: BuildPlanInput,
    created: &str,
    stored_attributes: &Value,
) -> Result<Value, DomainError> {
    check_name("build plan", &input.name)?;
    check_type(&BUILD_PLANS, input.type_.as_deref())?;
    let (steps, contents) = resolve_steps(meta, input.build_step.as_deref().unwrap_or_default())?;
    let attrs = match (input.oe_build_plan_type, input.custom_attributes.as_mut()) {
        (BuildPlanType::Capture, Some(list)) if !list.is_empty() => {
            return Err(DomainError::invalid(
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

/// Build plans as [`Definition`]s (create, replace, delete).
#[derive(Debug)]
pub struct BuildPlans;

impl Definition for BuildPlans {
    const COLLECTION: &'static Collection = &BUILD_PLANS;
    type Input = BuildPlanInput;

    fn name(input: &BuildPlanInput) -> &str {
        &input.name
    }

    fn document(
        meta: &dyn MetaStore,
        input: &BuildPlanInput,
        created: &str,
        current: Option<&Record>,
    ) -> Result<Value, DomainError> {
        let stored = current.map_or(&Value::Null, |r| &r.value["customAttributes"]);
        document(meta, input.clone(), created, stored)
    }
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
