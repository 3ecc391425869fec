//! `/rest/login-sessions`: log in, renew, log out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::state::AppState;

/// Login request (OneView's shape; `authLoginDomain` and `loginMsgAck` are accepted and
/// ignored: users are local).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub user_name: String,
    pub password: String,
    #[serde(default)]
    pub auth_login_domain: Option<String>,
    #[serde(default)]
    pub login_msg_ack: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    pub part_of_group: bool,
}

/// Logs in; the returned `sessionID` goes in the `auth` header of every later request.
#[utoipa::path(post, path = "/rest/login-sessions", tag = "login-sessions",
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn login(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("INVALID_JSON", e.body_text()))?;
    // Right after a first start the Administrator's password may still be being hashed.
    st.accounts.wait().await;
    let client = peer.ip();
    if !st.limiter.allowed(client, &req.user_name) {
        st.audit
            .login(&req.user_name, client, "refused: too many failed attempts");
        return Err(ApiError::TooManyRequests(format!(
            "Too many failed logins for {} from {client}.",
            req.user_name
        )));
    }
    let users = st.users.clone();
    let (name, password) = (req.user_name.clone(), req.password.clone());
    let user = tokio::task::spawn_blocking(move || users.verify(&name, &password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let Some(user) = user else {
        st.limiter.failed(client, &req.user_name);
        st.audit.login(
            &req.user_name,
            client,
            "failed: wrong user name or password",
        );
        return Err(ApiError::Unauthorized(
            "Wrong user name or password.".into(),
        ));
    };
    st.limiter.succeeded(client, &req.user_name);
    st.audit.login(&user.user_name, client, "success");
    let session = st.sessions.open(&user.user_name, user.role);
    Ok(Json(LoginResponse {
        session_id: session.token,
        part_of_group: false,
    }))
}

/// Renews the session in the `auth` header (resets its idle timer).
#[utoipa::path(put, path = "/rest/login-sessions", tag = "login-sessions",
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody)))]
pub async fn renew(ctx: Ctx) -> Result<Json<LoginResponse>, ApiError> {
    let s = ctx
        .session
        .ok_or_else(|| ApiError::Unauthorized("No session.".into()))?;
    Ok(Json(LoginResponse {
        session_id: s.token,
        part_of_group: false,
    }))
}

/// Ends the session in the `auth` header.
#[utoipa::path(delete, path = "/rest/login-sessions", tag = "login-sessions",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(st): State<Arc<AppState>>, headers: HeaderMap) -> StatusCode {
    if let Some(token) = headers.get("auth").and_then(|v| v.to_str().ok()) {
        st.sessions.close(token);
    }
    StatusCode::NO_CONTENT
}
