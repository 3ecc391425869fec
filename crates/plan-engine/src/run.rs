//! One plan-script run against an OS volume: attach, sandbox scratch space, interpret,
//! unmount, detach — always in that order, and always undone, whatever fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::disk::AttachedGuest;
use super::exec::{Failure, Interpreter, LocalOutput, LocalRunner, Source};
use super::limits::Limits;
pub use plan_sandbox::CancelFlag;
use plan_sandbox::{self as sandbox, SandboxConfig, SandboxError, Scratch, Session};
use volume_attach::AttachedDisk;

/// The wall-clock limit of a whole run unless configured otherwise.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Settings of plan-script runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where runs keep their mount points and scratch space (`STATE/runs`).
    pub work_root: PathBuf,
    pub sandbox: SandboxConfig,
    /// Size of a run's scratch file system.
    pub scratch_size: u64,
    /// Wall-clock limit of a whole run, from its first command to its last.
    pub run_timeout: Duration,
    /// What the interpreter itself may use.
    pub limits: Limits,
}

impl RunConfig {
    pub fn new(work_root: PathBuf) -> Self {
        Self {
            work_root,
            sandbox: SandboxConfig::default(),
            scratch_size: 256 << 20,
            run_timeout: DEFAULT_RUN_TIMEOUT,
            limits: Limits::default(),
        }
    }
}

/// Why a run could not happen at all (as opposed to a script that failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("attaching the OS volume: {0}")]
    Attach(#[from] volume_attach::AttachError),
    #[error("creating the scratch space: {0}")]
    Scratch(String),
    #[error("{0}")]
    Setup(String),
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The activity log (secrets masked).
    pub log: String,
    /// `Err` names the failing script, line and command.
    pub result: Result<(), Failure>,
    /// Problems while unmounting or detaching (the run's result stands).
    pub cleanup_errors: Vec<String>,
    pub elapsed: Duration,
}

struct Sandboxed<'a> {
    cfg: &'a SandboxConfig,
    session: &'a Session,
    scratch: &'a Scratch,
    run_timeout: Duration,
}

