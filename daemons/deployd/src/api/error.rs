//! API errors and HPE's error body.
//!
//! Every failure a handler can return is an [`ApiError`]; its HTTP status is chosen in one
//! exhaustive `match` with no catch-all arm, so a new kind of error cannot compile until
//! someone decides its status. The body is OneView's ErrorMessage entity, which the HPE SDKs
//! turn into exception text (`message`) and keep whole (`recommendedActions` and the rest).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::meta::MetaError;

/// An API failure: what went wrong, and what the caller can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or fails validation.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        action: String,
    },
    /// No valid session.
    #[error("{0}")]
    Unauthorized(String),
    /// The session's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (in use, read-only, duplicate name).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        action: String,
    },
    /// If-Match did not match, or the X-API-Version is not supported.
    #[error("{message}")]
    PreconditionFailed { code: &'static str, message: String },
    /// The body exceeds the limit for this request.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's media type is not accepted here.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many attempts (login rate limit).
    #[error("{0}")]
    TooManyRequests(String),
    /// A method exists for the URI, but not this one.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
    /// A dependency (storaged) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// The operation is part of the API but this appliance cannot do it yet.
    #[error("{0}")]
    NotImplemented(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            action: "Correct the request and try again.".into(),
        }
    }

    pub fn conflict(
        code: &'static str,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            action: action.into(),
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} was not found."))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// HPE's `errorCode`: a stable identifier of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::PreconditionFailed { code, .. } => code,
            Self::Unauthorized(_) => "AUTHORIZATION",
            Self::Forbidden(_) => "PERMISSION_DENIED",
            Self::NotFound(_) => "RESOURCE_NOT_FOUND",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::TooManyRequests(_) => "TOO_MANY_REQUESTS",
            Self::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            Self::Internal(_) => "INTERNAL_ERROR",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::NotImplemented(_) => "NOT_IMPLEMENTED",
        }
    }

    fn action(&self) -> String {
        match self {
            Self::BadRequest { action, .. } | Self::Conflict { action, .. } => action.clone(),
            Self::Unauthorized(_) => {
                "Log in with POST /rest/login-sessions and send the sessionID in the auth header."
                    .into()
            }
            Self::Forbidden(_) => {
                "Log in as a user with the Infrastructure administrator role.".into()
            }
            Self::NotFound(_) => "Check the URI; list the collection to find the resource.".into(),
            Self::PreconditionFailed {
                code: "UNSUPPORTED_API_VERSION",
                ..
            } => "Send an X-API-Version GET /rest/version reports as supported.".into(),
            Self::PreconditionFailed { .. } => {
                "GET the resource again and retry with its current eTag.".into()
            }
            Self::PayloadTooLarge(_) => "Send a smaller request.".into(),
            Self::UnsupportedMediaType(_) => {
                "Send application/json, or multipart/form-data for uploads.".into()
            }
            Self::TooManyRequests(_) => "Wait a minute before trying again.".into(),
            Self::MethodNotAllowed(_) => {
                "See GET /rest/openapi.json for the methods of this URI.".into()
            }
            Self::Internal(_) => "Retry; if it persists, collect a support dump.".into(),
            Self::Unavailable(_) => "Retry later; check the appliance's health.".into(),
            Self::NotImplemented(_) => "Use another way to reach the same result.".into(),
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
        if matches!(self, Self::Internal(_)) {
            tracing::error!("internal error: {self}");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict { kind, id, what } => Self::PreconditionFailed {
                code: "RESOURCE_MODIFIED",
                message: format!("{} {id} {what}", kind.prefix()),
            },
            MetaError::Backend(m) => Self::Internal(m),
        }
    }
}
