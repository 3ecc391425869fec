//! Pairing two appliances (and a witness) into a highly available pair, and unpairing:
//!
//! * `GET /rest/appliance/pair`: this appliance's state (single, pairing, paired).
//! * `POST /rest/appliance/pair` on the first appliance: one-time join tokens, shown once.
//! * `POST /rest/appliance/pair/join` on the other appliance: joins with its token.
//! * `POST /rest/appliance/pair/join-requests`: the join itself, appliance to appliance (the
//!   token is the credential; no session).
//! * `DELETE /rest/appliance/pair?confirm=true`: back to a single appliance, with every
//!   artifact.
//!
//! The work is `services::pairing`'s (and the protocol clusterd's).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clusterd::config::ClusterConfig;
use clusterd::pairing::{JoinRequest, Pending};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::body::parse_body;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::services::pairing::{self, Join, Plan};
use crate::state::AppState;

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn member_view(cfg: &ClusterConfig) -> Vec<Value> {
    cfg.members
        .iter()
        .map(|m| json!({"name": m.name, "role": m.role, "address": m.address}))
        .collect()
}

/// This appliance's pairing state.
#[utoipa::path(get, path = "/rest/appliance/pair", tag = "appliance",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn get_pair(State(st): State<Arc<AppState>>, _ctx: Ctx) -> Result<Json<Value>, ApiError> {
    let dir = &st.config.cluster_state_dir;
    let cfg = ClusterConfig::load(dir).map_err(ApiError::internal)?;
    let pending = Pending::load(dir)?;
    let mut view = match &cfg {
        Some(cfg) => json!({
            "state": "Paired",
            "clusterId": cfg.cluster_id,
            "me": cfg.me,
            "members": member_view(cfg),
            "virtualIp": cfg.virtual_ip.as_ref().map(|v| format!("{}/{}", v.address, v.prefix_len)),
        }),
        None if pending.is_some() => json!({"state": "Pairing"}),
        None => json!({"state": "Single"}),
    };
    if let Some(p) = pending {
        view["pendingClusterId"] = json!(p.ca.cluster_id);
        view["witnessJoined"] = json!(false);
        view["tokensExpireAt"] = json!(
            time::OffsetDateTime::from_unix_timestamp(p.expires_at())
                .map(rfc3339)
                .unwrap_or_default()
        );
    }
    view["category"] = json!("appliance-pair");
    view["uri"] = json!("/rest/appliance/pair");
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairInput {
    /// This appliance's address on the enclosure network.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// The management virtual IP with its prefix length, e.g. `10.0.0.100/24`.
    pub virtual_ip: String,
    /// The address of the host that runs the witness (`clusterd witness`).
    #[schema(value_type = String)]
    pub witness_address: IpAddr,
    /// The interface the virtual IP goes on (default: the one holding `address`).
    pub interface: Option<String>,
    /// This appliance's name in the pair (default: its host name).
    pub name: Option<String>,
    /// This appliance's storage address with its prefix length, e.g. `10.0.0.11/24`: the
    /// floating address its compute modules boot their OS volumes from (held by the other
    /// node while this one is down). With it the pair replicates OS volumes, and the other
    /// appliance gives its own when it joins.
    pub storage_ip: Option<String>,
    /// The interface the storage address goes on (default: the one holding `address`).
    pub storage_interface: Option<String>,
}

