//! Which records must have unique names, which references must resolve, and who uses what
//! (the 409s of a delete).
//!
//! A reference that must resolve is one whose target cannot be deleted while it exists: a
//! build plan's plan scripts, a deployment plan's build plan and golden image, a server
//! profile's deployment plan and compute module. [`super::records::Change`] keeps one index
//! record per such reference and per unique name, in the same transaction as the records, so
//! these rules hold under concurrency and on etcd.

use serde::Serialize;
use serde_json::Value;

use super::collection::{self, Collection};
use super::error::DomainError;
use crate::meta::{Kind, MetaError, MetaStore};

/// The name that must be unique among records of `kind`, if it has one.
pub fn unique_name(kind: Kind, doc: &Value) -> Option<&str> {
    match kind {
        Kind::PlanScript
        | Kind::BuildPlan
        | Kind::DeploymentPlan
        | Kind::GoldenImage
        | Kind::OsVolume
        | Kind::ServerHardware
        | Kind::ServerProfile => doc["name"].as_str(),
        // Backups are named by their time and are not artifact bundles' namesakes.
        Kind::ArtifactBundle if doc["backup"].as_bool() != Some(true) => doc["name"].as_str(),
        Kind::ArtifactBundle
        | Kind::DeploymentGroup
        | Kind::Task
        | Kind::User
        | Kind::Name
        | Kind::Reference
        | Kind::Schema
        | Kind::Session => None,
    }
}

/// The references of a record of `kind` that must resolve, as URIs.
fn reference_uris(kind: Kind, doc: &Value) -> Vec<&str> {
    match kind {
        Kind::BuildPlan => doc["buildStep"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|step| step["planScriptUri"].as_str())
            .collect(),
        Kind::DeploymentPlan => [&doc["oeBuildPlanURI"], &doc["goldenImageURI"]]
            .into_iter()
            .filter_map(Value::as_str)
            .collect(),
        Kind::ServerProfile => [
            &doc["osDeploymentSettings"]["osDeploymentPlanUri"],
            &doc["serverHardwareUri"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .collect(),
        _ => Vec::new(),
    }
}

/// The records a record of `kind` refers to and that must stay while it does, each once.
pub fn references(kind: Kind, doc: &Value) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = Vec::new();
    for uri in reference_uris(kind, doc) {
        if let Some((k, id)) = collection::parse_uri(uri)
            && !out.iter().any(|(ok, oid)| *ok == k && oid == id)
        {
            out.push((k, id.to_string()));
        }
    }
    out
}

/// Id of the name-index record of `name` among records of `kind`.
pub fn name_key(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.prefix())
}

/// Prefix of the ids of every reference to a record.
pub fn referrers_prefix(kind: Kind, id: &str) -> String {
    format!("{}/{id}/", kind.prefix())
}

/// Id of the index record of "`source` refers to `target`".
pub fn reference_key(target: (Kind, &str), source: (Kind, &str)) -> String {
    format!(
        "{}{}/{}",
        referrers_prefix(target.0, target.1),
        source.0.prefix(),
        source.1
    )
}

/// A resource that refers to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsedBy {
    pub category: String,
    pub name: String,
    pub uri: String,
}

/// The URIs a record of `kind` refers to, whether or not they must resolve: what "used by"
/// lists show.
fn uses(kind: Kind, doc: &Value) -> Vec<&str> {
    match kind {
        Kind::ServerProfile => [
            &doc["osDeploymentSettings"]["osDeploymentPlanUri"],
            &doc["osDeploymentSettings"]["osVolumeUri"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .collect(),
        _ => reference_uris(kind, doc),
    }
}

/// Every build plan, deployment plan and server profile that refers to record `id` of
/// `kind`, by kind and then id.
///
/// This reads the records themselves rather than the reference index, so it also sees
/// records written behind deployd's back (a store edited offline); the index is what makes a
/// delete racing a new reference safe (see [`super::records::Change::delete`]).
pub fn users_of(meta: &dyn MetaStore, kind: Kind, id: &str) -> Result<Vec<UsedBy>, MetaError> {
    let Some(target) = collection::of_kind(kind) else {
        return Ok(Vec::new());
    };
    let uri = target.uri(id);
    let mut out = Vec::new();
    for user in [Kind::BuildPlan, Kind::DeploymentPlan, Kind::ServerProfile] {
        for r in meta.list(user)? {
            if uses(user, &r.value).contains(&uri.as_str()) {
                out.push(UsedBy {
                    category: user.prefix().to_string(),
                    name: r.value["name"].as_str().unwrap_or(&r.id).to_string(),
                    uri: format!("/rest/{}/{}", user.prefix(), r.id),
                });
            }
        }
    }
    Ok(out)
}

/// A 409 naming every user if anything refers to record `id` (named `name`) of `c`.
pub fn refuse_if_used(
    meta: &dyn MetaStore,
    c: &Collection,
    name: &str,
    id: &str,
) -> Result<(), DomainError> {
    let users = users_of(meta, c.kind, id)?;
    if users.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = users
        .iter()
        .map(|u| format!("{} {:?} ({})", u.category, u.name, u.uri))
        .collect();
    Err(DomainError::conflict(
        "RESOURCE_IN_USE",
        format!("The {} {name:?} is in use by {}.", c.noun, list.join(", ")),
        "Remove the references to it first.",
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_parsed_from_uris_once_each() {
        let bp = json!({"buildStep": [
            {"planScriptUri": "/rest/plan-scripts/a"},
            {"planScriptUri": "/rest/plan-scripts/a"},
            {"planScriptUri": "/rest/plan-scripts/b"},
            {"planScriptUri": "nonsense"}]});
        assert_eq!(
            references(Kind::BuildPlan, &bp),
            [
                (Kind::PlanScript, "a".into()),
                (Kind::PlanScript, "b".into())
            ]
        );
        let sp = json!({"serverHardwareUri": "/rest/server-hardware/h",
                        "osDeploymentSettings": {"osDeploymentPlanUri": null,
                                                 "osVolumeUri": "/rest/os-volumes/v"}});
        assert_eq!(
            references(Kind::ServerProfile, &sp),
            [(Kind::ServerHardware, "h".into())]
        );
        assert_eq!(
            reference_key((Kind::GoldenImage, "g"), (Kind::DeploymentPlan, "d")),
            "golden-images/g/deployment-plans/d"
        );
        assert_eq!(
            unique_name(Kind::ArtifactBundle, &json!({"name": "b", "backup": true})),
            None
        );
        assert_eq!(unique_name(Kind::Task, &json!({"name": "Create"})), None);
    }
}
