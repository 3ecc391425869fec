//! API errors, HPE's error body, and the HTTP status of every error.
//!
//! A handler fails with an [`ApiError`]: a [`DomainError`] from the work it asked for, or a
//! failure of the request itself (its session, role, body, version). The status of each is
//! chosen here, in exhaustive `match`es with no catch-all arm, so a new kind of error cannot
//! compile until someone decides its status. The body is OneView's ErrorMessage entity, which
//! the HPE SDKs turn into exception text (`message`) and keep whole (`recommendedActions` and
//! the rest).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::DomainError;
use crate::domain::error::{CHECK_THE_URI, CORRECT_THE_REQUEST};
use crate::meta::MetaError;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The work the request asked for failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The request is malformed: its body, query or upload.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// No valid session.
    #[error("{0}")]
    Unauthorized(String),
    /// The session's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No resource at this URI.
    #[error("{0}")]
    NoRoute(String),
    /// A method exists for the URI, but not this one.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The X-API-Version is not one this appliance serves.
    #[error("{0}")]
    UnsupportedVersion(String),
    /// The body exceeds the limit for this request.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's media type is not accepted here.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many attempts (login rate limit).
    #[error("{0}")]
    TooManyRequests(String),
    /// The server failed to handle the request itself.
    #[error("{0}")]
    Internal(String),
    /// A pairing step failed (a join token refused, versions that differ, the other
    /// appliance unreachable): its status, code and action are the pairing's.
    #[error("{message}")]
    Pairing {
        status: u16,
        code: String,
        message: String,
        action: &'static str,
    },
}

impl From<clusterd::pairing::PairError> for ApiError {
    fn from(e: clusterd::pairing::PairError) -> Self {
        Self::Pairing {
            status: e.status(),
            code: e.code().to_string(),
            message: e.to_string(),
            action: e.recommended_action(),
        }
    }
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Domain(e) => match e {
                DomainError::Invalid { .. } => StatusCode::BAD_REQUEST,
                DomainError::NotFound(_) => StatusCode::NOT_FOUND,
                DomainError::Conflict { .. } => StatusCode::CONFLICT,
                DomainError::Modified { .. } => StatusCode::PRECONDITION_FAILED,
                DomainError::Unavailable(_) | DomainError::NotActive(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedVersion(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Pairing { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// HPE's `errorCode`: a stable identifier of the failure.
    pub fn code(&self) -> &str {
        match self {
            Self::Domain(e) => e.code(),
            Self::BadRequest { code, .. } => code,
            Self::Unauthorized(_) => "AUTHORIZATION",
            Self::Forbidden(_) => "PERMISSION_DENIED",
            Self::NoRoute(_) => "RESOURCE_NOT_FOUND",
            Self::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            Self::UnsupportedVersion(_) => "UNSUPPORTED_API_VERSION",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::TooManyRequests(_) => "TOO_MANY_REQUESTS",
            Self::Internal(_) => "INTERNAL_ERROR",
            Self::Pairing { code, .. } => code,
        }
    }

    fn action(&self) -> String {
        match self {
            Self::Domain(e) => e.action(),
            Self::BadRequest { .. } => CORRECT_THE_REQUEST.into(),
            Self::Unauthorized(_) => {
                "Log in with POST /rest/login-sessions and send the sessionID in the auth header."
                    .into()
            }
            Self::Forbidden(_) => {
                "Log in as a user with the Infrastructure administrator role.".into()
            }
            Self::NoRoute(_) => CHECK_THE_URI.into(),
            Self::MethodNotAllowed(_) => {
                "See GET /rest/openapi.json for the methods of this URI.".into()
            }
            Self::UnsupportedVersion(_) => {
                "Send an X-API-Version GET /rest/version reports as supported.".into()
            }
            Self::PayloadTooLarge(_) => "Send a smaller request.".into(),
            Self::UnsupportedMediaType(_) => {
                "Send application/json, or multipart/form-data for uploads.".into()
            }
            Self::TooManyRequests(_) => "Wait a minute before trying again.".into(),
            Self::Internal(_) => "Retry; if it persists, collect a support dump.".into(),
            Self::Pairing { action, .. } => (*action).into(),
        }
    }

    /// The ErrorMessage body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.code().to_string(),
            message: self.to_string(),
            details: String::new(),
            recommended_actions: vec![self.action()],
            nested_errors: Vec::new(),
            error_source: None,
            data: serde_json::Map::new(),
        }
    }
}

/// OneView's ErrorMessage entity.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error_code: String,
    pub message: String,
    pub details: String,
    pub recommended_actions: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub nested_errors: Vec<serde_json::Value>,
    pub error_source: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {self}");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        Self::Domain(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status_code_and_action() {
        let errors = [
            ApiError::Domain(DomainError::invalid("X", "bad")),
            ApiError::Domain(DomainError::not_found("The plan script p")),
            ApiError::Domain(DomainError::conflict("IN_USE", "used", "free it")),
            ApiError::Domain(DomainError::Modified {
                code: "ETAG_MISMATCH",
                message: "changed".into(),
            }),
            ApiError::Domain(DomainError::Unavailable("storaged".into())),
            ApiError::Domain(DomainError::Internal("boom".into())),
            ApiError::bad_request("INVALID_JSON", "not JSON"),
            ApiError::Unauthorized("log in".into()),
            ApiError::UnsupportedVersion("9999".into()),
        ];
        let statuses: Vec<u16> = errors.iter().map(|e| e.status().as_u16()).collect();
        assert_eq!(statuses, [400, 404, 409, 412, 503, 500, 400, 401, 412]);
        let b = errors[1].body();
        assert_eq!(b.error_code, "RESOURCE_NOT_FOUND");
        assert_eq!(b.message, "The plan script p was not found.");
        assert_eq!(b.recommended_actions, [CHECK_THE_URI]);
        assert_eq!(errors[2].body().recommended_actions, ["free it"]);
        assert_eq!(errors[6].body().recommended_actions, [CORRECT_THE_REQUEST]);
    }
}
