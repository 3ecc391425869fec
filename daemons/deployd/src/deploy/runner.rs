//! The seam between orchestration and the plan-script engine: run a build plan's scripts on
//! an NBD export. The appliance uses [`NbdRunner`] (attach, mount, sandbox); unit tests of the
//! orchestration put a scripted runner in its place.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use crate::planscript::exec::{Failure, Source};

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
    work_root: std::path::PathBuf,
}

impl NbdRunner {
    pub fn new(work_root: std::path::PathBuf) -> Self {
        Self { work_root }
    }
}

impl PlanRunner for NbdRunner {
    fn run(
        &self,
        _nbd: SocketAddr,
        _export: &str,
        _sources: &[Source],
        _secrets: Vec<String>,
    ) -> Result<RunReport, String> {
        // Replaced by `planscript::run::run_on_nbd` when the volume-attach module lands.
        Err(format!(
            "the plan-script engine is not part of this build yet (work root {})",
            self.work_root.display()
        ))
    }
}
