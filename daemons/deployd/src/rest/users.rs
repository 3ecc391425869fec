//! `/rest/users`: local users and their roles (Infrastructure administrator, Read only).
//!
//! Passwords are write-only (argon2id hashes are stored, nothing is ever returned). The last
//! Infrastructure administrator cannot be deleted or demoted, so the appliance always has one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::body::parse_body;
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::auth::User;
use crate::domain::users::{self, PasswordChange, UserInput};
use crate::state::AppState;

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

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rest/users", get(list).post(create))
        .route("/rest/users/changePassword", put(change_password))
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
    let members = users::list(&st.users)?.iter().map(render).collect();
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
    Ok(Json(render(&users::get(&st.users, &name)?)))
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
    let user = users::create(&st.users, input).await?;
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
    let user = users::update(&st.users, &st.services.files, &name, input).await?;
    Ok(Json(render(&user)))
}

/// Changes the caller's own password, any role: the current password is checked (wrong ones
/// count towards the login lockout, so this is no way around it).
#[utoipa::path(put, path = "/rest/users/changePassword", tag = "users", request_body = PasswordChange,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: PasswordChange = parse_body(&body)?;
    let me = ctx.user().to_owned();
    if !input.user_name.eq_ignore_ascii_case(&me) {
        return Err(ApiError::Forbidden(format!(
            "You are logged in as {me}: only your own password can be changed here (an \
             administrator sets other users' passwords with PUT /rest/users/{{name}})."
        )));
    }
    let client = peer.ip();
    if !st.limiter.allowed(client, &me) {
        return Err(ApiError::TooManyRequests(format!(
            "Too many failed logins for {me} from {client}."
        )));
    }
    let users = st.users.clone();
    let (name, current) = (me.clone(), input.current_password.clone());
    let verified = tokio::task::spawn_blocking(move || users.verify(&name, &current))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if verified.is_none() {
        st.limiter.failed(client, &me);
        // 400, not 401: the session is valid, only the password given is not.
        return Err(ApiError::bad_request(
            "WRONG_PASSWORD",
            "The current password is wrong: type the password you log in with.",
        ));
    }
    st.limiter.succeeded(client, &me);
    let change = UserInput {
        user_name: None,
        full_name: None,
        password: Some(input.new_password),
        roles: None,
    };
    let user = users::update(&st.users, &st.services.files, &me, change).await?;
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
    users::delete(&st.users, &name)?;
    Ok(StatusCode::NO_CONTENT)
}
