//! The domain's errors: what went wrong in the appliance's terms, with HPE's error code and
//! the action that helps, and no HTTP status. The transport (`api::error`) chooses the status
//! of each kind in one exhaustive `match`; a task records the same code, message and action.

use crate::meta::MetaError;
use crate::services::files::FilesError;
use crate::services::plan_runs::PlanRunError;
use crate::services::storage::StorageError;
use crate::services::tasks::TaskError;

/// What to do about a request that is not valid.
pub const CORRECT_THE_REQUEST: &str = "Correct the request and try again.";
/// What to do about a resource that does not exist.
pub const CHECK_THE_URI: &str = "Check the URI; list the collection to find the resource.";

/// A failure of the appliance's work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// What was asked is not valid: a bad value, a reference to nothing.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        action: String,
    },
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What was asked conflicts with the appliance's state: in use, read-only, a duplicate
    /// name, busy.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        action: String,
    },
    /// The resource changed since the caller read it (a stale eTag or revision).
    #[error("{message}")]
    Modified { code: &'static str, message: String },
    /// A dependency is unavailable: storaged, a compute module's management processor, the
    /// pair's cluster store.
    #[error("{0}")]
    Unavailable(String),
    /// This node of the pair is not the active one, so it does not take changes.
    #[error("{0}")]
    NotActive(String),
    /// The appliance failed in a way the caller cannot correct.
    #[error("{0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
            action: CORRECT_THE_REQUEST.into(),
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

    /// `what` (e.g. "The plan script <id>") was not found.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} was not found."))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// HPE's `errorCode`: a stable identifier of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::Conflict { code, .. }
            | Self::Modified { code, .. } => code,
            Self::NotFound(_) => "RESOURCE_NOT_FOUND",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::NotActive(_) => "NOT_ACTIVE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// What the caller can do about it.
    pub fn action(&self) -> String {
        match self {
            Self::Invalid { action, .. } | Self::Conflict { action, .. } => action.clone(),
            Self::NotFound(_) => CHECK_THE_URI.into(),
            Self::Modified { .. } => {
                "GET the resource again and retry with its current eTag.".into()
            }
            Self::Unavailable(_) => "Retry later; check the appliance's health.".into(),
            Self::NotActive(_) => {
                "Send changes to the management virtual IP (the active node), or retry there."
                    .into()
            }
            Self::Internal(_) => "Retry; if it persists, collect a support dump.".into(),
        }
    }
}

impl TaskError for DomainError {
    fn code(&self) -> &str {
        DomainError::code(self)
    }

    fn message(&self) -> String {
        self.to_string()
    }

    fn action(&self) -> String {
        DomainError::action(self)
    }
}

impl From<MetaError> for DomainError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict { kind, id, what } => Self::Modified {
                code: "RESOURCE_MODIFIED",
                message: format!("{} {id} {what}", kind.prefix()),
            },
            MetaError::Unavailable(m) => Self::Unavailable(m),
            MetaError::NotActive(m) => Self::NotActive(m),
            MetaError::Backend(m) => Self::Internal(m),
        }
    }
}

impl From<StorageError> for DomainError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StorageError::Refused(_) | StorageError::Local(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<FilesError> for DomainError {
    fn from(e: FilesError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<PlanRunError> for DomainError {
    fn from(e: PlanRunError) -> Self {
        match e {
            PlanRunError::Storage(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for DomainError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("background work failed: {e}"))
    }
}
