//! Deployment and capture: the flows that join storaged, the API and the plan-script engine.
//!
//! `plan` turns a deployment plan and a profile's values into substituted scripts; `job` runs
//! a deploy (clone, personalize, export to the compute module, power on); `capture` makes a
//! golden image from an OS volume without changing it; `recovery` cleans up after a stop in
//! the middle of either. Plan runs are bounded by a semaphore: storaged's clones are O(1),
//! but every run attaches a volume and starts a sandbox.

pub mod capture;
pub mod job;
pub mod plan;
pub mod recovery;
pub mod runner;
pub mod system;

use std::sync::Arc;

use tokio::sync::Semaphore;

use runner::PlanRunner;

/// Prefix of the frozen volumes a capture takes of an OS volume (ancestors of that volume
/// and of the captured golden image; removed when neither needs them).
pub const CAPTURE_SNAPSHOT_PREFIX: &str = "capture-snapshot-";
/// Prefix of the writable clones a capture runs its build plan on (always temporary).
pub const CAPTURE_CLONE_PREFIX: &str = "capture-clone-";

/// The deployment engine shared by the handlers.
#[derive(Debug)]
pub struct Deployer {
    pub runner: Arc<dyn PlanRunner>,
    /// One permit per concurrent plan run.
    pub runs: Arc<Semaphore>,
}

impl Deployer {
    pub fn new(runner: Arc<dyn PlanRunner>, max_runs: usize) -> Self {
        Self {
            runner,
            runs: Arc::new(Semaphore::new(max_runs.max(1))),
        }
    }
}
