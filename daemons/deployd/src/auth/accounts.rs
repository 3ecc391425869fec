//! Making the accounts ready at start, beside the API: a first start creates the
//! Administrator (argon2 hashing is the slow part of a first start, a third of a second under
//! emulation) and a console password reset replaces its password. Until both are done a
//! login waits; nothing else can be called without a login, and `/rest/version` answers.

use std::path::Path;

use tokio::sync::watch;

use super::reset::{ResetError, ResetOutcome, apply_reset_file};
use super::users::{MIN_PASSWORD_LEN, PendingAdministrator, UserError, Users};

/// Whether logins can be checked yet.
#[derive(Debug)]
pub struct AccountsReady(watch::Sender<bool>);

impl AccountsReady {
    pub fn ready() -> Self {
        Self(watch::Sender::new(true))
    }

    pub fn pending() -> Self {
        Self(watch::Sender::new(false))
    }

    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    pub fn set_ready(&self) {
        self.0.send_replace(true);
    }

    /// Returns once the accounts are ready.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("creating the Administrator user")]
    Administrator(#[source] UserError),
    #[error(transparent)]
    Reset(#[from] ResetError),
}

/// Creates the first start's Administrator, if any, then applies a console password reset
/// at `reset`, if one is waiting (`initial` is the first-start password file, removed when
/// the password changes). Logs what it did.
pub fn set_up(
    users: &Users,
    pending: Option<PendingAdministrator>,
    reset: Option<&Path>,
    initial: &Path,
) -> Result<(), SetupError> {
    if let Some(p) = pending {
        p.create(users).map_err(SetupError::Administrator)?;
    }
    let Some(reset) = reset else {
        return Ok(());
    };
    match apply_reset_file(users, reset, initial)? {
        ResetOutcome::NoRequest => {}
        ResetOutcome::Reset => tracing::warn!("Administrator password reset from the console"),
        ResetOutcome::TooShort => tracing::error!(
            "password reset in {} ignored: shorter than {MIN_PASSWORD_LEN} characters",
            reset.display(),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::auth::ADMINISTRATOR;
    use crate::meta::RedbStore;

    #[test]
    fn a_login_waits_for_the_administrator_and_then_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(Arc::new(
            RedbStore::open(&dir.path().join("m.redb")).unwrap(),
        ));
        let pending = PendingAdministrator::prepare(&users, None)
            .unwrap()
            .unwrap();
        let password = pending.generated_password().unwrap().to_owned();
        assert!(users.get(ADMINISTRATOR).unwrap().is_none());
        let gate = Arc::new(AccountsReady::pending());
        assert!(!gate.is_ready());
        let worker = {
            let (users, gate) = (users.clone(), Arc::clone(&gate));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                set_up(&users, Some(pending), None, Path::new("/nonexistent")).unwrap();
                gate.set_ready();
            })
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // What the login handler does: wait, then check the password.
        rt.block_on(gate.wait());
        assert!(users.verify(ADMINISTRATOR, &password).unwrap().is_some());
        worker.join().unwrap();
        // Later starts: users exist, nothing is pending.
        assert!(
            PendingAdministrator::prepare(&users, None)
                .unwrap()
                .is_none()
        );
        rt.block_on(AccountsReady::ready().wait());
    }

    #[test]
    fn a_reset_waiting_at_first_start_applies_after_the_administrator_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(Arc::new(
            RedbStore::open(&dir.path().join("m.redb")).unwrap(),
        ));
        let pending = PendingAdministrator::prepare(&users, Some("first-password".into()))
            .unwrap()
            .unwrap();
        assert_eq!(pending.generated_password(), None);
        let reset = dir.path().join("reset");
        std::fs::write(&reset, "console-password\n").unwrap();
        set_up(
            &users,
            Some(pending),
            Some(&reset),
            &dir.path().join("initial"),
        )
        .unwrap();
        assert!(
            users
                .verify(ADMINISTRATOR, "console-password")
                .unwrap()
                .is_some()
        );
        assert!(
            users
                .verify(ADMINISTRATOR, "first-password")
                .unwrap()
                .is_none()
        );
        assert!(!reset.exists());
    }
}
