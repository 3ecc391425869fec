//! The pair's side of the control socket (`org.streamer.StoragePair1`): what clusterd calls
//! to carry out the pair's decisions on this node's storage. Served only when storaged
//! replicates (a pair member).

use std::sync::Arc;

use super::error::ControlError;
use crate::replication::pair::PairLink;

#[derive(Debug, Clone)]
pub struct PairService {
    link: Arc<PairLink>,
}

impl PairService {
    pub fn new(link: Arc<PairLink>) -> Self {
        Self { link }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, ControlError> {
    serde_json::to_string(v).map_err(|e| ControlError::Failed(e.to_string()))
}

#[zbus::interface(name = "org.streamer.StoragePair1")]
impl PairService {
    /// Serves group `home` (its volumes' exports) at `epoch` from now on.
    async fn own(&self, home: String, epoch: u64) {
        self.link.own(&home, epoch);
    }

    /// Stops serving group `home`, now at `epoch` (its clients' connections close).
    async fn disown(&self, home: String, epoch: u64) {
        self.link.disown(&home, epoch);
    }

    /// The pair marked the peer Outdated (`true`: writes go on without it) or not.
    async fn set_peer_outdated(&self, outdated: bool) {
        self.link.set_peer_outdated(outdated);
    }

    /// Whether the peer's replication port answers now.
    async fn peer_reachable(&self) -> bool {
        let link = Arc::clone(&self.link);
        tokio::task::spawn_blocking(move || link.peer_reachable())
            .await
            .unwrap_or(false)
    }

    /// The replication state (JSON: `PairStatus`).
    async fn status(&self) -> Result<String, ControlError> {
        let link = Arc::clone(&self.link);
        let status = tokio::task::spawn_blocking(move || link.status())
            .await
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        json(&status)
    }

    /// Resyncs the peer's copies of every volume served here (JSON: what was sent).
    async fn resync(&self) -> Result<String, ControlError> {
        let link = Arc::clone(&self.link);
        let report = tokio::task::spawn_blocking(move || link.resync())
            .await
            .map_err(|e| ControlError::Failed(e.to_string()))?
            .map_err(ControlError::from)?;
        json(&report)
    }
}
