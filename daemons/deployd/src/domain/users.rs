//! Local users and their roles (Infrastructure administrator, Read only): the rules of
//! managing them. Passwords are write-only (argon2id hashes are stored, nothing is ever
//! returned). The last Infrastructure administrator cannot be deleted or demoted, so the
//! appliance always has one.

use serde::Deserialize;

use super::error::DomainError;
use crate::auth::{ADMINISTRATOR, MIN_PASSWORD_LEN, Role, User, Users, hash_password};
use crate::services::files::StateFiles;

/// A user to create or change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInput {
    pub user_name: Option<String>,
    pub full_name: Option<String>,
    pub password: Option<String>,
    /// One role: "Infrastructure administrator" or "Read only".
    pub roles: Option<Vec<Role>>,
}

/// `PUT /rest/users/changePassword`: a user changes their own password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    /// The caller's own user name.
    pub user_name: String,
    pub current_password: String,
    pub new_password: String,
}

fn check_password(p: &str) -> Result<(), DomainError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(DomainError::invalid(
            "WEAK_PASSWORD",
            format!("The password must have at least {MIN_PASSWORD_LEN} characters."),
        ));
    }
    Ok(())
}

fn one_role(roles: &[Role]) -> Result<Role, DomainError> {
    match roles {
        [r] => Ok(*r),
        _ => Err(DomainError::invalid(
            "INVALID_ROLES",
            "Give exactly one role: \"Infrastructure administrator\" or \"Read only\".",
        )),
    }
}

fn administrators(users: &Users) -> Result<usize, DomainError> {
    Ok(users
        .list()
        .map_err(DomainError::internal)?
        .iter()
        .filter(|u| u.role == Role::InfrastructureAdministrator)
        .count())
}

async fn hash(password: String) -> Result<String, DomainError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(DomainError::internal)?
        .map_err(DomainError::internal)
}

pub fn list(users: &Users) -> Result<Vec<User>, DomainError> {
    users.list().map_err(DomainError::internal)
}

/// User `name`, or a 404.
pub fn get(users: &Users, name: &str) -> Result<User, DomainError> {
    users
        .get(name)
        .map_err(DomainError::internal)?
        .ok_or_else(|| DomainError::not_found(format!("User {name}")))
}

/// Creates a user.
pub async fn create(users: &Users, input: UserInput) -> Result<User, DomainError> {
    let name = input.user_name.unwrap_or_default();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(DomainError::invalid(
            "INVALID_NAME",
            "userName must be 1 to 64 letters, digits, '.', '_', '-' or '@'.",
        ));
    }
    if users.get(&name).map_err(DomainError::internal)?.is_some() {
        return Err(DomainError::conflict(
            "DUPLICATE_NAME",
            format!("User {name} already exists."),
            "Choose another user name.",
        ));
    }
    let password = input
        .password
        .ok_or_else(|| DomainError::invalid("PASSWORD_REQUIRED", "A password is required."))?;
    check_password(&password)?;
    let role = one_role(&input.roles.unwrap_or_default())?;
    let user = User {
        user_name: name,
        full_name: input.full_name.unwrap_or_default(),
        role,
        password_hash: hash(password).await?,
    };
    users.put(&user).map_err(DomainError::internal)?;
    Ok(user)
}

/// Changes user `name`'s full name, password or role. A new Administrator password ends the
/// first start's one (its file is deleted).
pub async fn update(
    users: &Users,
    files: &StateFiles,
    name: &str,
    input: UserInput,
) -> Result<User, DomainError> {
    let mut user = get(users, name)?;
    if let Some(roles) = &input.roles {
        let role = one_role(roles)?;
        if user.role == Role::InfrastructureAdministrator
            && role != user.role
            && administrators(users)? <= 1
        {
            return Err(DomainError::conflict(
                "LAST_ADMINISTRATOR",
                format!("{name} is the last Infrastructure administrator."),
                "Give another user that role first.",
            ));
        }
        user.role = role;
    }
    if let Some(f) = input.full_name {
        user.full_name = f;
    }
    let password_changed = input.password.is_some();
    if let Some(p) = input.password {
        check_password(&p)?;
        user.password_hash = hash(p).await?;
    }
    users.put(&user).map_err(DomainError::internal)?;
    if password_changed && user.user_name.eq_ignore_ascii_case(ADMINISTRATOR) {
        let _ = std::fs::remove_file(files.dir().join(appliance_layout::INITIAL_PASSWORD_FILE));
    }
    Ok(user)
}

/// Deletes user `name` (never the last Infrastructure administrator).
pub fn delete(users: &Users, name: &str) -> Result<(), DomainError> {
    let user = get(users, name)?;
    if user.role == Role::InfrastructureAdministrator && administrators(users)? <= 1 {
        return Err(DomainError::conflict(
            "LAST_ADMINISTRATOR",
            format!("{name} is the last Infrastructure administrator."),
            "Create another administrator first.",
        ));
    }
    users.delete(name).map_err(DomainError::internal)?;
    Ok(())
}
