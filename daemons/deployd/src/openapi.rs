//! `GET /rest/openapi.json`: the API description, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use crate::api::error::ErrorBody;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Streamer REST API",
        description = "HPE Image Streamer compatible REST API of the Streamer appliance. Every call except GET /rest/version and POST /rest/login-sessions needs the `auth` header."
    ),
    paths(
        crate::api::version::get_version,
        crate::api::appliance::shutdown,
        crate::api::sessions::login,
        crate::api::sessions::renew,
        crate::api::sessions::logout,
        crate::api::tasks::list_tasks,
        crate::api::tasks::get_task,
        crate::artifacts::plan_scripts::list,
        crate::artifacts::plan_scripts::read,
        crate::artifacts::plan_scripts::create,
        crate::artifacts::plan_scripts::update,
        crate::artifacts::plan_scripts::remove,
        crate::artifacts::plan_scripts::differences,
        crate::artifacts::plan_scripts::used_by_readonly,
        crate::artifacts::build_plans::list,
        crate::artifacts::build_plans::read,
        crate::artifacts::build_plans::create,
        crate::artifacts::build_plans::update,
        crate::artifacts::build_plans::remove,
        crate::artifacts::deployment_plans::list,
        crate::artifacts::deployment_plans::read,
        crate::artifacts::deployment_plans::create,
        crate::artifacts::deployment_plans::update,
        crate::artifacts::deployment_plans::remove,
        crate::artifacts::deployment_plans::used_by,
        crate::artifacts::deployment_plans::osdp,
        crate::artifacts::deployment_groups::list,
        crate::artifacts::deployment_groups::read,
        crate::artifacts::golden_images::list,
        crate::artifacts::golden_images::read,
        crate::artifacts::golden_images::create,
        crate::artifacts::golden_images::update,
        crate::artifacts::golden_images::remove,
        crate::artifacts::golden_images::download,
        crate::artifacts::golden_images::archive,
        crate::artifacts::os_volumes::list,
        crate::artifacts::os_volumes::read,
        crate::artifacts::os_volumes::storage,
        crate::artifacts::os_volumes::archive,
        crate::artifacts::os_volumes::remove,
        crate::artifacts::server_hardware::list,
        crate::artifacts::server_hardware::read,
        crate::artifacts::server_hardware::create,
        crate::artifacts::server_hardware::remove,
        crate::artifacts::server_hardware::power,
        crate::artifacts::server_profiles::list,
        crate::artifacts::server_profiles::read,
        crate::artifacts::server_profiles::create,
        crate::artifacts::server_profiles::update,
        crate::artifacts::server_profiles::remove,
        crate::artifacts::artifact_bundles::list,
        crate::artifacts::artifact_bundles::read,
        crate::artifacts::artifact_bundles::create,
        crate::artifacts::artifact_bundles::update,
        crate::artifacts::artifact_bundles::remove,
        crate::artifacts::artifact_bundles::download,
        crate::artifacts::artifact_bundles::stop,
        crate::artifacts::artifact_bundles::list_backups,
        crate::artifacts::artifact_bundles::read_backup,
        crate::artifacts::artifact_bundles::download_backup,
        crate::artifacts::artifact_bundles::create_backup,
        crate::artifacts::artifact_bundles::restore_backup,
        crate::api::users::list,
        crate::api::users::read,
        crate::api::users::create,
        crate::api::users::update,
        crate::api::users::remove,
        get_openapi,
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/rest/openapi.json", tag = "openapi",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn get_openapi(_ctx: crate::api::transport::Ctx) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
