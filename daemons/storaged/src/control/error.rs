//! Errors as they cross the control socket: a stable D-Bus error name per kind, the message
//! from the store.

use crate::store::StoreError;

/// Errors returned by the control interface.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.streamer.Storage1.Error")]
pub enum ControlError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The volume does not exist.
    NotFound(String),
    /// The request conflicts with the store's state (name taken, children, in use, frozen).
    Conflict(String),
    /// The request is malformed (bad size, name, format, image file).
    Invalid(String),
    /// The operation failed (I/O, catalog).
    Failed(String),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        let msg = error_chain(&e);
        match e {
            StoreError::NotFound(_) => Self::NotFound(msg),
            StoreError::NameTaken(_)
            | StoreError::HasChildren { .. }
            | StoreError::InUse { .. }
            | StoreError::Frozen(_)
            | StoreError::NotFrozen(_)
            | StoreError::Locked { .. } => Self::Conflict(msg),
            StoreError::Invalid(_) | StoreError::ImageFile(_) => Self::Invalid(msg),
            StoreError::Io { .. } | StoreError::Catalog(_) | StoreError::Layer(_) => {
                Self::Failed(msg)
            }
        }
    }
}

/// The error and its causes, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
