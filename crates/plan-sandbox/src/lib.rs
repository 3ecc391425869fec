//! Sandboxes for the programs a plan script runs.
//!
//! Plan scripts are guestfish scripts from artifact bundles, i.e. code from outside the
//! appliance. They run programs two ways, and both go through this module:
//!
//! * **Local commands** (`!cmd`, `<!cmd`, `guestcmd | localcmd`) run with [`run_local`]: busybox
//!   `sh -c` with the run's [`Scratch`] directory as `./`.
//! * **Guest commands** (guestfish `command` / `sh`) run with [`run_in_guest`], inside the
//!   kernel-mounted guest filesystem (personalization: `update_kernel_params`, `sed -i`, ...).
//!
//! # Threat model
//!
//! The script (and anything it runs) is hostile. It must not: read or write the appliance's
//! files (state dir, keys, passwords, `/etc`), reach another OS volume or block device, use the
//! network, signal or inspect host processes, leave mounts or processes behind, or exhaust the
//! host's memory, processes, disk or time. It may destroy its own scratch directory (local) or
//! its own guest filesystem (guest commands) — that is the job it was given.
//!
//! # Mechanisms
//!
//! * **Namespaces.** Each run gets new mount, pid, net, ipc, uts and cgroup namespaces, and then
//!   a new user namespace. The net namespace has only `lo`, down: no network at all.
//! * **Filesystem.** In the private mount namespace (propagation made private first, so no mount
//!   leaks to the host), the process builds a new root and `pivot_root`s into it, detaching
//!   the old root: nothing of the host is reachable by any path, `..` or symlink.
//!   - local: a read-only tmpfs with `/bin` (busybox bind-mounted read-only plus an applet
//!     symlink for each applet it reports), `/dev` with only null, zero, full, random and
//!     urandom, `/proc` of the new pid namespace, `/tmp` (small tmpfs) and `/scratch` (the
//!     run's scratch dir, the working directory). The scratch dir is its own size-limited
//!     tmpfs, so filling it ends in ENOSPC there and nowhere else.
//!   - guest: the guest root bound onto itself `nosuid,nodev` (device nodes inside a guest
//!     image cannot be opened), with `/proc` and a tmpfs `/dev` (same five nodes) mounted on the
//!     guest's own directories in the private namespace only: they vanish with the namespace
//!     and are never written into the guest. The guest's own `/tmp` is left visible, because
//!     HPE scripts upload helpers there and then run them.
//!   - `/proc` has `sys`, `sysrq-trigger`, `irq`, `bus`, `fs` read-only and `kcore`, `keys`,
//!     `timer_list`, ... masked (as container runtimes do): a namespaced root is still uid 0
//!     for their permission checks.
//! * **Identity.** Local commands run as uid/gid 65534 in a user namespace mapping only that id
//!   to [`SandboxConfig::host_uid`]; after `setresuid` they hold no capability, and
//!   `no_new_privs` is set. Guest commands run as root of a user namespace mapping all ids
//!   to themselves (so files keep their owners): they have capabilities only over their own
//!   namespaces, and the mount namespace belongs to the host's user namespace, so they can
//!   neither mount, unmount, `mknod` devices, load modules nor change sysctls.
//! * **Limits, per run.** A plan run opens a [`Session`]: one control group ([`cgroup`]) for
//!   everything the run starts, local commands and guest commands alike, with `memory`, `pids`
//!   and `cpu` bounds for the whole run (OOM kills and refused forks are reported from the
//!   group's event counters), a deadline for the whole run and a cancel flag. Each command also
//!   has its own wall-clock timeout (clipped to the run's deadline): at the timeout, the
//!   deadline or a cancel, the namespace's init is killed (through the intermediate process,
//!   whose death kills it by `PR_SET_PDEATHSIG`), which makes the kernel kill every process in
//!   the pid namespace; dropping the session kills whatever is left in the group. Local
//!   commands also get `RLIMIT_NPROC` (counted per user namespace) and `RLIMIT_AS`; everything
//!   gets `RLIMIT_FSIZE`, `RLIMIT_CORE`=0 and `RLIMIT_NOFILE`. Output is kept up to
//!   [`SandboxConfig::output_limit`] per stream and the rest discarded.
//! * **Without a cgroup** (neither v2 nor v1 usable, see [`Cgroups::Unavailable`]), guest
//!   commands are refused, saying why: they run as the host's uid 0, which `RLIMIT_NPROC` does
//!   not bind, and nothing else would bound their memory for the run. Local commands still run,
//!   bounded per process (`RLIMIT_AS`) and in number (`RLIMIT_NPROC` under their unprivileged
//!   mapped uid).
//! * **Descriptors.** Before `exec`, every descriptor above stderr is marked close-on-exec
//!   (`close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`), so nothing of deployd's reaches a program.
//! * **`/proc`** hides, besides the kernel interfaces below, what it would tell of the host:
//!   its kernel command line, kernel config, partitions, disk statistics, modules, swaps,
//!   devices and memory map (an empty file is bound over each).
//! * **Unsafe code** is confined to `spawn.rs`; between fork and exec it makes only raw,
//!   async-signal-safe system calls on memory prepared before the fork.
//!
//! # Not covered
//!
//! * No seccomp filter: the whole system-call surface of the kernel is reachable, so a
//!   kernel bug can still be an escape. Unprivileged user namespaces remain creatable inside.
//! * Without a cgroup, a local command's memory is bounded per process (`RLIMIT_AS`), not for
//!   the run as a whole, and limit hits are recognised from the programs' error messages.
//! * Without the `cpu` controller, CPU time is bounded only by the wall-clock limits.
//! * Guest commands can do anything to the guest filesystem, including filling it.
//! * A hostile guest image's symlinked `/proc` or `/dev` only loses those mounts (they land
//!   in the private namespace's detached old root).
//!
//! Calls block for the whole run: call them from `spawn_blocking`, on a thread that outlives
//! the call (the parent-death signal follows the spawning thread).

