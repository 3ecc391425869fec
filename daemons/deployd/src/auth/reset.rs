//! The serial console's Administrator password reset. The console (running as root on the
//! appliance) writes the new password to a file and restarts deployd; deployd applies it at
//! start and deletes the file, so the password never stays on disk in clear.

use std::path::Path;

use super::users::{MIN_PASSWORD_LEN, UserError, Users, reset_administrator};

/// What [`apply_reset_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOutcome {
    /// There was no reset file.
    NoRequest,
    /// The Administrator password was set (and the initial-password file removed).
    Reset,
    /// The file held a password shorter than [`MIN_PASSWORD_LEN`]; nothing changed.
    TooShort,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("cannot read or remove the password-reset file {0}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Users(#[from] UserError),
}

/// Applies the reset file at `reset`, if any, and deletes it whatever it held (a bad file
/// must not be retried on every restart). `initial` is the first-start password file,
/// removed once the password changed.
pub fn apply_reset_file(
    users: &Users,
    reset: &Path,
    initial: &Path,
) -> Result<ResetOutcome, ResetError> {
    let io = |e| ResetError::Io(reset.display().to_string(), e);
    let text = match std::fs::read_to_string(reset) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ResetOutcome::NoRequest),
        Err(e) => return Err(io(e)),
    };
    std::fs::remove_file(reset).map_err(io)?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Ok(ResetOutcome::TooShort);
    }
    reset_administrator(users, password)?;
    let _ = std::fs::remove_file(initial);
    Ok(ResetOutcome::Reset)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::auth::{Role, bootstrap_administrator};
    use crate::meta::{MetaStore, RedbStore};

    fn users(dir: &Path) -> Users {
        let meta: Arc<dyn MetaStore> = Arc::new(RedbStore::open(&dir.join("meta.redb")).unwrap());
        Users::new(meta)
    }

    #[test]
    fn reset_sets_the_password_and_removes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let users = users(dir.path());
        let first = bootstrap_administrator(&users, None).unwrap().unwrap();
        let (reset, initial) = (dir.path().join("reset"), dir.path().join("initial"));
        std::fs::write(&initial, &first).unwrap();
        assert_eq!(
            apply_reset_file(&users, &reset, &initial).unwrap(),
            ResetOutcome::NoRequest
        );
        std::fs::write(&reset, "new-secret-1\n").unwrap();
        assert_eq!(
            apply_reset_file(&users, &reset, &initial).unwrap(),
            ResetOutcome::Reset
        );
        assert!(!reset.exists() && !initial.exists());
        assert!(
            users
                .verify("administrator", "new-secret-1")
                .unwrap()
                .is_some()
        );
        assert!(users.verify("Administrator", &first).unwrap().is_none());
    }

    #[test]
    fn a_short_password_changes_nothing_and_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let users = users(dir.path());
        bootstrap_administrator(&users, Some("original-pw".into())).unwrap();
        let reset = dir.path().join("reset");
        std::fs::write(&reset, "short\n").unwrap();
        let outcome = apply_reset_file(&users, &reset, &dir.path().join("initial")).unwrap();
        assert_eq!(outcome, ResetOutcome::TooShort);
        assert!(!reset.exists());
        assert!(
            users
                .verify("Administrator", "original-pw")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_deleted_administrator_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let users = users(dir.path());
        let reset = dir.path().join("reset");
        std::fs::write(&reset, "brand-new-pw").unwrap();
        apply_reset_file(&users, &reset, &dir.path().join("initial")).unwrap();
        let admin = users
            .verify("Administrator", "brand-new-pw")
            .unwrap()
            .unwrap();
        assert_eq!(admin.role, Role::InfrastructureAdministrator);
    }
}
