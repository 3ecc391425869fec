//! Alerts in OneView's shape: raised when a condition appears, cleared by themselves when it
//! goes, kept (cleared) for the operator to read.

use serde::{Deserialize, Serialize};

/// How many cleared alerts are kept.
const KEEP_CLEARED: usize = 100;

/// A condition clusterd watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Condition {
    /// The other node's heartbeat lease expired.
    NodeUnavailable(String),
    /// The pair cannot survive one more failure.
    NotHighlyAvailable,
    /// The witness's etcd does not answer.
    WitnessUnreachable(String),
    /// A member of the cluster store does not answer, or the store has no quorum here.
    StoreDegraded(String),
    /// The peer's copies of this node's volumes are outdated: they are not redundant.
    StorageNotRedundant(String),
    /// The peer's copies are being brought up to date.
    Resyncing(String),
    /// Volumes the peer could not keep up (its disk full...), written on one node only.
    VolumesDegraded(usize),
    /// A dead node's group, which this node cannot serve: its copy is outdated.
    StorageGroupUnavailable(String),
    /// Both nodes wrote a group at one epoch: refused, never merged.
    SplitBrain(String),
}

fn storage_resource() -> AssociatedResource {
    AssociatedResource {
        resource_name: "OS volume storage".into(),
        resource_uri: "/rest/appliance/storage".into(),
        resource_category: "appliance-storage".into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociatedResource {
    pub resource_name: String,
    pub resource_uri: String,
    pub resource_category: String,
}

/// One alert, with OneView's field names (`/rest/alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub uri: String,
    /// Critical, Warning, OK, Unknown (OneView's severities).
    pub severity: String,
    pub description: String,
    pub corrective_action: String,
    /// Active or Cleared.
    pub alert_state: String,
    pub associated_resource: AssociatedResource,
    pub health_category: String,
    pub alert_type_id: String,
    pub created: String,
    pub modified: String,
    pub cleared_time: Option<String>,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn node_resource(name: &str) -> AssociatedResource {
    AssociatedResource {
        resource_name: name.into(),
        resource_uri: format!("/rest/appliance/nodes/{name}"),
        resource_category: "appliance-nodes".into(),
    }
}

impl Condition {
    fn describe(
        &self,
    ) -> (
        &'static str,
        &'static str,
        String,
        String,
        AssociatedResource,
    ) {
        match self {
            Condition::NodeUnavailable(n) => (
                "Critical",
                "Cluster.NodeUnavailable",
                format!("Appliance node {n} is unavailable: its heartbeat lease expired."),
                format!(
                    "Check that {n} is powered on and connected to the enclosure network. It \
                     rejoins the pair by itself when it is back."
                ),
                node_resource(n),
            ),
            Condition::NotHighlyAvailable => (
                "Critical",
                "Cluster.NotHighlyAvailable",
                "The appliance pair is not highly available: one more failure stops \
                 management."
                    .into(),
                "Restore the unavailable member of the pair (see the other active alerts).".into(),
                AssociatedResource {
                    resource_name: "appliance pair".into(),
                    resource_uri: "/rest/appliance/nodes".into(),
                    resource_category: "appliance-nodes".into(),
                },
            ),
            Condition::WitnessUnreachable(n) => (
                "Warning",
                "Cluster.WitnessUnreachable",
                format!("The cluster witness {n} does not answer."),
                format!(
                    "Check the host that runs the witness ({n}) and its network; the pair \
                     keeps working while both nodes are up."
                ),
                node_resource(n),
            ),
            Condition::StoreDegraded(why) => (
                "Warning",
                "Cluster.StoreDegraded",
                format!("The cluster store is degraded: {why}."),
                "Restore the member that does not answer; writes continue while two of the \
                 three members answer."
                    .into(),
                AssociatedResource {
                    resource_name: "cluster store".into(),
                    resource_uri: "/rest/appliance/nodes".into(),
                    resource_category: "appliance-nodes".into(),
                },
            ),
            Condition::StorageNotRedundant(n) => (
                "Critical",
                "Storage.NodeUnavailable",
                format!(
                    "Storage node {n} is unavailable: OS volumes are written on this node \
                     only, without redundancy."
                ),
                format!(
                    "Bring {n} back (power, enclosure network). Its copies are resynced by \
                     themselves when it returns."
                ),
                node_resource(n),
            ),
            Condition::Resyncing(n) => (
                "Warning",
                "Storage.ResyncInProgress",
                format!("The OS volumes' copies on {n} are being resynced."),
                "Nothing to do: the alert clears when the resync ends (progress: \
                 GET /rest/appliance/storage)."
                    .into(),
                storage_resource(),
            ),
            Condition::VolumesDegraded(count) => (
                "Critical",
                "Storage.VolumesDegraded",
                format!(
                    "{count} OS volume(s) are written on one node only: the other node could \
                     not apply their writes."
                ),
                "Free space on the other node's data disk (GET /rest/appliance/storage lists \
                 the volumes); they are resynced when it takes writes again."
                    .into(),
                storage_resource(),
            ),
            Condition::StorageGroupUnavailable(n) => (
                "Critical",
                "Storage.GroupUnavailable",
                format!(
                    "The OS volumes served by {n} are unavailable: {n} is down, and this \
                     node's copies of them lack writes made while it was away."
                ),
                format!(
                    "Bring {n} back: it serves them again, and this node's copies are \
                     resynced."
                ),
                node_resource(n),
            ),
            Condition::SplitBrain(n) => (
                "Critical",
                "Storage.SplitBrain",
                format!(
                    "Split brain on the OS volumes of {n}: both nodes wrote them as their \
                     owner. The other node's writes were refused; nothing was merged."
                ),
                format!(
                    "Keep the node that serves the compute modules of {n}; restart the other \
                     one, whose copies are then resynced from it."
                ),
                storage_resource(),
            ),
        }
    }

    /// A stable id: the same condition on the same resource is one alert.
    fn key(&self) -> String {
        match self {
            Condition::NodeUnavailable(n) => format!("node-unavailable-{n}"),
            Condition::NotHighlyAvailable => "not-highly-available".into(),
            Condition::WitnessUnreachable(n) => format!("witness-unreachable-{n}"),
            Condition::StoreDegraded(_) => "store-degraded".into(),
            Condition::StorageNotRedundant(n) => format!("storage-not-redundant-{n}"),
            Condition::Resyncing(n) => format!("storage-resyncing-{n}"),
            Condition::VolumesDegraded(_) => "storage-volumes-degraded".into(),
            Condition::StorageGroupUnavailable(n) => format!("storage-group-unavailable-{n}"),
            Condition::SplitBrain(n) => format!("storage-split-brain-{n}"),
        }
    }
}

/// The alerts of this node's view.
#[derive(Debug, Default)]
pub struct Alerts {
    active: Vec<(Condition, Alert)>,
    cleared: Vec<Alert>,
    seq: u64,
}

impl Alerts {
    /// Brings the alerts in line with `now_holding`: raises what is new, clears what is gone.
    pub fn update(&mut self, now_holding: &[Condition]) {
        let stamp = now();
        let mut still = Vec::new();
        for (cond, mut alert) in std::mem::take(&mut self.active) {
            if now_holding.iter().any(|c| c.key() == cond.key()) {
                still.push((cond, alert));
            } else {
                alert.alert_state = "Cleared".into();
                alert.modified = stamp.clone();
                alert.cleared_time = Some(stamp.clone());
                self.cleared.push(alert);
            }
        }
        self.active = still;
        for c in now_holding {
            if self.active.iter().any(|(a, _)| a.key() == c.key()) {
                continue;
            }
            self.seq += 1;
            let (severity, type_id, description, action, resource) = c.describe();
            let id = format!("{}-{}", c.key(), self.seq);
            self.active.push((
                c.clone(),
                Alert {
                    kind: "AlertResourceV3".into(),
                    uri: format!("/rest/alerts/{id}"),
                    id,
                    severity: severity.into(),
                    description,
                    corrective_action: action,
                    alert_state: "Active".into(),
                    associated_resource: resource,
                    health_category: "Appliance".into(),
                    alert_type_id: type_id.into(),
                    created: stamp.clone(),
                    modified: stamp.clone(),
                    cleared_time: None,
                },
            ));
        }
        let excess = self.cleared.len().saturating_sub(KEEP_CLEARED);
        self.cleared.drain(..excess);
    }

    /// Active alerts first, then cleared ones, newest first.
    pub fn list(&self) -> Vec<Alert> {
        let mut out: Vec<Alert> = self.active.iter().map(|(_, a)| a.clone()).collect();
        out.extend(self.cleared.iter().rev().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_once_and_cleared_by_themselves() {
        let mut a = Alerts::default();
        let down = Condition::NodeUnavailable("node-b".into());
        a.update(&[down.clone(), Condition::NotHighlyAvailable]);
        a.update(&[down.clone(), Condition::NotHighlyAvailable]);
        let l = a.list();
        assert_eq!(l.len(), 2);
        assert!(l.iter().all(|x| x.alert_state == "Active"));
        assert_eq!(l[0].severity, "Critical");
        assert!(l[0].description.contains("node-b"));
        a.update(&[]);
        let l = a.list();
        assert_eq!(l.len(), 2);
        assert!(
            l.iter()
                .all(|x| x.alert_state == "Cleared" && x.cleared_time.is_some())
        );
        // The same condition again is a new alert.
        a.update(&[down]);
        let l = a.list();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].alert_state, "Active");
        assert_ne!(l[0].id, l[1].id);
    }
}