pub mod cgroup;
mod scratch;
mod spawn;

use std::ffi::CString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use cgroup::{Cgroups, GroupLimits, RunCgroup};
pub use scratch::{Scratch, ScratchError, cleanup_leftovers};

/// The uid and gid programs see inside the local sandbox.
pub const SANDBOX_ID: u32 = 65534;

/// Where the scratch directory appears inside the local sandbox (and its working directory).
pub const SCRATCH_MOUNT: &str = "/scratch";

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// A statically linked busybox (Debian's `busybox-static`).
    pub busybox: PathBuf,
    /// The host uid/gid the sandbox's uid 65534 maps to. Prefer a uid nothing else uses.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Wall-clock limit for one command (a run's deadline may cut it shorter).
    pub timeout: Duration,
    /// Bytes of memory for a whole run (its cgroup); without a cgroup, per process
    /// (`RLIMIT_AS`).
    pub memory_limit: u64,
    /// Processes of a whole run (its cgroup's `pids.max`), and `RLIMIT_NPROC` of local commands.
    pub max_processes: u64,
    /// CPU time of a whole run, in thousandths of a CPU (1000: at most one CPU's worth).
    pub cpu_millis: u32,
    /// Largest file a program may write (`RLIMIT_FSIZE`).
    pub max_file_size: u64,
    /// Size of the local sandbox's `/tmp`.
    pub tmp_size: u64,
    /// Bytes kept per output stream of one command.
    pub output_limit: usize,
    /// Where runs' control groups are made ([`Cgroups::detect`] by default).
    pub cgroups: Cgroups,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            busybox: PathBuf::from("/bin/busybox"),
            host_uid: SANDBOX_ID,
            host_gid: SANDBOX_ID,
            timeout: Duration::from_secs(600),
            memory_limit: 1 << 30,
            max_processes: 256,
            cpu_millis: 1000,
            max_file_size: 8 << 30,
            tmp_size: 64 << 20,
            output_limit: 4 << 20,
            cgroups: Cgroups::detect(),
        }
    }
}

