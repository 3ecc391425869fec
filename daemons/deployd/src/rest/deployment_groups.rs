//! `/rest/deployment-groups`: read-only. The appliance has exactly one group, `default`
//! (see [`crate::domain::deployment_groups`]). Create, update and delete answer 405, as the
//! HPE SDKs mark them unavailable.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::crud::{self, Resource};
use crate::domain::collection::{Collection, DEPLOYMENT_GROUPS};
use crate::state::AppState;

/// The deployment groups, served by the generic list and read.
#[derive(Debug)]
pub struct DeploymentGroups;

impl Resource for DeploymentGroups {
    const COLLECTION: &'static Collection = &DEPLOYMENT_GROUPS;
    const PLURAL: &'static str = "deployment groups";
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        // Other methods get the router's 405 with HPE's error body: groups are read-only.
        .route(
            "/rest/deployment-groups",
            get(crud::list::<DeploymentGroups>),
        )
        .route(
            "/rest/deployment-groups/{id}",
            get(crud::read::<DeploymentGroups>),
        )
}
