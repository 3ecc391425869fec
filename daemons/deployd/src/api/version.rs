//! The X-API-Version rules: which versions are served and what a request without one gets.

use axum::http::HeaderMap;

use super::error::ApiError;

/// Oldest API version served (Image Streamer 3.0).
pub const MINIMUM_VERSION: u32 = 300;
/// Newest API version served (Image Streamer 6.10).
pub const CURRENT_VERSION: u32 = 2020;
/// What a request without X-API-Version gets, as OneView documents.
pub const DEFAULT_VERSION: u32 = 300;

/// The API version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion(pub u32);

impl ApiVersion {
    /// V5 type strings (`OeBuildPlanV5`, ...) from API 500 on.
    pub fn v5(self) -> bool {
        self.0 >= 500
    }
}

/// Reads X-API-Version: absent means 300; outside 300..=2020 or not a number is a 412.
pub fn from_headers(headers: &HeaderMap) -> Result<ApiVersion, ApiError> {
    let Some(raw) = headers.get("x-api-version") else {
        return Ok(ApiVersion(DEFAULT_VERSION));
    };
    let text = raw.to_str().unwrap_or("").trim();
    match text.parse::<u32>() {
        Ok(v) if (MINIMUM_VERSION..=CURRENT_VERSION).contains(&v) => Ok(ApiVersion(v)),
        _ => Err(ApiError::UnsupportedVersion(format!(
            "X-API-Version {text:?} is not supported: use a version from {MINIMUM_VERSION} to {CURRENT_VERSION}"
        ))),
    }
}
