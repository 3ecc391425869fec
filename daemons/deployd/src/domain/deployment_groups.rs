//! Deployment groups: read-only. A deployment group stands for the appliances a backup belongs
//! to; this appliance has exactly one, `default`, created on first start with an id that never
//! changes (clients pass its URI as `deploymentGroupURI`).

use serde_json::json;

use super::collection::DEPLOYMENT_GROUPS;
use crate::meta::{Expect, MetaError, MetaStore, Op};
use crate::services::clock::now_iso;

/// Name of the appliance's one group.
pub const DEFAULT_GROUP: &str = "default";

/// The write that creates the `default` group, unless a group exists.
pub fn default_group(meta: &dyn MetaStore) -> Result<Option<Op>, MetaError> {
    if meta
        .list(DEPLOYMENT_GROUPS.kind)?
        .into_iter()
        .next()
        .is_some()
    {
        return Ok(None);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    Ok(Some(Op::Put {
        kind: DEPLOYMENT_GROUPS.kind,
        id: id.clone(),
        value: json!({
            "name": DEFAULT_GROUP,
            "description": "The deployment group of this appliance",
            "status": "OK",
            "state": null,
            "created": now,
            "modified": now,
        }),
        expect: Expect::Absent,
    }))
}
