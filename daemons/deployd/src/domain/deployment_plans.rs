//! Deployment plans: a deploy build plan, an optional golden image, and the attribute
//! defaults, visibility and editability the server administrator gets.
//!
//! Attributes are the build plan's: sent without `customAttributes` a plan takes the build
//! plan's defaults; sent with them, each entry overrides the build-plan attribute of the
//! same name (value, description, visible, editable, and type/constraints if given) and
//! build-plan attributes not mentioned keep their defaults. Names the build plan does not
//! have are refused. Password values are masked in every response (see
//! [`super::attributes`]). [`osdp`] is OneView's projection of a plan. A plan used by a server
//! profile cannot be deleted.

use serde::Deserialize;
use serde_json::{Value, json};

use super::attributes::{self, AttributeInput, Problems};
use super::build_plans::check_type;
use super::collection::{BUILD_PLANS, Collection, DEPLOYMENT_PLANS, GOLDEN_IMAGES};
use super::definitions::Definition;
use super::error::DomainError;
use super::input::{check_name, loose_bool};
use crate::meta::{MetaStore, Record};
use crate::services::clock::now_iso;

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

fn bad_reference(message: String) -> DomainError {
    DomainError::invalid("INVALID_REFERENCE", message)
}

/// The deploy build plan `uri` names, or 400.
fn build_plan_of(meta: &dyn MetaStore, uri: &str) -> Result<Record, DomainError> {
    let r = match BUILD_PLANS.id_in(uri) {
        Some(id) => meta.get(BUILD_PLANS.kind, id)?,
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
fn golden_image_of(meta: &dyn MetaStore, uri: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(uri) = uri.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    match GOLDEN_IMAGES.id_in(uri) {
        Some(id) if meta.get(GOLDEN_IMAGES.kind, id)?.is_some() => Ok(Some(uri.to_string())),
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
) -> Result<Vec<Value>, DomainError> {
    let bp_name = build_plan.value["name"].as_str().unwrap_or(&build_plan.id);
    let defaults: Vec<attributes::Attribute> = build_plan.value["customAttributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(attributes::Attribute::from_document)
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
    meta: &dyn MetaStore,
    mut input: DeploymentPlanInput,
    created: &str,
    stored_attributes: &Value,
) -> Result<Value, DomainError> {
    check_name("deployment plan", &input.name)?;
    check_type(&DEPLOYMENT_PLANS, input.type_.as_deref())?;
    let bp = build_plan_of(meta, &input.oe_build_plan_uri)?;
    let golden_image = golden_image_of(meta, input.golden_image_uri.as_deref())?;
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

/// Deployment plans as [`Definition`]s (create, replace, delete).
#[derive(Debug)]
pub struct DeploymentPlans;

impl Definition for DeploymentPlans {
    const COLLECTION: &'static Collection = &DEPLOYMENT_PLANS;
    type Input = DeploymentPlanInput;

    fn name(input: &DeploymentPlanInput) -> &str {
        &input.name
    }

    fn document(
        meta: &dyn MetaStore,
        input: &DeploymentPlanInput,
        created: &str,
        current: Option<&Record>,
    ) -> Result<Value, DomainError> {
        let stored = current.map_or(&Value::Null, |r| &r.value["customAttributes"]);
        document(meta, input.clone(), created, stored)
    }
}

/// The plan (as the API shows it, passwords masked) as OneView's OS deployment plan
/// (`type: Osdp`): its visible attributes as `additionalParameters`.
pub fn osdp(plan: &Value, id: &str) -> Value {
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
    json!({
        "type": "Osdp",
        "category": "os-deployment-plans",
        "id": id,
        "uri": format!("{}/osdp", DEPLOYMENT_PLANS.uri(id)),
        "name": plan["name"],
        "description": plan["description"],
        "nativePlanUri": DEPLOYMENT_PLANS.uri(id),
        "deploymentType": "i3s",
        "additionalParameters": params,
        "eTag": plan["eTag"],
        "created": plan["created"],
        "modified": plan["modified"],
    })
}
