//! `GET /rest/version`: the API versions this appliance serves. No authentication needed.

use axum::Json;
use serde::Serialize;

use crate::api::version::{CURRENT_VERSION, MINIMUM_VERSION};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionBody {
    pub current_version: u32,
    pub minimum_version: u32,
}

/// The supported API versions. No authentication needed.
#[utoipa::path(get, path = "/rest/version", tag = "version",
    responses((status = 200, body = VersionBody)))]
pub async fn get_version() -> Json<VersionBody> {
    Json(VersionBody {
        current_version: CURRENT_VERSION,
        minimum_version: MINIMUM_VERSION,
    })
}
