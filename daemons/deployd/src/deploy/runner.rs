//! The seam between orchestration and the plan-script engine: run a build plan's scripts on
//! an NBD export. The appliance uses [`NbdRunner`] (attach, mount, sandbox); unit tests of the
//! orchestration put a scripted runner in its place.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

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