/// Starts a pairing on this appliance (the one whose artifacts the pair keeps): two
/// one-time join tokens, valid 10 minutes, shown only in this answer.
#[utoipa::path(post, path = "/rest/appliance/pair", tag = "appliance", request_body = PairInput,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn start_pairing(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: PairInput = parse_body(&body)?;
    let api_port = st.config.api_port;
    let address = input.address;
    let offer = pairing::offer(
        &st.config.appliance(),
        Plan {
            address,
            virtual_ip: input.virtual_ip,
            witness_address: input.witness_address,
            interface: input.interface,
            name: input.name,
            storage_ip: input.storage_ip,
            storage_interface: input.storage_interface,
        },
    )?;
    tracing::warn!(
        "{} started pairing {} (tokens valid until {})",
        ctx.user(),
        offer.cluster_id,
        rfc3339(offer.expires_at)
    );
    let api = format!("https://{}", std::net::SocketAddr::new(address, api_port));
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "clusterId": offer.cluster_id,
            "joinToken": offer.node_token.to_string(),
            "witnessToken": offer.witness_token.to_string(),
            "expiresAt": rfc3339(offer.expires_at),
            "joinWith": {
                "on the other appliance": format!(
                    "POST /rest/appliance/pair/join {{\"pairWith\": \"{api}\", \"token\": \"<joinToken>\", \"address\": \"<its address>\"}}"
                ),
                "on the witness host": format!(
                    "clusterd witness join --api {api} --token <witnessToken> --address {}",
                    "<its address>"
                ),
            },
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinInput {
    /// The first appliance's API: `host`, `host:port` or `https://host:port`.
    pub pair_with: String,
    /// The join token it showed.
    pub token: String,
    /// This appliance's address on the enclosure network.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// This appliance's name in the pair (default: its host name).
    pub name: Option<String>,
    /// This appliance's storage address, e.g. `10.0.0.12/24` (required when the first
    /// appliance gave one).
    pub storage_ip: Option<String>,
    /// The interface the storage address goes on (default: the one holding `address`).
    pub storage_interface: Option<String>,
}

/// Joins the pair being made on another appliance. This appliance's own artifacts are put
/// aside (the pair's are the first appliance's); it restarts as a pair member.
#[utoipa::path(post, path = "/rest/appliance/pair/join", tag = "appliance", request_body = JoinInput,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn join(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: JoinInput = parse_body(&body)?;
    let cfg = pairing::join(
        &st.config.appliance(),
        Join {
            pair_with: input.pair_with,
            token: input.token,
            address: input.address,
            name: input.name,
            storage_ip: input.storage_ip,
            storage_interface: input.storage_interface,
        },
    )
    .await?;
    tracing::warn!(
        "{} joined this appliance to pair {}",
        ctx.user(),
        cfg.cluster_id
    );
    Ok(Json(json!({
        "clusterId": cfg.cluster_id,
        "me": cfg.me,
        "members": member_view(&cfg),
        "message": "Joined. The appliance restarts as a member of the pair.",
    })))
}

/// A member's join request (appliance to appliance; the join token is its credential).
#[utoipa::path(post, path = "/rest/appliance/pair/join-requests", tag = "appliance",
    request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn join_request(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: JoinRequest = parse_body(&body)?;
    let answer = pairing::admit(&st.config.appliance(), &req).map_err(|e| {
        tracing::warn!(
            "a join request from {} ({}) was refused: {e}",
            req.name,
            req.address
        );
        ApiError::from(e)
    })?;
    serde_json::to_value(answer)
        .map(Json)
        .map_err(ApiError::internal)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UnpairQuery {
    /// Must be `true`: unpairing restarts the appliance.
    pub confirm: Option<bool>,
}

/// Returns this node to a single appliance, keeping every artifact of the pair.
#[utoipa::path(delete, path = "/rest/appliance/pair", tag = "appliance", params(UnpairQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn unpair(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<UnpairQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.confirm != Some(true) {
        return Err(ApiError::bad_request(
            "CONFIRMATION_REQUIRED",
            "Unpairing takes this appliance out of the pair and restarts it: repeat the \
             request with ?confirm=true.",
        ));
    }
    if st.services.cluster.reads_stale() {
        return Err(clusterd::pairing::PairError::Unreachable(
            "the pair's store does not answer, so its records cannot be copied: unpair when \
             the pair has quorum"
                .into(),
        )
        .into());
    }
    let kept = pairing::unpair(&st.config.appliance(), st.services.meta.as_ref()).await?;
    tracing::warn!(
        "{} unpaired this appliance ({kept} records kept)",
        ctx.user()
    );
    Ok(Json(json!({
        "recordsKept": kept,
        "message": "Unpaired. The appliance restarts as a single appliance.",
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_join_route_is_where_members_send_their_requests() {
        let routes = include_str!("mod.rs");
        assert!(routes.contains(&format!("\"{}\"", clusterd::pairing::JOIN_PATH)));
    }
}
