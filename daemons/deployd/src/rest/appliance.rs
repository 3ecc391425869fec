//! `POST /rest/appliance/shutdown?type=HALT|REBOOT`: powers the appliance off or reboots it,
//! as OneView's appliance API does. deployd does not stop the machine itself: it signals the
//! appliance's init (`--power-control-pid`, PID 1 on the appliance), which stops every
//! service in order, syncs and powers off (SIGUSR2) or reboots (SIGUSR1). Without that
//! option (deployd run on a workstation) the request is refused.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::domain::DomainError;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ShutdownQuery {
    /// `HALT` (power off) or `REBOOT`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// The signal init takes for a shutdown type.
pub fn signal_for(kind: &str) -> Option<libc::c_int> {
    match kind.to_ascii_uppercase().as_str() {
        "HALT" | "POWEROFF" => Some(libc::SIGUSR2),
        "REBOOT" => Some(libc::SIGUSR1),
        _ => None,
    }
}

/// Powers the appliance off or reboots it (202: the request is accepted and init acts
/// half a second later, after this response is sent).
#[utoipa::path(post, path = "/rest/appliance/shutdown", tag = "appliance",
    params(ShutdownQuery),
    responses((status = 202), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn shutdown(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ShutdownQuery>,
) -> Result<StatusCode, ApiError> {
    let kind = q.kind.unwrap_or_default();
    let Some(signal) = signal_for(&kind) else {
        return Err(ApiError::bad_request(
            "INVALID_SHUTDOWN_TYPE",
            format!("Shutdown type {kind:?} is not valid: use type=HALT or type=REBOOT."),
        ));
    };
    let Some(pid) = st.config.power_control_pid else {
        return Err(DomainError::conflict(
            "NOT_AN_APPLIANCE",
            "This deployd does not control the machine's power (it was started without \
             --power-control-pid).",
            "Stop the services with whatever started them.",
        )
        .into());
    };
    tracing::warn!("{} requested appliance shutdown type {kind}", ctx.user());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
        if unsafe { libc::kill(pid, signal) } != 0 {
            tracing::error!(
                "cannot signal init (pid {pid}): {}",
                std::io::Error::last_os_error()
            );
        }
    });
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_types_map_to_inits_signals() {
        assert_eq!(signal_for("HALT"), Some(libc::SIGUSR2));
        assert_eq!(signal_for("reboot"), Some(libc::SIGUSR1));
        assert_eq!(signal_for("nap"), None);
    }
}
