//! `/rest/users`: local users and their roles (Infrastructure administrator, Read only).
//!
//! Passwords are write-only (argon2id hashes are stored, nothing is ever returned). The last
//! Infrastructure administrator cannot be deleted or demoted, so the appliance always has one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::collection::{ListQuery, envelope};
use super::error::{ApiError, ErrorBody};
use super::transport::Ctx;
use crate::artifacts::parse_body;
use crate::auth::{Role, User, hash_password};
use crate::state::AppState;

pub use crate::auth::MIN_PASSWORD_LEN as MIN_PASSWORD;

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

fn render(u: &User) -> Value {
    json!({
        "type": "UserAndRoles",
        "category": "users",
        "uri": format!("/rest/users/{}", u.user_name),
        "userName": u.user_name,
        "fullName": u.full_name,
        "roles": [u.role],
        "enabled": true,
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(ApiError::bad_request(
            "WEAK_PASSWORD",
            format!("The password must have at least {MIN_PASSWORD} characters."),
        ));
    }
    Ok(())
}

fn one_role(roles: &[Role]) -> Result<Role, ApiError> {
    match roles {
        [r] => Ok(*r),
        _ => Err(ApiError::bad_request(
            "INVALID_ROLES",
            "Give exactly one role: \"Infrastructure administrator\" or \"Read only\".",
        )),
    }
}

fn administrators(st: &AppState) -> Result<usize, ApiError> {
    Ok(st
        .users
        .list()
        .map_err(internal)?
        .iter()
        .filter(|u| u.role == Role::InfrastructureAdministrator)
        .count())
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/users", get(list).post(create))
        .route("/rest/users/{name}", get(read).put(update).delete(remove))
}

/// Lists users.
#[utoipa::path(get, path = "/rest/users", tag = "users", params(ListQuery),
    responses((status = 200, description = "users", body = Object), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .users
        .list()
        .map_err(internal)?
        .iter()
        .map(render)
        .collect();
    Ok(Json(envelope(
        "/rest/users",
        "users",
        "UserAndRolesCollection",
        members,
        &q,
    )?))
}

/// One user.
#[utoipa::path(get, path = "/rest/users/{name}", tag = "users",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let u = st
        .users
        .get(&name)
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("User {name}")))?;
    Ok(Json(render(&u)))
}

/// Creates a user.
#[utoipa::path(post, path = "/rest/users", tag = "users", request_body = UserInput,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: UserInput = parse_body(&body)?;
    let name = input.user_name.unwrap_or_default();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(ApiError::bad_request(
            "INVALID_NAME",
            "userName must be 1 to 64 letters, digits, '.', '_', '-' or '@'.",
        ));
    }
    if st.users.get(&name).map_err(internal)?.is_some() {
        return Err(ApiError::conflict(
            "DUPLICATE_NAME",
            format!("User {name} already exists."),
            "Choose another user name.",
        ));
    }
    let password = input
        .password
        .ok_or_else(|| ApiError::bad_request("PASSWORD_REQUIRED", "A password is required."))?;
    check_password(&password)?;
    let role = one_role(&input.roles.unwrap_or_default())?;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let user = User {
        user_name: name,
        full_name: input.full_name.unwrap_or_default(),
        role,
        password_hash: hash,
    };
    st.users.put(&user).map_err(internal)?;
    Ok((StatusCode::CREATED, Json(render(&user))).into_response())
}

/// Changes a user's full name, password or role.
#[utoipa::path(put, path = "/rest/users/{name}", tag = "users", request_body = UserInput,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: UserInput = parse_body(&body)?;
    let mut user = st
        .users
        .get(&name)
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("User {name}")))?;
    if let Some(roles) = &input.roles {
        let role = one_role(roles)?;
        if user.role == Role::InfrastructureAdministrator
            && role != user.role
            && administrators(&st)? <= 1
        {
            return Err(ApiError::conflict(
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
        user.password_hash = tokio::task::spawn_blocking(move || hash_password(&p))
            .await
            .map_err(internal)?
            .map_err(internal)?;
    }
    st.users.put(&user).map_err(internal)?;
    if password_changed
        && user
            .user_name
            .eq_ignore_ascii_case(crate::auth::ADMINISTRATOR)
    {
        let _ = std::fs::remove_file(
            st.config
                .state_dir
                .join(crate::state::INITIAL_PASSWORD_FILE),
        );
    }
    Ok(Json(render(&user)))
}

/// Deletes a user (never the last Infrastructure administrator).
#[utoipa::path(delete, path = "/rest/users/{name}", tag = "users",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = st
        .users
        .get(&name)
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("User {name}")))?;
    if user.role == Role::InfrastructureAdministrator && administrators(&st)? <= 1 {
        return Err(ApiError::conflict(
            "LAST_ADMINISTRATOR",
            format!("{name} is the last Infrastructure administrator."),
            "Create another administrator first.",
        ));
    }
    st.users.delete(&name).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}
