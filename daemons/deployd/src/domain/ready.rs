//! A deployment plan made ready to run: its build plan's scripts in `buildStep` order with
//! every attribute substituted, the golden image to clone (or the size of an empty volume),
//! and the secrets to mask. Everything is checked here, before a task starts, and every
//! problem is reported at once.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::collection::{BUILD_PLANS, DEPLOYMENT_PLANS, GOLDEN_IMAGES, PLAN_SCRIPTS};
use crate::domain::error::DomainError;
use crate::domain::records;
use crate::meta::{MetaStore, Record};
use plan_engine::exec::Source;
use planscript::attributes::values::{PlanAttribute, resolve};

/// Largest empty OS volume (`VolumeSize`, MiB), as HPE's Foundation bundle constrains it.
pub const MAX_VOLUME_SIZE_MIB: u64 = 51200;

/// Where an OS volume's first content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// Clone this golden image (record URI, storaged volume).
    GoldenImage { uri: String, volume: String },
    /// An empty volume of this many bytes (`VolumeSize` MiB).
    Empty { bytes: u64 },
}

/// A build plan ready to run.
#[derive(Debug, Clone)]
pub struct ReadyPlan {
    pub build_plan_uri: String,
    pub build_plan_name: String,
    /// Substituted scripts in step order.
    pub sources: Vec<Source>,
    pub secrets: Vec<String>,
}

/// A deployment plan ready to deploy.
#[derive(Debug, Clone)]
pub struct ReadyDeployment {
    pub deployment_plan_uri: String,
    pub plan: ReadyPlan,
    pub base: Base,
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

fn declared(attrs: &Value) -> Vec<PlanAttribute> {
    attrs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(PlanAttribute::from_json)
        .collect()
}

fn bad(problems: Vec<String>) -> DomainError {
    DomainError::invalid(
        "INVALID_CUSTOM_ATTRIBUTES",
        format!("The deployment cannot start: {}.", problems.join("; ")),
    )
}

/// The build plan at `uri` and its plan scripts (name, content) in step order.
fn build_plan_scripts(
    meta: &dyn MetaStore,
    uri: &str,
) -> Result<(Record, Vec<(String, String)>), DomainError> {
    let bp = records::at_uri(meta, &BUILD_PLANS, uri)?
        .ok_or_else(|| bad(vec![format!("the build plan {uri} does not exist")]))?;
    let mut steps: Vec<(u64, String)> = bp.value["buildStep"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let n = match &s["serialNumber"] {
                Value::Number(n) => n.as_u64().unwrap_or(u64::MAX),
                Value::String(t) => t.trim().parse().unwrap_or(u64::MAX),
                _ => u64::MAX,
            };
            (n, text(s, "planScriptUri"))
        })
        .collect();
    steps.sort_by_key(|(n, _)| *n);
    let mut scripts = Vec::new();
    let mut missing = Vec::new();
    for (_, ps_uri) in steps {
        let found = match ps_uri.strip_prefix("/rest/plan-scripts/") {
            Some(id) => meta.get(PLAN_SCRIPTS.kind, id)?,
            None => None,
        };
        match found {
            Some(ps) => scripts.push((text(&ps.value, "name"), text(&ps.value, "content"))),
            None => missing.push(format!("the plan script {ps_uri} does not exist")),
        }
    }
    if !missing.is_empty() {
        return Err(bad(missing));
    }
    Ok((bp, scripts))
}

/// Resolves the build plan at `build_plan_uri` under the given attribute layers.
pub fn ready_build_plan(
    meta: &dyn MetaStore,
    build_plan_uri: &str,
    deployment_plan_attrs: &[PlanAttribute],
    profile: &[(String, String)],
    system: &BTreeMap<String, String>,
) -> Result<(ReadyPlan, BTreeMap<String, String>), DomainError> {
    let (bp, scripts) = build_plan_scripts(meta, build_plan_uri)?;
    let texts: Vec<&str> = scripts.iter().map(|(_, t)| t.as_str()).collect();
    let values = resolve(
        &texts,
        &declared(&bp.value["customAttributes"]),
        deployment_plan_attrs,
        profile,
        system,
    )
    .map_err(bad)?;
    let sources = scripts
        .iter()
        .map(|(name, t)| Source {
            name: name.clone(),
            text: values.substitute(t),
        })
        .collect();
    Ok((
        ReadyPlan {
            build_plan_uri: build_plan_uri.to_string(),
            build_plan_name: text(&bp.value, "name"),
            sources,
            secrets: values.secrets.clone(),
        },
        values.values,
    ))
}

/// Resolves the deployment plan at `uri` for a profile's values and a module's system
/// attributes. 400 naming every problem.
pub fn ready_deployment(
    meta: &dyn MetaStore,
    uri: &str,
    profile: &[(String, String)],
    system: &BTreeMap<String, String>,
) -> Result<ReadyDeployment, DomainError> {
    let dp = records::at_uri(meta, &DEPLOYMENT_PLANS, uri)?.ok_or_else(|| {
        bad(vec![format!(
            "osDeploymentPlanUri {uri:?} is not a deployment plan of this appliance"
        )])
    })?;
    let (plan, values) = ready_build_plan(
        meta,
        &text(&dp.value, "oeBuildPlanURI"),
        &declared(&dp.value["customAttributes"]),
        profile,
        system,
    )?;
    let gi_uri = text(&dp.value, "goldenImageURI");
    let base = if gi_uri.is_empty() {
        let size = values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("VolumeSize"))
            .map(|(_, v)| v.trim().to_string());
        match size.as_deref().map(str::parse::<u64>) {
            Some(Ok(mib)) if (1..=MAX_VOLUME_SIZE_MIB).contains(&mib) => {
                Base::Empty { bytes: mib << 20 }
            }
            Some(_) => {
                return Err(bad(vec![format!(
                    "VolumeSize: {:?} is not a size in MiB from 1 to {MAX_VOLUME_SIZE_MIB}",
                    size.unwrap_or_default()
                )]));
            }
            None => {
                return Err(bad(vec![
                    "the deployment plan has no golden image and no VolumeSize attribute"
                        .to_string(),
                ]));
            }
        }
    } else {
        let gi = records::at_uri(meta, &GOLDEN_IMAGES, &gi_uri)?
            .ok_or_else(|| bad(vec![format!("the golden image {gi_uri} does not exist")]))?;
        Base::GoldenImage {
            uri: gi_uri,
            volume: text(&gi.value, "storageVolume"),
        }
    };
    Ok(ReadyDeployment {
        deployment_plan_uri: uri.to_string(),
        plan,
        base,
    })
}
