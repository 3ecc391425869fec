//! `GET /rest/openapi.json`: the API description, generated from the handlers' annotations
//! and, for the generic path, from each collection's declaration (`crud`).

use axum::Json;
use utoipa::OpenApi;

use super::crud;
use super::deployment_groups::DeploymentGroups;
use super::golden_images::GoldenImages;
use super::server_profiles::ServerProfiles;
use crate::api::error::ErrorBody;
use crate::domain::build_plans::{BuildPlanInput, BuildPlans, BuildStepInput};
use crate::domain::deployment_plans::{DeploymentPlanInput, DeploymentPlans};
use crate::domain::plan_scripts::{PlanScriptInput, PlanScripts};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Streamer REST API",
        description = "HPE Image Streamer compatible REST API of the Streamer appliance. Every call except GET /rest/version and POST /rest/login-sessions needs the `auth` header."
    ),
    paths(
        super::version::get_version,
        super::appliance::shutdown,
        super::cluster::list_nodes,
        super::cluster::storage,
        super::cluster::list_alerts,
        super::cluster::get_alert,
        super::audit_logs::list,
        super::pairing::get_pair,
        super::pairing::start_pairing,
        super::pairing::join,
        super::pairing::join_request,
        super::pairing::unpair,
        super::login_sessions::login,
        super::login_sessions::renew,
        super::login_sessions::logout,
        super::tasks::list_tasks,
        super::tasks::get_task,
        super::tasks::update_task,
        super::tasks::task_log,
        super::plan_scripts::differences,
        super::plan_scripts::lint,
        super::plan_scripts::used_by_readonly,
        super::deployment_plans::used_by,
        super::deployment_plans::osdp,
        super::golden_images::create,
        super::golden_images::update,
        super::golden_images::remove,
        super::golden_images::download,
        super::golden_images::archive,
        super::os_volumes::list,
        super::os_volumes::read,
        super::os_volumes::storage,
        super::os_volumes::archive,
        super::os_volumes::remove,
        super::server_hardware::list,
        super::server_hardware::read,
        super::server_hardware::create,
        super::server_hardware::remove,
        super::server_hardware::power,
        super::server_profiles::create,
        super::server_profiles::update,
        super::server_profiles::remove,
        super::artifact_bundles::list,
        super::artifact_bundles::read,
        super::artifact_bundles::create,
        super::artifact_bundles::update,
        super::artifact_bundles::remove,
        super::artifact_bundles::download,
        super::artifact_bundles::stop,
        super::artifact_bundles::list_backups,
        super::artifact_bundles::read_backup,
        super::artifact_bundles::download_backup,
        super::artifact_bundles::create_backup,
        super::artifact_bundles::restore_backup,
        super::users::list,
        super::users::read,
        super::users::create,
        super::users::update,
        super::users::change_password,
        super::users::remove,
        get_openapi,
    ),
    components(schemas(
        ErrorBody,
        PlanScriptInput,
        super::plan_scripts::PlanScriptDoc,
        BuildPlanInput,
        BuildStepInput,
        super::build_plans::BuildPlanDoc,
        DeploymentPlanInput,
        super::deployment_plans::DeploymentPlanDoc,
        super::pairing::PairInput,
        super::pairing::JoinInput,
    ))
)]
pub struct ApiDoc;

/// The whole document: the annotated handlers and the generic path's collections.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for paths in [
        crud::editable_paths::<PlanScripts>(),
        crud::editable_paths::<BuildPlans>(),
        crud::editable_paths::<DeploymentPlans>(),
        crud::read_paths::<DeploymentGroups>(),
        crud::read_paths::<GoldenImages>(),
        crud::read_paths::<ServerProfiles>(),
    ] {
        doc.paths.merge(paths);
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/rest/openapi.json", tag = "openapi",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn get_openapi(_ctx: crate::api::transport::Ctx) -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
