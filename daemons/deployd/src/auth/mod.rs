//! Who may call the API: users with roles, password hashing, login sessions and the login
//! rate limit.

mod ratelimit;
mod sessions;
mod users;

pub use ratelimit::LoginLimiter;
pub use sessions::{Session, Sessions};
pub use users::{Role, User, UserError, Users, bootstrap_administrator, hash_password};