/// Set from another thread to stop a run: the running command is killed within
/// milliseconds and the next one is not started.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One plan run's share of the host: a control group for everything the run starts (memory,
/// processes, CPU), its deadline and its cancel flag. Dropping it kills every process left in
/// the group.
#[derive(Debug)]
pub struct Session {
    cgroup: Result<RunCgroup, String>,
    deadline: Option<Instant>,
    cancel: CancelFlag,
}

impl Session {
    /// Opens a session with `cfg`'s limits. Fails only if a cgroup was found but a group
    /// could not be made in it; with no cgroup at all the session runs local commands only.
    pub fn open(
        cfg: &SandboxConfig,
        deadline: Option<Instant>,
        cancel: CancelFlag,
    ) -> Result<Session, SandboxError> {
        let limits = GroupLimits {
            memory: cfg.memory_limit,
            processes: cfg.max_processes,
            cpu_millis: cfg.cpu_millis,
        };
        let cgroup = match RunCgroup::create(&cfg.cgroups, limits) {
            Ok(group) => Ok(group),
            Err(SandboxError::NoCgroup(why)) => Err(why),
            Err(e) => return Err(e),
        };
        Ok(Session {
            cgroup,
            deadline,
            cancel,
        })
    }

    /// The run's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&RunCgroup> {
        self.cgroup.as_ref().ok()
    }

    pub fn cancel_flag(&self) -> &CancelFlag {
        &self.cancel
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Why the run may not go on (cancelled, or past its deadline), if so.
    pub fn stopped(&self) -> Option<SandboxError> {
        if self.cancel.is_cancelled() {
            return Some(SandboxError::Cancelled { output: None });
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(SandboxError::RunDeadline { output: None }),
            _ => None,
        }
    }
}

/// A limit a run ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Memory,
    Processes,
    FileSize,
    ScratchFull,
    Output,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitHit::Memory => "memory limit",
            LimitHit::Processes => "process limit",
            LimitHit::FileSize => "file size limit",
            LimitHit::ScratchFull => "scratch space (no space left on device)",
            LimitHit::Output => "output size limit (output truncated)",
        })
    }
}

/// What a sandboxed program did.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Limits the run ran into (from the cgroup's event counters, else guessed from the
    /// programs' error messages).
    pub limits_hit: Vec<LimitHit>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("busybox not found at {}", .0.display())]
    BusyboxMissing(PathBuf),
    #[error("guest root {} is not a directory", .0.display())]
    GuestRoot(PathBuf),
    #[error("empty command")]
    EmptyCommand,
    #[error("path {} contains a NUL byte", .0.display())]
    NulInPath(PathBuf),
    #[error("creating the run's cgroup in {}: {source}", .path.display())]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox setup failed while {step}: {source}")]
    Setup {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("could not start the sandboxed program")]
    Spawn(#[source] io::Error),
    #[error("timed out after {secs} s; every process of the command was killed")]
    Timeout { secs: u64, output: Box<Output> },
    #[error("the run reached its wall-clock limit; every process of the command was killed")]
    RunDeadline { output: Option<Box<Output>> },
    #[error("the run was cancelled; every process of the command was killed")]
    Cancelled { output: Option<Box<Output>> },
    #[error(
        "guest commands (sh, command) need a cgroup to bound them, and this host has none \
         usable: {0}"
    )]
    NoCgroup(String),
    #[error("stopped by the sandbox's {limit}")]
    Limit {
        limit: LimitHit,
        output: Box<Output>,
    },
    #[error("waiting for the sandboxed program")]
    Wait(#[source] io::Error),
}

