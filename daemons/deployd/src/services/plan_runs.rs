//! Plan runs: the seam between orchestration and the plan-script engine, and the slots that
//! bound how many run at once (storaged's clones are O(1), but every run attaches a volume and
//! starts a sandbox).
//!
//! A run executes a build plan's scripts on a storaged volume exported, for the run only, to
//! this host. The appliance uses [`NbdRunner`] (the `plan-engine` crate: attach, mount,
//! sandbox); unit tests of the orchestration can put a scripted runner in its place.
//!
//! **Slots are shared fairly.** A run waits in a queue for one of `max_runs` slots, and can
//! see its place in it. When a slot frees, it goes to the waiting run whose owner has the
//! fewest runs going (the earliest of those): one user's batch of deploys cannot keep every
//! slot while another user waits, and every run holds its slot at most its wall-clock limit.
//! A run waiting for a slot is cancelled at once (it leaves the queue).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::storage::{Storage, StorageError};
use super::tasks::Cancel;

use plan_engine::exec::{Failure, Source};
use plan_engine::run::{CancelFlag, RunConfig, cleanup_leftovers, run_on_nbd};

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
    /// `Err` when the run could not happen at all (attach or sandbox setup failed). Setting
    /// `cancel` stops the run within moments (its report then says it was cancelled).
    fn run(
        &self,
        nbd: SocketAddr,
        export: &str,
        sources: &[Source],
        secrets: Vec<String>,
        cancel: &CancelFlag,
    ) -> Result<RunReport, String>;

    /// Removes what runs interrupted by a stop left behind (mounts, attachments, cgroups).
    fn cleanup_leftovers(&self) {}
}

/// The limits of every run (see the README's "Plan runs" table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Wall-clock limit of a whole run.
    pub timeout: Duration,
    /// Memory of everything a run starts (its cgroup).
    pub memory: u64,
    /// Processes of a run (its cgroup's pids.max).
    pub processes: u64,
    /// CPU time of a run, thousandths of a CPU.
    pub cpu_millis: u32,
}

impl Default for RunLimits {
    fn default() -> Self {
        let sandbox = plan_sandbox::SandboxConfig::default();
        Self {
            timeout: plan_engine::run::DEFAULT_RUN_TIMEOUT,
            memory: sandbox.memory_limit,
            processes: sandbox.max_processes,
            cpu_millis: sandbox.cpu_millis,
        }
    }
}

/// The appliance's runner: the plan-script engine on an NBD attachment.
#[derive(Debug)]
pub struct NbdRunner {
    cfg: RunConfig,
}

impl NbdRunner {
    pub fn new(work_root: std::path::PathBuf, limits: RunLimits) -> Self {
        let mut cfg = RunConfig::new(work_root);
        cfg.run_timeout = limits.timeout;
        cfg.sandbox.memory_limit = limits.memory;
        cfg.sandbox.max_processes = limits.processes;
        cfg.sandbox.cpu_millis = limits.cpu_millis;
        Self { cfg }
    }
}

impl PlanRunner for NbdRunner {
    fn run(
        &self,
        nbd: SocketAddr,
        export: &str,
        sources: &[Source],
        secrets: Vec<String>,
        cancel: &CancelFlag,
    ) -> Result<RunReport, String> {
        let o = run_on_nbd(&self.cfg, nbd, export, sources, secrets, cancel)
            .map_err(|e| e.to_string())?;
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
    #[error("cancelled by {0} while waiting for a plan-run slot")]
    CancelledWaiting(String),
}

/// Who waits for a slot.
#[derive(Debug)]
struct Waiter {
    id: u64,
    owner: String,
}

#[derive(Debug, Default)]
struct Queue {
    capacity: usize,
    running: HashMap<String, usize>,
    total: usize,
    waiting: VecDeque<Waiter>,
    /// Waiters given a slot that have not taken it yet.
    granted: HashSet<u64>,
    next_id: u64,
}

impl Queue {
    fn running_of(&self, owner: &str) -> usize {
        self.running.get(owner).copied().unwrap_or(0)
    }