fn output(o: sandbox::Output) -> LocalOutput {
    LocalOutput {
        status: o.status.code().unwrap_or(128),
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

impl Sandboxed<'_> {
    fn error(&self, e: SandboxError) -> String {
        let said = |o: &sandbox::Output| {
            let text = o.stderr_text();
            if text.trim().is_empty() {
                String::new()
            } else {
                format!("; output: {}", text.trim())
            }
        };
        match e {
            SandboxError::Timeout { secs, output: o } => {
                format!("timed out after {secs} s and was killed{}", said(&o))
            }
            SandboxError::Limit { limit, output: o } => {
                format!("stopped by the sandbox's {limit}{}", said(&o))
            }
            SandboxError::RunDeadline { output } => format!(
                "{}; the command was killed{}",
                self.out_of_time(),
                output.as_deref().map(said).unwrap_or_default()
            ),
            SandboxError::Cancelled { output } => format!(
                "the run was cancelled; the command was killed{}",
                output.as_deref().map(said).unwrap_or_default()
            ),
            other => other.to_string(),
        }
    }

    fn out_of_time(&self) -> String {
        format!(
            "the run reached its wall-clock limit of {} s",
            self.run_timeout.as_secs()
        )
    }
}

impl LocalRunner for Sandboxed<'_> {
    fn run_local(&self, text: &str, stdin: Option<&[u8]>) -> Result<LocalOutput, String> {
        sandbox::run_local(self.cfg, self.session, self.scratch, text, stdin)
            .map(output)
            .map_err(|e| self.error(e))
    }
    fn run_in_guest(
        &self,
        root: &Path,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<LocalOutput, String> {
        sandbox::run_in_guest(self.cfg, self.session, root, argv, stdin)
            .map(output)
            .map_err(|e| self.error(e))
    }
    fn stopped(&self) -> Option<String> {
        match self.session.stopped()? {
            SandboxError::Cancelled { .. } => Some("the run was cancelled".into()),
            _ => Some(self.out_of_time()),
        }
    }
}

/// Runs `sources` against the NBD export `export` at `addr`; `cancel` stops it.
pub fn run_on_nbd(
    cfg: &RunConfig,
    addr: SocketAddr,
    export: &str,
    sources: &[Source],
    secrets: Vec<String>,
    cancel: &CancelFlag,
) -> Result<Outcome, RunError> {
    let id = uuid::Uuid::new_v4();
    let work = cfg.work_root.join(format!("run-{id}"));
    let disk = AttachedDisk::attach_nbd(addr, export, &work.join("attach"))?;
    run_attached(cfg, disk, &work, sources, secrets, cancel)
}

/// Runs `sources` against a raw disk image file (tests, benchmarks, offline tools).
pub fn run_on_file(
    cfg: &RunConfig,
    image: &Path,
    sources: &[Source],
    secrets: Vec<String>,
    cancel: &CancelFlag,
) -> Result<Outcome, RunError> {
    let id = uuid::Uuid::new_v4();
    let work = cfg.work_root.join(format!("run-{id}"));
    let disk = AttachedDisk::attach_file(image, &work.join("attach"))?;
    run_attached(cfg, disk, &work, sources, secrets, cancel)
}

fn run_attached(
    cfg: &RunConfig,
    mut disk: AttachedDisk,
    work: &Path,
    sources: &[Source],
    secrets: Vec<String>,
    cancel: &CancelFlag,
) -> Result<Outcome, RunError> {
    let start = Instant::now();
    let mut cleanup_errors = Vec::new();
    // The whole run, every process it starts, shares one cgroup and one deadline.
    let session = Session::open(&cfg.sandbox, Some(start + cfg.run_timeout), cancel.clone())
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let scratch = Scratch::create_for(
        &cfg.work_root.join("scratch"),
        cfg.scratch_size,
        &cfg.sandbox,
    )
    .map_err(|e| RunError::Scratch(e.to_string()))?;
    let runner = Sandboxed {
        cfg: &cfg.sandbox,
        session: &session,
        scratch: &scratch,
        run_timeout: cfg.run_timeout,
    };
    let (log, result) = {
        let mut guest = AttachedGuest::new(&mut disk);
        let mut it = Interpreter::new(
            &mut guest,
            &runner,
            scratch.path(),
            &work.join("mnt"),
            secrets,
        )
        .map_err(RunError::Setup)?
        .scratch_owner(cfg.sandbox.host_uid, cfg.sandbox.host_gid)
        .limits(cfg.limits);
        let result = it.run(sources);
        if let Err(e) = it.unmount_all() {
            cleanup_errors.push(e);
        }
        (it.log(), result)
    };
    drop(scratch);
    // Kills whatever the run left running, then removes its cgroup.
    drop(session);
    if let Err(e) = disk.detach() {
        cleanup_errors.push(e.to_string());
    }
    if let Err(e) = std::fs::remove_dir_all(work) {
        cleanup_errors.push(format!("{}: {e}", work.display()));
    }
    Ok(Outcome {
        log,
        result,
        cleanup_errors,
        elapsed: start.elapsed(),
    })
}

/// Removes what runs interrupted by a crash left behind: mounts, loop devices, FUSE files,
/// scratch file systems. Called when deployd starts.
pub fn cleanup_leftovers(cfg: &RunConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = volume_attach::cleanup_leftovers(&cfg.work_root) {
        problems.push(e.to_string());
    }
    if let Err(e) = sandbox::cleanup_leftovers(&cfg.work_root.join("scratch")) {
        problems.push(e.to_string());
    }
    let groups = cfg.sandbox.cgroups.cleanup_leftovers();
    if groups > 0 {
        tracing::info!("removed {groups} control groups of interrupted plan runs");
    }
    problems
}