/// Runs `busybox sh -c shell_text` in the local sandbox with `scratch` as working directory.
pub fn run_local(
    cfg: &SandboxConfig,
    session: &Session,
    scratch: &Scratch,
    shell_text: &str,
    stdin: Option<&[u8]>,
) -> Result<Output, SandboxError> {
    if !cfg.busybox.is_file() {
        return Err(SandboxError::BusyboxMissing(cfg.busybox.clone()));
    }
    let applets = busybox_applets(&cfg.busybox)?
        .into_iter()
        .map(|a| CString::new(format!("bin/{a}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| SandboxError::BusyboxMissing(cfg.busybox.clone()))?;
    let tmp_inodes = (cfg.tmp_size / 4096).clamp(1024, 1 << 20);
    let root = spawn::Root::Toolbox {
        mountpoint: cpath(scratch.root_mountpoint())?,
        root_opts: c_string("size=1m,nr_inodes=2048,mode=0755"),
        busybox: cpath(&cfg.busybox)?,
        applets,
        scratch: cpath(scratch.path())?,
        tmp_opts: c_string(&format!(
            "size={},nr_inodes={tmp_inodes},mode=1777",
            cfg.tmp_size
        )),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(shell_text);
    cmd.env_clear()
        .env("PATH", "/bin")
        .env("HOME", SCRATCH_MOUNT)
        .env("PWD", SCRATCH_MOUNT)
        .env("TMPDIR", "/tmp")
        .env("LANG", "C");
    let ids = Ids {
        uid_map: format!("{SANDBOX_ID} {} 1\n", cfg.host_uid),
        gid_map: format!("{SANDBOX_ID} {} 1\n", cfg.host_gid),
        deny_setgroups: true,
        inner: SANDBOX_ID,
    };
    run(cfg, session, cmd, root, ids, SCRATCH_MOUNT, stdin)
}

/// Runs `argv` as root inside the guest filesystem mounted at `guest_root` (guestfish
/// `command`; `sh "cmd"` is `["/bin/sh", "-c", "cmd"]`). Refused when the session has no
/// cgroup (see the crate documentation).
pub fn run_in_guest(
    cfg: &SandboxConfig,
    session: &Session,
    guest_root: &Path,
    argv: &[String],
    stdin: Option<&[u8]>,
) -> Result<Output, SandboxError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SandboxError::EmptyCommand);
    };
    if let Err(why) = &session.cgroup {
        return Err(SandboxError::NoCgroup(why.clone()));
    }
    let guest_root = guest_root
        .canonicalize()
        .map_err(|_| SandboxError::GuestRoot(guest_root.to_owned()))?;
    if !guest_root.is_dir() {
        return Err(SandboxError::GuestRoot(guest_root));
    }
    let read_only = nix::sys::statvfs::statvfs(&guest_root)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false);
    let root = spawn::Root::Guest {
        path: cpath(&guest_root)?,
        read_only,
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C");
    let ids = Ids {
        uid_map: "0 0 4294967295\n".to_owned(),
        gid_map: "0 0 4294967295\n".to_owned(),
        deny_setgroups: false,
        inner: 0,
    };
    run(cfg, session, cmd, root, ids, "/", stdin)
}

struct Ids {
    uid_map: String,
    gid_map: String,
    deny_setgroups: bool,
    inner: u32,
}

fn run(
    cfg: &SandboxConfig,
    session: &Session,
    mut cmd: Command,
    root: spawn::Root,
    ids: Ids,
    workdir: &str,
    stdin: Option<&[u8]>,
) -> Result<Output, SandboxError> {
    if let Some(stop) = session.stopped() {
        return Err(stop);
    }
    let cgroup = session.cgroup();
    let mut rlimits = vec![
        (libc::RLIMIT_FSIZE as libc::c_int, cfg.max_file_size),
        (libc::RLIMIT_CORE as libc::c_int, 0),
        (libc::RLIMIT_NOFILE as libc::c_int, 1024),
    ];
    if ids.inner != 0 {
        // Counted per user and user namespace; uid 0 of the host is exempt, so guest
        // commands are bounded by the cgroup's pids.max instead.
        rlimits.push((libc::RLIMIT_NPROC as libc::c_int, cfg.max_processes));
    }
    if cgroup.is_none() {
        rlimits.push((libc::RLIMIT_AS as libc::c_int, cfg.memory_limit));
    }
    let events_before = cgroup.map(RunCgroup::events).unwrap_or_default();
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Spawn(e.into()))?;
    let plan = spawn::Plan {
        root,
        uid_map: ids.uid_map.into_bytes(),
        gid_map: ids.gid_map.into_bytes(),
        deny_setgroups: ids.deny_setgroups,
        inner_uid: ids.inner,
        inner_gid: ids.inner,
        workdir: c_string(workdir),
        hostname: c_string("streamer-sandbox"),
        rlimits,
        cgroup_procs: match cgroup {
            Some(cg) => cg
                .procs_files()
                .map(|f| cpath(&f))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        },
        err_fd: err_write.as_raw_fd(),
        parent_pid: std::process::id() as libc::pid_t,
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());

    let spawned = spawn::spawn(&mut cmd, plan);
    drop(err_write);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Err(setup_error(err_read, e)),
    };
    drop(err_read);

    let writer = match (child.stdin.take(), stdin) {
        (Some(mut pipe), Some(data)) => {
            let data = data.to_vec();
            // A program that does not read its input gets EPIPE here, which is fine.
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let limit = cfg.output_limit;
    let out_reader = child
        .stdout
        .take()
        .map(|s| thread::spawn(move || read_capped(s, limit)));
    let err_reader = child
        .stderr
        .take()
        .map(|s| thread::spawn(move || read_capped(s, limit)));

    let timeout_at = Instant::now() + cfg.timeout;
    let deadline = session.deadline.map_or(timeout_at, |d| d.min(timeout_at));
    enum Stop {
        Timeout,
        Deadline,
        Cancelled,
    }
    let mut stopped = None;
    // Woken the moment the command exits (a pidfd is readable then), else every 10 ms to
    // look at the cancel flag and the clock. The pid cannot be reused before `try_wait`
    // reaps it, so the descriptor names our child.
    let exited = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    let status = loop {
        match child.try_wait().map_err(SandboxError::Wait)? {
            Some(status) => break status,
            None => {
                let now = Instant::now();
                if session.cancel.is_cancelled() {
                    stopped = Some(Stop::Cancelled);
                } else if now >= deadline {
                    stopped = Some(if now >= timeout_at {
                        Stop::Timeout
                    } else {
                        Stop::Deadline
                    });
                }
                if stopped.is_some() {
                    // Killing the intermediate kills the namespace's init (parent-death
                    // signal), and with it every process of the command.
                    let _ = child.kill();
                    break child.wait().map_err(SandboxError::Wait)?;
                }
                wait_exit(exited.as_ref(), Duration::from_millis(10));
            }
        }
    };
    let (stdout, stdout_truncated) = join_reader(out_reader);
    let (stderr, stderr_truncated) = join_reader(err_reader);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let mut output = Output {
        status,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        limits_hit: Vec::new(),
    };
    let events_after = cgroup.map(RunCgroup::events).unwrap_or_default();
    let events = (
        events_after.0 > events_before.0,
        events_after.1 > events_before.1,
    );
    output.limits_hit = detect_limits(&output, events);

    match stopped {
        Some(Stop::Timeout) => {
            return Err(SandboxError::Timeout {
                secs: cfg.timeout.as_secs(),
                output: Box::new(output),
            });
        }
        Some(Stop::Deadline) => {
            return Err(SandboxError::RunDeadline {
                output: Some(Box::new(output)),
            });
        }
        Some(Stop::Cancelled) => {
            return Err(SandboxError::Cancelled {
                output: Some(Box::new(output)),
            });
        }
        None => {}
    }
    if !output.success() {
        let fatal = [
            LimitHit::Memory,
            LimitHit::Processes,
            LimitHit::FileSize,
            LimitHit::ScratchFull,
        ];
        if let Some(limit) = fatal.into_iter().find(|l| output.limits_hit.contains(l)) {
            return Err(SandboxError::Limit {
                limit,
                output: Box::new(output),
            });
        }
    }
    Ok(output)
}

fn setup_error(err_read: OwnedFd, spawn_error: io::Error) -> SandboxError {
    let mut msg = [0u8; 8];
    let mut file = std::fs::File::from(err_read);
    if file.read_exact(&mut msg).is_ok() {
        let step = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let errno = i32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
        if let Some(step) = spawn::Step::from_u32(step) {
            return SandboxError::Setup {
                step: step.name(),
                source: io::Error::from_raw_os_error(errno),
            };
        }
    }
    SandboxError::Spawn(spawn_error)
}

fn read_capped(mut stream: impl Read, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if truncated {
        kept.extend_from_slice(
            format!("\n[streamer sandbox: output truncated at {limit} bytes]\n").as_bytes(),
        );
    }
    (kept, truncated)
}

fn join_reader(reader: Option<thread::JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    reader.and_then(|r| r.join().ok()).unwrap_or_default()
}

/// Waits until the process behind `pidfd` exits or `at_most` passes; sleeps `at_most` when
/// there is no pidfd (kernels before 5.3).
fn wait_exit(pidfd: Option<&OwnedFd>, at_most: Duration) {
    let Some(fd) = pidfd else {
        thread::sleep(at_most);
        return;
    };
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: at_most.as_nanos().min(999_999_999) as _,
    };
    // EINTR or an error only shortens the wait; the caller looks again.
    let _ = rustix::event::poll(&mut fds, Some(&timeout));
}