    /// The waiters in the order slots go to them: fewest runs of their owner first, then
    /// arrival.
    fn order(&self) -> Vec<u64> {
        let mut w: Vec<(usize, usize, u64)> = self
            .waiting
            .iter()
            .enumerate()
            .map(|(arrival, w)| (self.running_of(&w.owner), arrival, w.id))
            .collect();
        w.sort_unstable();
        w.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Gives free slots to waiters; true if any was given.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while self.total < self.capacity {
            let Some(&next) = self.order().first() else {
                break;
            };
            let Some(pos) = self.waiting.iter().position(|w| w.id == next) else {
                break;
            };
            let Some(w) = self.waiting.remove(pos) else {
                break;
            };
            *self.running.entry(w.owner).or_default() += 1;
            self.total += 1;
            self.granted.insert(w.id);
            any = true;
        }
        any
    }

    fn release(&mut self, owner: &str) {
        if let Some(n) = self.running.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(owner);
            }
        }
        self.total = self.total.saturating_sub(1);
    }
}

/// The runner and its slots.
#[derive(Debug)]
pub struct PlanRuns {
    runner: Arc<dyn PlanRunner>,
    queue: Arc<Mutex<Queue>>,
    /// Bumped whenever the queue changes, so waiters re-read their place.
    changed: watch::Sender<u64>,
    /// storaged's NBD server as this host reaches it.
    nbd: SocketAddr,
}

/// A plan-run slot, held until dropped.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<Mutex<Queue>>,
    changed: watch::Sender<u64>,
    owner: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.release(&self.owner);
        q.dispatch();
        drop(q);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A place in the queue; leaving it (cancel, or the waiting future dropped) gives back a
/// slot granted but not taken.
struct Place<'a> {
    runs: &'a PlanRuns,
    id: u64,
    owner: String,
    taken: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut q = self.runs.lock();
        q.waiting.retain(|w| w.id != self.id);
        if q.granted.remove(&self.id) {
            q.release(&self.owner);
            q.dispatch();
        }
        drop(q);
        self.runs.changed.send_modify(|n| *n += 1);
    }
}

