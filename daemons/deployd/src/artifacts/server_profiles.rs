//! `/rest/server-profiles`: OneView's server profiles, with the OS deployment settings that
//! make this appliance deploy an OS volume for a compute module.
//!
//! Creating a profile with `osDeploymentSettings.osDeploymentPlanUri` starts a deploy task
//! (see `crate::deploy::job`); the attribute values are checked first and a bad one is a 400
//! naming every problem. Changing the plan or a value re-deploys onto a new OS volume; the old
//! one is deleted, or kept when `keepOsVolume` is true. Deleting the profile removes the OS
//! volume's export and, unless `keepOsVolume`, the volume. `osVolumeUri` and `bootTarget` are
//! the appliance's to set; input values are ignored. Password values are masked on reads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::server_hardware::{ComputeModule, module_at};
use super::{Collection, check_if_match, check_name, loose_bool, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::deploy::job::{self, DeployJob};
use crate::deploy::plan::ready_deployment;
use crate::deploy::system::system_attributes;
use crate::meta::{Expect, Kind, MetaError, Op, Record};
use crate::state::AppState;
use crate::tasks::{Associated, now_iso};
use planscript::attributes::AttrType;
use planscript::attributes::PASSWORD_MASK;

pub const SERVER_PROFILES: Collection = Collection {
    kind: Kind::ServerProfile,
    path: "/rest/server-profiles",
    category: "server-profiles",
    noun: "server profile",
    type_v3: "ServerProfileV12",
    type_v5: "ServerProfileV12",
    list_type: "ServerProfileListV12",
};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/server-profiles", get(list).post(create))
        .route(
            "/rest/server-profiles/{id}",
            get(read).put(update).delete(remove),
        )
}

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

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Names of the attributes of the profile's deployment plan that hold passwords.
fn password_names(st: &AppState, plan_uri: &str) -> Vec<String> {
    let Some(dp) = super::deployment_plans::DEPLOYMENT_PLANS
        .id_in(plan_uri)
        .and_then(|id| st.meta.get(Kind::DeploymentPlan, id).ok().flatten())
    else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let bp = dp.value["oeBuildPlanURI"]
        .as_str()
        .and_then(|u| u.strip_prefix("/rest/build-plans/"))
        .and_then(|id| st.meta.get(Kind::BuildPlan, id).ok().flatten());
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

fn render(st: &AppState, r: &Record, ctx: &Ctx) -> Value {
    let mut doc = SERVER_PROFILES.render(r, ctx.version);
    let plan = doc["osDeploymentSettings"]["osDeploymentPlanUri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let secret = password_names(st, &plan);
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
    doc
}

/// The profile's `{name, value}` pairs, a masked password replaced by the stored value.
fn pairs(input: &OsDeploymentSettingsInput, stored: &Value) -> Vec<(String, String)> {
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
pub fn set_state(st: &AppState, id: &str, state: &str, f: impl Fn(&mut Value)) {
    loop {
        let Ok(Some(r)) = st.meta.get(Kind::ServerProfile, id) else {
            return;
        };
        let mut v = r.value;
        f(&mut v);
        v["state"] = json!(state);
        v["status"] = json!(if state == "Error" { "Critical" } else { "OK" });
        v["modified"] = json!(now_iso());
        match st.meta.apply(vec![Op::Put {
            kind: Kind::ServerProfile,
            id: id.to_string(),
            value: v,
            expect: Expect::Revision(r.revision),
        }]) {
            Err(MetaError::Conflict { .. }) => continue,
            Err(e) => {
                tracing::error!("server profile {id}: state not recorded: {e}");
                return;
            }
            Ok(_) => return,
        }
    }
}

/// Checks the references and values of a profile; `Some` when it asks for a deploy.
fn check(
    st: &AppState,
    input: &ServerProfileInput,
    stored_attrs: &Value,
    except_id: Option<&str>,
) -> Result<(ComputeModule, Option<crate::deploy::plan::ReadyDeployment>), ApiError> {
    check_name("server profile", &input.name)?;
    SERVER_PROFILES.check_name_free(st, &input.name, except_id)?;
    let module = module_at(st, &input.server_hardware_uri)?.ok_or_else(|| {
        ApiError::bad_request(
            "INVALID_SERVER_HARDWARE",
            format!(
                "serverHardwareUri {:?} is not a compute module of this appliance.",
                input.server_hardware_uri
            ),
        )
    })?;
    if let Some(other) = st.meta.list(Kind::ServerProfile)?.into_iter().find(|p| {
        p.value["serverHardwareUri"].as_str() == Some(module.uri.as_str())
            && Some(p.id.as_str()) != except_id
    }) {
        return Err(ApiError::conflict(
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
            st,
            uri,
            &pairs(&settings, stored_attrs),
            &system_attributes(&module.deployment_ipv4, &module.macs),
        )?),
    };
    Ok((module, ready))
}

fn document(
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

fn refuse_if_busy(r: &Record) -> Result<(), ApiError> {
    if r.value["state"].as_str() == Some("Deploying") {
        return Err(ApiError::conflict(
            "PROFILE_BUSY",
            format!(
                "The server profile {:?} is being deployed.",
                r.value["name"].as_str().unwrap_or(&r.id)
            ),
            "Wait for its task to end.",
        ));
    }
    Ok(())
}

fn os_volume_id(doc: &Value) -> Option<String> {
    doc["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .and_then(|u| super::os_volumes::OS_VOLUMES.id_in(u))
        .map(str::to_string)
}

/// Lists server profiles.
#[utoipa::path(get, path = "/rest/server-profiles", tag = "server-profiles", params(ListQuery),
    responses((status = 200, description = "server profile collection", body = Object)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .meta
        .list(Kind::ServerProfile)?
        .iter()
        .map(|r| render(&st, r, &ctx))
        .collect();
    Ok(Json(envelope(
        SERVER_PROFILES.path,
        SERVER_PROFILES.category,
        SERVER_PROFILES.list_type,
        members,
        &q,
    )?))
}

/// One server profile.
#[utoipa::path(get, path = "/rest/server-profiles/{id}", tag = "server-profiles",
    responses((status = 200, description = "server profile", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&st, &SERVER_PROFILES.get(&st, &id)?, &ctx)))
}

fn start_task(
    st: &Arc<AppState>,
    ctx: &Ctx,
    name: &str,
    id: &str,
    profile: &str,
) -> Result<crate::tasks::TaskHandle, ApiError> {
    st.tasks.start(
        name,
        ctx.user(),
        &Associated {
            category: SERVER_PROFILES.category.into(),
            name: profile.to_string(),
            uri: SERVER_PROFILES.uri(id),
        },
    )
}

fn spawn_deploy(st: &Arc<AppState>, task: &crate::tasks::TaskHandle, job: DeployJob) {
    let bg = Arc::clone(st);
    let t = task.clone();
    tokio::spawn(async move { job::run(bg, job, t).await });
}

/// Creates a server profile; with a deployment plan, 202 with the deploy task ("Create").
#[utoipa::path(post, path = "/rest/server-profiles", tag = "server-profiles",
    request_body = ServerProfileInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: ServerProfileInput = parse_body(&body)?;
    let (module, ready) = check(&st, &input, &Value::Null, None)?;
    let attrs = pairs(
        &input.os_deployment_settings.clone().unwrap_or_default(),
        &Value::Null,
    );
    let id = uuid::Uuid::new_v4().to_string();
    let mut doc = document(&input, None, &attrs);
    if ready.is_some() {
        doc["state"] = json!("Deploying");
    }
    st.meta.apply(vec![Op::Put {
        kind: Kind::ServerProfile,
        id: id.clone(),
        value: doc,
        expect: Expect::Absent,
    }])?;
    let task = start_task(&st, &ctx, "Create", &id, &input.name)?;
    match ready {
        None => task.complete(Some(&SERVER_PROFILES.uri(&id)), "Server profile created"),
        Some(ready) => spawn_deploy(
            &st,
            &task,
            DeployJob {
                profile_id: id,
                profile_name: input.name,
                module,
                ready,
                power_on: input.power_on_after_deploy,
                previous: None,
                keep_previous: input.keep_os_volume,
            },
        ),
    }
    Ok(task.accepted())
}

/// Updates a server profile; a changed deployment plan or attribute value re-deploys onto a
/// new OS volume. 202 with the task ("Update").
#[utoipa::path(put, path = "/rest/server-profiles/{id}", tag = "server-profiles",
    request_body = ServerProfileInput,
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
    let current = SERVER_PROFILES.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    refuse_if_busy(&current)?;
    let input: ServerProfileInput = parse_body(&body)?;
    let stored_attrs = &current.value["osDeploymentSettings"]["osCustomAttributes"];
    let previous = os_volume_id(&current.value);
    if previous.is_some()
        && current.value["serverHardwareUri"].as_str() != Some(input.server_hardware_uri.as_str())
    {
        return Err(ApiError::conflict(
            "PROFILE_DEPLOYED",
            "The server profile's OS volume is exported to its compute module; it cannot move to another.",
            "Delete the profile and create one for the other compute module.",
        ));
    }
    let (module, ready) = check(&st, &input, stored_attrs, Some(&id))?;
    let settings = input.os_deployment_settings.clone().unwrap_or_default();
    let attrs = pairs(&settings, stored_attrs);
    let old_plan = current.value["osDeploymentSettings"]["osDeploymentPlanUri"]
        .as_str()
        .filter(|s| !s.is_empty());
    let old_attrs: Vec<(String, String)> = stored_attrs
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| (value_text(&a["name"]), value_text(&a["value"])))
        .collect();
    let changed = old_plan
        != settings
            .os_deployment_plan_uri
            .as_deref()
            .filter(|s| !s.is_empty())
        || old_attrs != attrs
        || current.value["state"].as_str() == Some("Error");
    let mut doc = document(&input, Some(&current.value), &attrs);
    let redeploy = changed && ready.is_some();
    if redeploy {
        doc["state"] = json!("Deploying");
    }
    let undeploy = ready.is_none() && previous.is_some();
    if undeploy {
        doc["osDeploymentSettings"]["osVolumeUri"] = Value::Null;
        doc["bootTarget"] = Value::Null;
    }
    st.meta.apply(vec![Op::Put {
        kind: Kind::ServerProfile,
        id: id.clone(),
        value: doc,
        expect: Expect::Revision(current.revision),
    }])?;
    let task = start_task(&st, &ctx, "Update", &id, &input.name)?;
    if redeploy && let Some(ready) = ready {
        spawn_deploy(
            &st,
            &task,
            DeployJob {
                profile_id: id,
                profile_name: input.name,
                module,
                ready,
                power_on: input.power_on_after_deploy,
                previous,
                keep_previous: input.keep_os_volume,
            },
        );
        return Ok(task.accepted());
    }
    if undeploy
        && let Some(prev) = previous
        && let Err(e) = super::os_volumes::release(&st, &prev, input.keep_os_volume).await
    {
        task.fail(&e);
        return Ok(task.accepted());
    }
    task.complete(Some(&SERVER_PROFILES.uri(&id)), "Server profile updated");
    Ok(task.accepted())
}

/// Deletes a server profile: its OS volume's export is removed and, unless `keepOsVolume`,
/// the volume. 202 with a completed task named "Delete".
#[utoipa::path(delete, path = "/rest/server-profiles/{id}", tag = "server-profiles",
    responses((status = 202, description = "TaskResourceV2 named Delete", body = Object),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let current = SERVER_PROFILES.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    refuse_if_busy(&current)?;
    let name = current.value["name"].as_str().unwrap_or(&id).to_string();
    let keep = current.value["keepOsVolume"].as_bool().unwrap_or(false);
    if let Some(os) = os_volume_id(&current.value) {
        super::os_volumes::release(&st, &os, keep).await?;
    }
    st.meta.apply(vec![Op::Delete {
        kind: Kind::ServerProfile,
        id: id.clone(),
        expect: Expect::Any,
    }])?;
    let task = start_task(&st, &ctx, "Delete", &id, &name)?;
    task.complete(None, "Server profile deleted");
    Ok(task.accepted())
}