/// `events`: (an OOM kill, a refused fork) happened in the run's cgroup during the command.
fn detect_limits(output: &Output, events: (bool, bool)) -> Vec<LimitHit> {
    let mut hits = Vec::new();
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    let said = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
    let (oom, pids_max) = events;
    if oom
        || said(&[
            "out of memory",
            "cannot allocate memory",
            "memory exhausted",
        ])
    {
        hits.push(LimitHit::Memory);
    }
    if pids_max || said(&["can't fork", "resource temporarily unavailable"]) {
        hits.push(LimitHit::Processes);
    }
    let xfsz = output.status.signal() == Some(libc::SIGXFSZ)
        || output.status.code() == Some(128 + libc::SIGXFSZ);
    if xfsz || said(&["file too large"]) {
        hits.push(LimitHit::FileSize);
    }
    if said(&["no space left on device"]) {
        hits.push(LimitHit::ScratchFull);
    }
    if output.stdout_truncated || output.stderr_truncated {
        hits.push(LimitHit::Output);
    }
    hits
}

/// The applets `busybox --list` reports (busybox is a trusted, root-owned system binary).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, SandboxError> {
    let out = Command::new(busybox)
        .arg("--list")
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|_| SandboxError::BusyboxMissing(busybox.to_owned()))?;
    if !out.status.success() {
        return Err(SandboxError::BusyboxMissing(busybox.to_owned()));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| {
            !a.is_empty()
                && *a != "busybox"
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"[]_.-".contains(&b))
        })
        .map(str::to_owned)
        .collect();
    // Plan scripts call these by name; older busybox builds list `sh` only as `ash`.
    for name in ["sh", "ash"] {
        if !applets.iter().any(|a| a == name) {
            applets.push(name.to_owned());
        }
    }
    applets.sort();
    applets.dedup();
    Ok(applets)
}

fn cpath(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::NulInPath(path.to_owned()))
}

/// For strings built here, which never contain NUL.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}