impl PlanRuns {
    pub fn new(runner: Arc<dyn PlanRunner>, max_runs: usize, nbd: SocketAddr) -> Self {
        let queue = Queue {
            capacity: max_runs.max(1),
            ..Queue::default()
        };
        Self {
            runner,
            queue: Arc::new(Mutex::new(queue)),
            changed: watch::Sender::new(0),
            nbd,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot for a run of `owner`. While it waits, `waiting` is told its place
    /// (1 = next) and the number of runs going whenever that changes. `cancel` ends the
    /// wait.
    pub async fn slot(
        &self,
        owner: &str,
        cancel: &Cancel,
        mut waiting: impl FnMut(usize, usize),
    ) -> Result<Slot, PlanRunError> {
        let id = {
            let mut q = self.lock();
            q.next_id += 1;
            let id = q.next_id;
            q.waiting.push_back(Waiter {
                id,
                owner: owner.to_string(),
            });
            q.dispatch();
            id
        };
        // Others' places may have changed (a newcomer can go before them).
        self.changed.send_modify(|n| *n += 1);
        let mut place = Place {
            runs: self,
            id,
            owner: owner.to_string(),
            taken: false,
        };
        let mut changes = self.changed.subscribe();
        let mut shown = None;
        loop {
            let state = {
                let mut q = self.lock();
                if q.granted.remove(&id) {
                    None
                } else {
                    let position = q.order().iter().position(|w| *w == id).map_or(1, |p| p + 1);
                    Some((position, q.total))
                }
            };
            let Some(state) = state else {
                place.taken = true;
                return Ok(Slot {
                    queue: Arc::clone(&self.queue),
                    changed: self.changed.clone(),
                    owner: owner.to_string(),
                });
            };
            if shown != Some(state) {
                waiting(state.0, state.1);
                shown = Some(state);
            }
            tokio::select! {
                _ = changes.changed() => {}
                by = cancel.cancelled() => return Err(PlanRunError::CancelledWaiting(by)),
            }
        }
    }

    /// Removes what runs interrupted by a stop left behind.
    pub fn cleanup_leftovers(&self) {
        self.runner.cleanup_leftovers();
    }

    /// Runs `sources` on storaged volume `volume`, exported to this host only for the run.
    /// The export is removed whatever happens; `cancel` stops the run.
    pub async fn run_on_volume(
        &self,
        storage: &Storage,
        volume: &str,
        sources: Vec<Source>,
        secrets: Vec<String>,
        cancel: &Cancel,
    ) -> Result<RunReport, PlanRunError> {
        storage.export_add(volume, &["127.0.0.1"]).await?;
        let runner = Arc::clone(&self.runner);
        let nbd = self.nbd;
        let export = volume.to_string();
        let flag = cancel.flag();
        let ran =
            tokio::task::spawn_blocking(move || runner.run(nbd, &export, &sources, secrets, &flag))
                .await
                .map_err(|e| PlanRunError::Stopped(e.to_string()));
        let unexported = storage.export_remove(volume).await;
        let report = ran?.map_err(PlanRunError::NotStarted)?;
        unexported?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Idle;

    impl PlanRunner for Idle {
        fn run(
            &self,
            _: SocketAddr,
            _: &str,
            _: &[Source],
            _: Vec<String>,
            _: &CancelFlag,
        ) -> Result<RunReport, String> {
            Err("not used".into())
        }
    }

    fn runs(slots: usize) -> Arc<PlanRuns> {
        Arc::new(PlanRuns::new(
            Arc::new(Idle),
            slots,
            "127.0.0.1:10809".parse().unwrap(),
        ))
    }

    type Waiting = tokio::task::JoinHandle<Result<Slot, PlanRunError>>;

    /// Starts a waiter for `owner`; returns its task and the places it was told.
    fn wait(
        runs: &Arc<PlanRuns>,
        owner: &str,
        cancel: Cancel,
    ) -> (Waiting, Arc<Mutex<Vec<usize>>>) {
        let places = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&places);
        let runs = Arc::clone(runs);
        let owner = owner.to_string();
        let task = tokio::spawn(async move {
            runs.slot(&owner, &cancel, |place, _| seen.lock().unwrap().push(place))
                .await
        });
        (task, places)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_owner_with_fewest_runs() {
        let runs = runs(2);
        let never = Cancel::default;
        // alice takes both slots and queues two more; bob queues after her.
        let a1 = runs.slot("alice", &never(), |_, _| {}).await.unwrap();
        let _a2 = runs.slot("alice", &never(), |_, _| {}).await.unwrap();
        let (a3, a3_places) = wait(&runs, "alice", never());
        settle().await;
        let (a4, _) = wait(&runs, "alice", never());
        settle().await;
        let (b1, b1_places) = wait(&runs, "bob", never());
        settle().await;
        // bob has no run going: he is first in line though he came last.
        assert_eq!(*b1_places.lock().unwrap(), vec![1]);
        assert_eq!(*a3_places.lock().unwrap(), vec![1, 2]);
        drop(a1);
        let bob = b1.await.unwrap().unwrap();
        assert!(!a3.is_finished() && !a4.is_finished());
        drop(bob);
        let a3 = a3.await.unwrap().unwrap();
        drop(a3);
        let _a4 = a4.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn cancelling_a_waiting_run_leaves_the_queue() {
        let runs = runs(1);
        let first = runs
            .slot("alice", &Cancel::default(), |_, _| {})
            .await
            .unwrap();
        let cancel = Cancel::default();
        let (waiting, _) = wait(&runs, "bob", cancel.clone());
        let (behind, places) = wait(&runs, "carol", Cancel::default());
        settle().await;
        assert_eq!(*places.lock().unwrap(), vec![2]);
        cancel.cancel("Administrator");
        let e = waiting.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("cancelled by Administrator"), "{e}");
        settle().await;
        assert_eq!(*places.lock().unwrap(), vec![2, 1]);
        drop(first);
        let _carol = behind.await.unwrap().unwrap();
        assert_eq!(runs.lock().total, 1);
    }
}
