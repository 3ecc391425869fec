//! The collections the appliance manages, each once: its record kind, its URI path (records
//! refer to each other by URI), HPE's category and type names (tasks and usage lists carry
//! the category; inputs may name the type) and the noun messages use.

use crate::meta::Kind;

/// One collection of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    pub kind: Kind,
    /// `/rest/plan-scripts`.
    pub path: &'static str,
    /// HPE's category: `plan-scripts`, `oe-build-plans`, ...
    pub category: &'static str,
    /// Human name for messages: "plan script".
    pub noun: &'static str,
    /// HPE's `type` for API versions before 500, and from 500 on.
    pub type_v3: &'static str,
    pub type_v5: &'static str,
    /// `type` of the collection envelope.
    pub list_type: &'static str,
}

impl Collection {
    pub fn uri(&self, id: &str) -> String {
        format!("{}/{id}", self.path)
    }

    /// The id in `uri` if it is one of this collection's URIs.
    pub fn id_in<'a>(&self, uri: &'a str) -> Option<&'a str> {
        uri.strip_prefix(self.path)?
            .strip_prefix('/')
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }
}

pub const PLAN_SCRIPTS: Collection = Collection {
    kind: Kind::PlanScript,
    path: "/rest/plan-scripts",
    category: "plan-scripts",
    noun: "plan script",
    type_v3: "PlanScript",
    type_v5: "PlanScript",
    list_type: "PlanScriptCollection",
};

pub const BUILD_PLANS: Collection = Collection {
    kind: Kind::BuildPlan,
    path: "/rest/build-plans",
    category: "oe-build-plans",
    noun: "build plan",
    type_v3: "OeBuildPlan",
    type_v5: "OeBuildPlanV5",
    list_type: "OeBuildPlanCollection",
};

pub const DEPLOYMENT_PLANS: Collection = Collection {
    kind: Kind::DeploymentPlan,
    path: "/rest/deployment-plans",
    category: "oe-deployment-plans",
    noun: "deployment plan",
    type_v3: "OEDeploymentPlan",
    type_v5: "OEDeploymentPlanV5",
    list_type: "OEDeploymentPlanCollection",
};

pub const GOLDEN_IMAGES: Collection = Collection {
    kind: Kind::GoldenImage,
    path: "/rest/golden-images",
    category: "golden-images",
    noun: "golden image",
    type_v3: "GoldenImage",
    type_v5: "GoldenImage",
    list_type: "GoldenImageCollection",
};

pub const OS_VOLUMES: Collection = Collection {
    kind: Kind::OsVolume,
    path: "/rest/os-volumes",
    category: "os-volumes",
    noun: "OS volume",
    type_v3: "OeVolume",
    type_v5: "OeVolume",
    list_type: "OeVolumeCollection",
};

pub const ARTIFACT_BUNDLES: Collection = Collection {
    kind: Kind::ArtifactBundle,
    path: "/rest/artifact-bundles",
    category: "artifact-bundles",
    noun: "artifact bundle",
    type_v3: "ArtifactsBundle",
    type_v5: "ArtifactsBundle",
    list_type: "ArtifactsBundleCollection",
};

pub const DEPLOYMENT_GROUPS: Collection = Collection {
    kind: Kind::DeploymentGroup,
    path: "/rest/deployment-groups",
    category: "deployment-groups",
    noun: "deployment group",
    type_v3: "DeploymentGroup",
    type_v5: "DeploymentGroup",
    list_type: "DeploymentGroupCollection",
};

pub const SERVER_HARDWARE: Collection = Collection {
    kind: Kind::ServerHardware,
    path: "/rest/server-hardware",
    category: "server-hardware",
    noun: "server hardware",
    type_v3: "server-hardware-7",
    type_v5: "server-hardware-7",
    list_type: "server-hardware-list-7",
};

pub const SERVER_PROFILES: Collection = Collection {
    kind: Kind::ServerProfile,
    path: "/rest/server-profiles",
    category: "server-profiles",
    noun: "server profile",
    type_v3: "ServerProfileV12",
    type_v5: "ServerProfileV12",
    list_type: "ServerProfileListV12",
};

/// Every collection whose records other records name by URI.
pub const ALL: [&Collection; 9] = [
    &PLAN_SCRIPTS,
    &BUILD_PLANS,
    &DEPLOYMENT_PLANS,
    &GOLDEN_IMAGES,
    &OS_VOLUMES,
    &ARTIFACT_BUNDLES,
    &DEPLOYMENT_GROUPS,
    &SERVER_HARDWARE,
    &SERVER_PROFILES,
];

/// The collection of records of `kind`.
pub fn of_kind(kind: Kind) -> Option<&'static Collection> {
    ALL.into_iter().find(|c| c.kind == kind)
}

/// The record a URI names: its kind and id.
pub fn parse_uri(uri: &str) -> Option<(Kind, &str)> {
    ALL.into_iter()
        .find_map(|c| c.id_in(uri).map(|id| (c.kind, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_exactly_one_record() {
        assert_eq!(
            parse_uri("/rest/plan-scripts/abc"),
            Some((Kind::PlanScript, "abc"))
        );
        assert_eq!(parse_uri("/rest/plan-scripts/"), None);
        assert_eq!(parse_uri("/rest/plan-scripts/a/b"), None);
        assert_eq!(parse_uri("/rest/plan-scriptsx/a"), None);
        for c in ALL {
            assert_eq!(of_kind(c.kind), Some(c));
            assert_eq!(parse_uri(&c.uri("x")), Some((c.kind, "x")));
        }
    }
}
