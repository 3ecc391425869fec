//! Plan runs: the seam between orchestration and the plan-script engine, and the slots that
//! bound how many run at once (storaged's clones are O(1), but every run attaches a volume and
//! starts a sandbox).
//!
//! A run executes a build plan's scripts on a storaged volume exported, for the run only, to
//! this host. The appliance uses [`NbdRunner`] (the `plan-engine` crate: attach, mount,
//! sandbox); unit tests of the orchestration put a scripted runner in its place.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::storage::{Storage, StorageError};

use plan_engine::exec::{Failure, Source};
use plan_engine::run::{RunConfig, cleanup_leftovers, run_on_nbd};

/// What a plan run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The activity log (secrets masked).
    pub log: String,
    /// `Err` names the failing script, line and command.
    pub result: Result<(), Failure>,
    /// Problems while unmounting or detaching.
    pub cleanup_errors: Vec<String>,
    pub elapsed: Duration,
}

/// Runs plan scripts against a volume served over NBD. Blocking: call it off the runtime.
pub trait PlanRunner: Send + Sync + Debug {
    /// `Err` when the run could not happen at all (attach or sandbox setup failed).
    fn run(
        &self,
        nbd: SocketAddr,
        export: &str,
        sources: &[Source],
        secrets: Vec<String>,
    ) -> Result<RunReport, String>;

    /// Removes what runs interrupted by a stop left behind (mounts, attachments).
    fn cleanup_leftovers(&self) {}
}

/// The appliance's runner: the plan-script engine on an NBD attachment.
#[derive(Debug)]
pub struct NbdRunner {
    cfg: RunConfig,
}

impl NbdRunner {
    pub fn new(work_root: std::path::PathBuf) -> Self {
        Self {
            cfg: RunConfig::new(work_root),
        }
    }
}

impl PlanRunner for NbdRunner {
    fn run(
        &self,
        nbd: SocketAddr,
        export: &str,
        sources: &[Source],
        secrets: Vec<String>,
    ) -> Result<RunReport, String> {
        let o = run_on_nbd(&self.cfg, nbd, export, sources, secrets).map_err(|e| e.to_string())?;
        Ok(RunReport {
            log: o.log,
            result: o.result,
            cleanup_errors: o.cleanup_errors,
            elapsed: o.elapsed,
        })
    }

    fn cleanup_leftovers(&self) {
        for p in cleanup_leftovers(&self.cfg) {
            tracing::warn!("cleaning up after interrupted plan runs: {p}");
        }
    }
}

/// Why a run did not happen (a script that fails is a [`RunReport`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum PlanRunError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the plan run stopped: {0}")]
    Stopped(String),
    #[error("the plan run could not start: {0}")]
    NotStarted(String),
    #[error("{0}")]
    Slots(String),
}

/// The runner and its slots.
#[derive(Debug)]
pub struct PlanRuns {
    runner: Arc<dyn PlanRunner>,
    slots: Arc<Semaphore>,
    /// storaged's NBD server as this host reaches it.
    nbd: SocketAddr,
}

impl PlanRuns {
    pub fn new(runner: Arc<dyn PlanRunner>, max_runs: usize, nbd: SocketAddr) -> Self {
        Self {
            runner,
            slots: Arc::new(Semaphore::new(max_runs.max(1))),
            nbd,
        }
    }

    /// Whether every slot is taken (a new run will wait).
    pub fn all_busy(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// Waits for a slot; the run holds it until the permit is dropped.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, PlanRunError> {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|e| PlanRunError::Slots(e.to_string()))
    }

    /// Removes what runs interrupted by a stop left behind.
    pub fn cleanup_leftovers(&self) {
        self.runner.cleanup_leftovers();
    }

    /// Runs `sources` on storaged volume `volume`, exported to this host only for the run.
    /// The export is removed whatever happens.
    pub async fn run_on_volume(
        &self,
        storage: &Storage,
        volume: &str,
        sources: Vec<Source>,
        secrets: Vec<String>,
    ) -> Result<RunReport, PlanRunError> {
        storage.export_add(volume, &["127.0.0.1"]).await?;
        let runner = Arc::clone(&self.runner);
        let nbd = self.nbd;
        let export = volume.to_string();
        let ran = tokio::task::spawn_blocking(move || runner.run(nbd, &export, &sources, secrets))
            .await
            .map_err(|e| PlanRunError::Stopped(e.to_string()));
        let unexported = storage.export_remove(volume).await;
        let report = ran?.map_err(PlanRunError::NotStarted)?;
        unexported?;
        Ok(report)
    }
}
