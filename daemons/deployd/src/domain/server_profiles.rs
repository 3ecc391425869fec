//! Server profiles (OneView's), with the OS deployment settings that make this appliance
//! deploy an OS volume for a compute module.
//!
//! The rules of a profile: its references (a compute module, which has at most one profile,
//! and a deployment plan), its attribute values (checked before anything runs, every problem
//! named), its stored document and its state. What a change to a profile sets off (a deploy,
//! a re-deploy, the release of its OS volume) is [`super::deploy::profile`].
//! `osVolumeUri` and `bootTarget` are the appliance's to set; input values are ignored.
//! Password values are masked on reads.

use serde::Deserialize;
use serde_json::{Value, json};

use super::collection::{BUILD_PLANS, DEPLOYMENT_PLANS, OS_VOLUMES, SERVER_PROFILES};
use super::error::DomainError;
use super::input::{check_name, loose_bool};
use super::ready::{ReadyDeployment, ready_deployment};
use super::records::{self, Change, IfMatch, WriteError};
use super::server_hardware::{ComputeModule, module_at, profile_of};
use super::system_attributes::system_attributes;
use crate::meta::{Kind, MetaStore, Record};
use crate::services::Services;
use crate::services::clock::now_iso;
use planscript::attributes::{AttrType, PASSWORD_MASK};

/// `{name, value}`; values may arrive as strings, numbers or booleans.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CustomAttributeInput {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = String)]
    pub value: Value,
}

/// OneView's `osDeploymentSettings`; `osVolumeUri` is ignored on input.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsDeploymentSettingsInput {
    #[serde(default)]
    pub os_deployment_plan_uri: Option<String>,
    #[serde(default)]
    pub os_custom_attributes: Vec<CustomAttributeInput>,
}

/// A server profile as clients send it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerProfileInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub server_hardware_uri: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub boot_mode: Value,
    #[serde(default)]
    pub os_deployment_settings: Option<OsDeploymentSettingsInput>,
    /// Keep the old OS volume on re-deploy and on delete (default: delete it).
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub keep_os_volume: bool,
    /// Power the compute module on when its OS volume is ready.
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub power_on_after_deploy: bool,
}

pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Names of the attributes of deployment plan `plan_uri` (and its build plan) that hold
/// passwords.
fn password_names(meta: &dyn MetaStore, plan_uri: &str) -> Vec<String> {
    let Some(dp) = records::at_uri(meta, &DEPLOYMENT_PLANS, plan_uri)
        .ok()
        .flatten()
    else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let bp = dp.value["oeBuildPlanURI"]
        .as_str()
        .and_then(|u| records::at_uri(meta, &BUILD_PLANS, u).ok().flatten());
    for attrs in [Some(&dp.value), bp.as_ref().map(|b| &b.value)]
        .into_iter()
        .flatten()
    {
        for a in attrs["customAttributes"].as_array().into_iter().flatten() {
            if a["type"].as_str().and_then(AttrType::parse) == Some(AttrType::Password)
                && let Some(n) = a["name"].as_str()
            {
                names.push(n.to_string());
            }
        }
    }
    names
}

/// Masks the password values of a profile document as the API shows it.
pub fn mask_secrets(meta: &dyn MetaStore, doc: &mut Value) {
    let plan = doc["osDeploymentSettings"]["osDeploymentPlanUri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let secret = password_names(meta, &plan);
    for a in doc["osDeploymentSettings"]["osCustomAttributes"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if a["name"]
            .as_str()
            .is_some_and(|n| secret.iter().any(|s| s == n))
        {
            a["value"] = json!(PASSWORD_MASK);
        }
    }
}

/// The profile's `{name, value}` pairs, a masked password replaced by the stored value.
pub fn pairs(input: &OsDeploymentSettingsInput, stored: &Value) -> Vec<(String, String)> {
    input
        .os_custom_attributes
        .iter()
        .map(|a| {
            let mut v = value_text(&a.value);
            if v == PASSWORD_MASK {
                v = stored
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| s["name"].as_str() == Some(a.name.as_str()))
                    .map(|s| value_text(&s["value"]))
                    .unwrap_or_default();
            }
            (a.name.clone(), v)
        })
        .collect()
}

