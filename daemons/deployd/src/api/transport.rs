//! HPE's transport conventions, applied to every request before it reaches a handler.
//!
//! 1. `X-API-Version`: absent = 300; unsupported = 412 (not checked on `/rest/version`).
//! 2. Authentication: the `auth` header must hold a live session ID, except for
//!    `GET /rest/version` and `POST /rest/login-sessions`; otherwise 401.
//! 3. Roles: `Read only` sessions may only read (and end their own session); otherwise 403.
//! 4. Audit: every request that can change something is logged with who, what, when, result.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::version::{self, ApiVersion};
use crate::auth::{Role, Session};
use crate::domain::DomainError;
use crate::state::AppState;

/// What every handler knows about the caller.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub version: ApiVersion,
    /// `None` only on the public endpoints.
    pub session: Option<Session>,
}

impl Ctx {
    /// The user name for audit and task ownership.
    pub fn user(&self) -> &str {
        self.session
            .as_ref()
            .map_or("anonymous", |s| s.user.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| ApiError::internal("request context missing"))
    }
}

fn is_public(method: &Method, path: &str) -> bool {
    (path == "/rest/version" && method == Method::GET)
        || (path == "/rest/login-sessions" && method == Method::POST)
        // A member joining a pair: its join token is its credential.
        || (path == clusterd::pairing::JOIN_PATH && method == Method::POST)
}

/// Changes to this appliance alone, not to the pair's store: a standby takes them too
/// (logins and logouts, its own power, joining and leaving the pair).
fn is_local(path: &str) -> bool {
    path == "/rest/login-sessions"
        || path == "/rest/appliance/shutdown"
        || path.starts_with("/rest/appliance/pair")
}

fn may(role: Role, method: &Method, path: &str) -> bool {
    match role {
        Role::InfrastructureAdministrator => true,
        Role::ReadOnly => {
            matches!(*method, Method::GET | Method::HEAD)
                || path == "/rest/login-sessions"
                // Checking text changes nothing.
                || (path == "/rest/plan-scripts/lint" && *method == Method::POST)
                // Their own password (the handler checks whose).
                || (path == "/rest/users/changePassword" && *method == Method::PUT)
        }
    }
}

/// The transport middleware (see the module documentation).
pub async fn transport(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(uri) = join_repeated_filters(req.uri()) {
        *req.uri_mut() = uri;
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let version = if path == "/rest/version" {
        ApiVersion(version::DEFAULT_VERSION)
    } else {
        match version::from_headers(req.headers()) {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        }
    };
    let session = if is_public(&method, &path) {
        None
    } else {
        let token = req
            .headers()
            .get("auth")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(session) = st.sessions.touch(token) else {
            let msg = if token.is_empty() {
                "The request has no auth header: log in first."
            } else {
                "The session is not valid or has expired: log in again."
            };
            return ApiError::Unauthorized(msg.into()).into_response();
        };
        if !may(session.role, &method, &path) {
            let resp = ApiError::Forbidden(format!(
                "User {} has the Read only role and cannot {method} {path}.",
                session.user
            ))
            .into_response();
            st.audit.record(
                &session.user,
                peer.ip(),
                method.as_str(),
                uri.path(),
                resp.status().as_u16(),
            );
            return resp;
        }
        Some(session)
    };
    let user = session.as_ref().map(|s| s.user.clone());
    // On a pair, changes go to the active node only (logins and logouts are not changes).
    if !matches!(method, Method::GET | Method::HEAD)
        && !is_local(&path)
        && let Some(why) = st.services.cluster.refusal()
    {
        drain(req.into_body()).await;
        return ApiError::Domain(DomainError::NotActive(why)).into_response();
    }
    if let Some(len) = oversized_json(&req) {
        let resp = ApiError::PayloadTooLarge(format!(
            "The request body has {len} bytes; JSON bodies are limited to {} bytes.",
            super::JSON_BODY_LIMIT
        ))
        .into_response();
        drain(req.into_body()).await;
        return resp;
    }
    req.extensions_mut().insert(Ctx { version, session });
    let mut resp = next.run(req).await;
    // On a pair whose store does not answer, reads come from what this node last saw.
    if matches!(method, Method::GET | Method::HEAD) && st.services.cluster.reads_stale() {
        resp.headers_mut().insert(
            axum::http::header::WARNING,
            axum::http::HeaderValue::from_static(
                "110 - \"Response is Stale: the cluster store of the pair does not answer; \
                 this is what this appliance last saw\"",
            ),
        );
    }
    if !matches!(method, Method::GET | Method::HEAD) && path != "/rest/login-sessions" {
        st.audit.record(
            user.as_deref().unwrap_or("anonymous"),
            peer.ip(),
            method.as_str(),
            uri.path(),
            resp.status().as_u16(),
        );
    }
    resp
}

/// OneView accepts `filter` several times (ANDed), and the HPE Python SDK sends a list of
/// filters that way; the query extractor takes one value, so repeated filters are joined
/// with a newline (`%0A`), which `collection` splits again.
fn join_repeated_filters(uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    let (filters, rest): (Vec<&str>, Vec<&str>) =
        query.split('&').partition(|p| p.starts_with("filter="));
    if filters.len() < 2 {
        return None;
    }
    let joined = filters
        .iter()
        .map(|f| &f["filter=".len()..])
        .collect::<Vec<_>>()
        .join("%0A");
    let mut parts = rest;
    let filter = format!("filter={joined}");
    parts.push(&filter);
    format!("{}?{}", uri.path(), parts.join("&")).parse().ok()
}

/// The declared length of a non-upload body over the JSON limit.
fn oversized_json(req: &Request) -> Option<u64> {
    let multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/"));
    let len = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    (!multipart && len > super::JSON_BODY_LIMIT as u64).then_some(len)
}

/// Reads and discards a refused body (up to a bound) so the client, still sending, gets to
/// read our 413 instead of a reset connection.
async fn drain(body: axum::body::Body) {
    const DRAIN_LIMIT: usize = 64 << 20;
    let mut body = body.into_data_stream();
    let mut seen = 0;
    while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut body).await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

/// Unknown URI.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("No resource at {}.", uri.path()))
}

/// Known URI, unsupported method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not supported on {}.", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_filters_are_joined() {
        let uri: Uri = "/rest/x?start=0&filter=a%3D1&count=-1&filter=b%3D2"
            .parse()
            .unwrap();
        let joined = join_repeated_filters(&uri).unwrap();
        assert_eq!(
            joined.to_string(),
            "/rest/x?start=0&count=-1&filter=a%3D1%0Ab%3D2"
        );
        let one: Uri = "/rest/x?filter=a%3D1".parse().unwrap();
        assert!(join_repeated_filters(&one).is_none());
    }
}
