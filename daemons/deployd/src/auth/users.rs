//! Users and roles, stored in the metadata store with argon2id password hashes.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use crate::meta::{Expect, Kind, MetaError, MetaStore, Op};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Role {
    /// Everything.
    #[serde(rename = "Infrastructure administrator")]
    InfrastructureAdministrator,
    /// GET only.
    #[serde(rename = "Read only")]
    ReadOnly,
}

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_name: String,
    pub full_name: String,
    pub role: Role,
    /// PHC string (argon2id).
    pub password_hash: String,
}

/// Failures of user management.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("stored user {0} is unreadable: {1}")]
    Corrupt(String, String),
}

/// Hashes `password` with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// The user store.
#[derive(Debug, Clone)]
pub struct Users {
    meta: Arc<dyn MetaStore>,
}

/// User names are case-insensitive, as in OneView.
fn user_key(name: &str) -> String {
    name.to_lowercase()
}

impl Users {
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Self { meta }
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, UserError> {
        match self.meta.get(Kind::User, &user_key(name))? {
            Some(r) => serde_json::from_value(r.value)
                .map(Some)
                .map_err(|e| UserError::Corrupt(name.to_string(), e.to_string())),
            None => Ok(None),
        }
    }

    pub fn list(&self) -> Result<Vec<User>, UserError> {
        self.meta
            .list(Kind::User)?
            .into_iter()
            .map(|r| {
                serde_json::from_value(r.value)
                    .map_err(|e| UserError::Corrupt(r.id.clone(), e.to_string()))
            })
            .collect()
    }

    /// Creates or replaces a user.
    pub fn put(&self, user: &User) -> Result<(), UserError> {
        let value = serde_json::to_value(user).map_err(|e| UserError::Hash(e.to_string()))?;
        self.meta.apply(vec![Op::Put {
            kind: Kind::User,
            id: user_key(&user.user_name),
            value,
            expect: Expect::Any,
        }])?;
        Ok(())
    }

    /// Deletes a user; `false` if there was none.
    pub fn delete(&self, name: &str) -> Result<bool, UserError> {
        if self.get(name)?.is_none() {
            return Ok(false);
        }
        self.meta.apply(vec![Op::Delete {
            kind: Kind::User,
            id: user_key(name),
            expect: Expect::Present,
        }])?;
        Ok(true)
    }

    /// The user if `password` is right. Runs argon2 even for unknown users, so response
    /// times do not reveal which user names exist.
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<User>, UserError> {
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$JTt5P3hJ4Iv2nLR1YZq8x0s8p1BWxXgqXnx4nGqWbQk";
        let user = self.get(name)?;
        let phc = user.as_ref().map_or(DUMMY, |u| u.password_hash.as_str());
        let ok = PasswordHash::new(phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        Ok(user.filter(|_| ok))
    }
}

/// Sets the `Administrator` user's password (the serial console's reset), creating the user
/// with the Infrastructure administrator role if it was deleted. Other users are untouched.
pub fn reset_administrator(users: &Users, password: &str) -> Result<(), UserError> {
    let user = match users.get(ADMINISTRATOR)? {
        Some(mut u) => {
            u.password_hash = hash_password(password)?;
            u
        }
        None => User {
            user_name: ADMINISTRATOR.into(),
            full_name: "Appliance administrator".into(),
            role: Role::InfrastructureAdministrator,
            password_hash: hash_password(password)?,
        },
    };
    users.put(&user)
}

/// Shortest password accepted (API and console reset).
pub use appliance_layout::MIN_PASSWORD_LEN;

/// The user created on first start.
pub const ADMINISTRATOR: &str = "Administrator";

/// The `Administrator` of a first start, before its password is hashed (argon2 is the
/// slow part of a first start: deployd answers meanwhile and a login waits for it).
#[derive(Debug)]
pub struct PendingAdministrator {
    password: String,
    generated: bool,
}

impl PendingAdministrator {
    /// On first start (no users): the Administrator to create, with `password` if given
    /// (from `STREAMER_ADMIN_PASSWORD`), else with a generated one. `None` when users exist.
    pub fn prepare(users: &Users, password: Option<String>) -> Result<Option<Self>, UserError> {
        if !users.list()?.is_empty() {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| {
            use rand::Rng;
            rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(20)
                .map(char::from)
                .collect()
        });
        Ok(Some(Self {
            password,
            generated,
        }))
    }

    /// The generated password, to be shown to the operator once; `None` if it was given.
    pub fn generated_password(&self) -> Option<&str> {
        self.generated.then_some(self.password.as_str())
    }

    /// Hashes the password and stores the user.
    pub fn create(self, users: &Users) -> Result<(), UserError> {
        users.put(&User {
            user_name: ADMINISTRATOR.into(),
            full_name: "Appliance administrator".into(),
            role: Role::InfrastructureAdministrator,
            password_hash: hash_password(&self.password)?,
        })
    }
}

/// Creates the `Administrator` user on first start (see [`PendingAdministrator`]) and
/// returns its password if it was generated, so it can be printed once. Returns `None` when
/// users already exist.
pub fn bootstrap_administrator(
    users: &Users,
    password: Option<String>,
) -> Result<Option<String>, UserError> {
    let Some(pending) = PendingAdministrator::prepare(users, password)? else {
        return Ok(None);
    };
    let generated = pending.generated_password().map(str::to_owned);
    pending.create(users)?;
    Ok(generated)
}