/// Updates a profile's `state` and whatever `f` changes, retrying on concurrent updates.
pub fn set_state(s: &Services, id: &str, state: &str, f: impl Fn(&mut Value)) {
    loop {
        let Ok(Some(r)) = s.meta.get(Kind::ServerProfile, id) else {
            return;
        };
        let mut v = r.value.clone();
        f(&mut v);
        v["state"] = json!(state);
        v["status"] = json!(if state == "Error" { "Critical" } else { "OK" });
        v["modified"] = json!(now_iso());
        let mut change = Change::new(&*s.meta);
        let committed = change
            .replace(&r, v)
            .map_err(WriteError::from)
            .and_then(|()| change.commit());
        match committed {
            Err(WriteError::Failed(DomainError::Modified { .. }) | WriteError::Race(_)) => continue,
            Err(WriteError::Failed(e)) => {
                tracing::error!("server profile {id}: state not recorded: {e}");
                return;
            }
            Ok(_) => return,
        }
    }
}

/// Checks the references and values of a profile; the deployment when it asks for one.
pub fn check(
    meta: &dyn MetaStore,
    input: &ServerProfileInput,
    stored_attrs: &Value,
    except_id: Option<&str>,
) -> Result<(ComputeModule, Option<ReadyDeployment>), DomainError> {
    check_name("server profile", &input.name)?;
    records::check_name_free(meta, &SERVER_PROFILES, &input.name, except_id)?;
    let module = module_at(meta, &input.server_hardware_uri)?.ok_or_else(|| {
        DomainError::invalid(
            "INVALID_SERVER_HARDWARE",
            format!(
                "serverHardwareUri {:?} is not a compute module of this appliance.",
                input.server_hardware_uri
            ),
        )
    })?;
    if let Some(other) = profile_of(meta, &module.id, except_id)? {
        return Err(DomainError::conflict(
            "SERVER_HARDWARE_IN_USE",
            format!(
                "The compute module {:?} already has server profile {:?}.",
                module.name,
                other.value["name"].as_str().unwrap_or(&other.id)
            ),
            "Choose another compute module.",
        ));
    }
    let settings = input.os_deployment_settings.clone().unwrap_or_default();
    let ready = match settings
        .os_deployment_plan_uri
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        None => None,
        Some(uri) => Some(ready_deployment(
            meta,
            uri,
            &pairs(&settings, stored_attrs),
            &system_attributes(&module.deployment_ipv4, &module.macs),
        )?),
    };
    Ok((module, ready))
}

pub fn document(
    input: &ServerProfileInput,
    stored: Option<&Value>,
    attrs: &[(String, String)],
) -> Value {
    let settings = input.os_deployment_settings.clone().unwrap_or_default();
    let now = now_iso();
    json!({
        "name": input.name,
        "description": input.description.clone().unwrap_or_default(),
        "serverHardwareUri": input.server_hardware_uri,
        "bootMode": input.boot_mode,
        "osDeploymentSettings": {
            "osDeploymentPlanUri": settings.os_deployment_plan_uri,
            "osCustomAttributes": attrs.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
            "osVolumeUri": stored.map_or(Value::Null, |s| s["osDeploymentSettings"]["osVolumeUri"].clone()),
        },
        "keepOsVolume": input.keep_os_volume,
        "powerOnAfterDeploy": input.power_on_after_deploy,
        "bootTarget": stored.map_or(Value::Null, |s| s["bootTarget"].clone()),
        "state": "Normal",
        "status": "OK",
        "created": stored.map_or(json!(now), |s| s["created"].clone()),
        "modified": now,
    })
}

pub fn os_volume_id(doc: &Value) -> Option<String> {
    doc["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .and_then(|u| OS_VOLUMES.id_in(u))
        .map(str::to_string)
}

/// Refuses to change a profile whose deploy runs (409, saying how to cancel it).
pub fn refuse_if_busy(r: &Record) -> Result<(), DomainError> {
    if r.value["state"].as_str() == Some("Deploying") {
        return Err(DomainError::conflict(
            "PROFILE_BUSY",
            format!(
                "The server profile {:?} is being deployed.",
                r.value["name"].as_str().unwrap_or(&r.id)
            ),
            "Wait for its task to end, or cancel it (PUT /rest/tasks/{id} with \
             {\"taskState\": \"Cancelling\"}, or streamerctl task cancel ID); deleting the \
             profile cancels its deploy.",
        ));
    }
    Ok(())
}

/// The profile an update or delete acts on: it must exist, match `If-Match` and not be
/// deploying.
pub fn current(s: &Services, id: &str, if_match: &IfMatch) -> Result<Record, DomainError> {
    let r = records::current(&*s.meta, &SERVER_PROFILES, id, if_match)?;
    refuse_if_busy(&r)?;
    Ok(r)
}
