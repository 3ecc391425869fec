//! Dry runs: the build plan that would run, its plan scripts concatenated in order with every
//! `@Name@` substituted, printed instead of run.
//!
//! `plan-script dry-run FILE... --attr NAME=VALUE` works offline on local files (step order =
//! argument order; values: script defaults, then `--attr`). `build-plan dry-run NAME --attr
//! NAME=VALUE` asks the appliance for the build plan and its scripts and applies the plan's
//! typed attributes too, validating every value as a deployment would; password values are
//! printed as `********` unless `--show-secrets`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use planscript::attributes::values::{PlanAttribute, Values, resolve};
use serde_json::Value;

use crate::client::Api;
use crate::error::CliError;
use crate::resources;

fn attrs(pairs: &[String]) -> Result<Vec<(String, String)>, CliError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--attr {p:?}: write NAME=VALUE")))
        })
        .collect()
}

fn render(scripts: &[(String, String)], values: &Values, show_secrets: bool) -> String {
    let mut out = String::new();
    for (name, text) in scripts {
        out.push_str(&format!("# ==== plan script: {name}\n"));
        let mut t = values.substitute(text);
        if !show_secrets {
            for s in &values.secrets {
                t = t.replace(s.as_str(), "********");
            }
        }
        out.push_str(&t);
        if !t.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn resolved(
    scripts: &[(String, String)],
    plan: &[PlanAttribute],
    profile: &[(String, String)],
) -> Result<Values, CliError> {
    let texts: Vec<&str> = scripts.iter().map(|(_, t)| t.as_str()).collect();
    resolve(&texts, plan, &[], profile, &BTreeMap::new()).map_err(|errors| {
        CliError::Usage(format!(
            "invalid attribute values:\n  {}",
            errors.join("\n  ")
        ))
    })
}

/// `plan-script dry-run FILE...`.
pub fn files(files: &[PathBuf], pairs: &[String]) -> Result<String, CliError> {
    let mut scripts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|source| CliError::File {
            what: "cannot read",
            path: f.display().to_string(),
            source,
        })?;
        scripts.push((f.display().to_string(), text));
    }
    let values = resolved(&scripts, &[], &attrs(pairs)?)?;
    Ok(render(&scripts, &values, true))
}

/// `build-plan dry-run NAME`.
pub fn build_plan(
    api: &Api,
    name_or_id: &str,
    pairs: &[String],
    show_secrets: bool,
) -> Result<String, CliError> {
    let uri = resources::resolve(api, &resources::BUILD_PLAN, name_or_id)?;
    let bp = api.get(&uri)?;
    let mut steps: Vec<Value> = bp["buildStep"].as_array().cloned().unwrap_or_default();
    steps.sort_by_key(|s| {
        s["serialNumber"]
            .as_str()
            .and_then(|n| n.parse::<u32>().ok())
            .or(s["serialNumber"].as_u64().map(|n| n as u32))
            .unwrap_or(0)
    });
    let mut scripts = Vec::new();
    for s in &steps {
        let ps = api.get(s["planScriptUri"].as_str().unwrap_or_default())?;
        scripts.push((
            ps["name"].as_str().unwrap_or_default().to_string(),
            ps["content"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let plan: Vec<PlanAttribute> = bp["customAttributes"]
        .as_array()
        .map(|a| a.iter().filter_map(PlanAttribute::from_json).collect())
        .unwrap_or_default();
    let values = resolved(&scripts, &plan, &attrs(pairs)?)?;
    Ok(render(&scripts, &values, show_secrets))
}
