//! `/rest/server-profiles`: OneView's server profiles, with the OS deployment settings that
//! make this appliance deploy an OS volume for a compute module.
//!
//! Creating a profile with `osDeploymentSettings.osDeploymentPlanUri` answers 202 with the
//! deploy task; a bad attribute value is a 400 naming every problem. Changing the plan or a
//! value re-deploys (202, "Update"); deleting the profile releases its OS volume (202,
//! "Delete"). Password values are masked on reads.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

use super::crud::{self, Resource};
use crate::api::body::{if_match, parse_body};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::task::accepted;
use crate::api::transport::Ctx;
use crate::domain::collection::{Collection, SERVER_PROFILES};
use crate::domain::deploy::profile;
use crate::domain::server_profiles::{self, ServerProfileInput};
use crate::meta::Record;
use crate::state::AppState;

/// The server profiles, served by the generic list and read.
#[derive(Debug)]
pub struct ServerProfiles;

impl Resource for ServerProfiles {
    const COLLECTION: &'static Collection = &SERVER_PROFILES;
    const PLURAL: &'static str = "server profiles";

    fn render(st: &AppState, r: &Record, ctx: &Ctx) -> Value {
        let mut doc = crud::render(&SERVER_PROFILES, r, ctx.version);
        server_profiles::mask_secrets(&*st.services.meta, &mut doc);
        doc
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/server-profiles",
            get(crud::list::<ServerProfiles>).post(create),
        )
        .route(
            "/rest/server-profiles/{id}",
            get(crud::read::<ServerProfiles>).put(update).delete(remove),
        )
}

/// Creates a server profile; with a deployment plan, 202 with the deploy task ("Create").
#[utoipa::path(post, path = "/rest/server-profiles", tag = "server-profiles",
    request_body = ServerProfileInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: ServerProfileInput = parse_body(&body)?;
    let task = profile::create(&st.services, ctx.user(), input)?;
    Ok(accepted(&st.services.tasks, &task))
}

/// Updates a server profile; a changed deployment plan or attribute value re-deploys onto a
/// new OS volume. 202 with the task ("Update").
#[utoipa::path(put, path = "/rest/server-profiles/{id}", tag = "server-profiles",
    request_body = ServerProfileInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn update(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = server_profiles::current(s, &id, &if_match(&headers))?;
    let input: ServerProfileInput = parse_body(&body)?;
    let task = profile::update(s, ctx.user(), &current, input).await?;
    Ok(accepted(&s.tasks, &task))
}

/// Deletes a server profile: its OS volume's export is removed and, unless `keepOsVolume`,
/// the volume. 202 with a completed task named "Delete".
#[utoipa::path(delete, path = "/rest/server-profiles/{id}", tag = "server-profiles",
    responses((status = 202, description = "TaskResourceV2 named Delete", body = Object),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = profile::deletable(s, ctx.user(), &id, &if_match(&headers)).await?;
    let task = profile::delete(s, ctx.user(), &current).await?;
    Ok(accepted(&s.tasks, &task))
}
