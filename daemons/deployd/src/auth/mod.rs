//! Who may call the API: users with roles, password hashing, login sessions and the login
//! rate limit.

mod accounts;
mod ratelimit;
mod reset;
mod sessions;
mod users;

pub use accounts::{AccountsReady, SetupError, set_up};
pub use reset::{ResetError, ResetOutcome, apply_reset_file};

pub use ratelimit::LoginLimiter;
pub use sessions::{Session, Sessions};
pub use users::{
    ADMINISTRATOR, MIN_PASSWORD_LEN, PendingAdministrator, Role, User, UserError, Users,
    bootstrap_administrator, hash_password, reset_administrator,
};
