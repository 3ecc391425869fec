//! The `deployd` program: its command line, the order it starts in (leftovers of
//! interrupted plan runs cleaned, the certificate made beside the state's opening, the first
//! Administrator beside the API, storaged waited for, since init starts it at the same time)
//! and the HTTPS server. `src/main.rs` and the appliance's
//! multi-call binary both call [`main`].
//!
//! Exit status: 0 after a clean shutdown; 1 if it cannot start (state directory, certificate,
//! address in use) or the server fails.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::services::plan_runs::RunLimits;
use crate::state::{AppState, Config};
use crate::tls::{TlsFiles, ensure_certificate};

#[derive(Debug, Parser)]
#[command(
    name = "deployd",
    version,
    about = "Streamer REST API and deployment manager"
)]
struct Args {
    /// Metadata database, audit log and TLS certificate.
    #[arg(long)]
    state_dir: PathBuf,
    /// HTTPS address of the API.
    #[arg(long, default_value = appliance_layout::DEV_API_ADDRESS)]
    listen: SocketAddr,
    /// storaged's control socket.
    #[arg(long, env = "STORAGED_CONTROL", default_value = storaged::control::DEFAULT_SOCKET)]
    storaged: PathBuf,
    /// storaged's NBD address (plan runs attach OS volumes there; modules boot from it).
    #[arg(long, default_value = Config::DEFAULT_NBD)]
    nbd: SocketAddr,
    /// storaged's NBD address as compute modules reach it (the appliance's deployment-network
    /// address), given to them as their boot target; default: --nbd.
    #[arg(long)]
    boot_nbd: Option<SocketAddr>,
    /// The appliance's init: POST /rest/appliance/shutdown signals it (SIGUSR2 power off,
    /// SIGUSR1 reboot). Without it that request is refused.
    #[arg(long)]
    power_control_pid: Option<i32>,
    /// Plan runs at once; further deploys and captures queue.
    #[arg(long, default_value_t = Config::DEFAULT_CONCURRENT_RUNS)]
    max_concurrent_runs: usize,
    /// Wall-clock limit of one plan run (a deploy's or capture's build plan), in minutes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1440))]
    plan_run_minutes: u64,
    /// Memory of everything one plan run starts, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(64..))]
    plan_run_memory_mib: u64,
    /// Processes of one plan run.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..))]
    plan_run_processes: u64,
    /// CPU of one plan run, in percent of one CPU.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(10..))]
    plan_run_cpu_percent: u32,
    /// Largest upload accepted (golden images, artifact bundles), in MiB.
    #[arg(long, default_value_t = Config::DEFAULT_MAX_UPLOAD >> 20)]
    max_upload_mib: u64,
    /// A file holding a new Administrator password (written by the serial console's
    /// password reset): applied at start, then deleted.
    #[arg(long)]
    admin_password_reset: Option<PathBuf>,
    /// Close sessions idle for this many minutes.
    #[arg(long, default_value_t = 60)]
    session_idle_minutes: u64,
    /// clusterd's control socket: on a paired appliance the metadata store is the pair's
    /// etcd, and only the active node takes changes. Without it: a single appliance.
    #[arg(long)]
    clusterd: Option<PathBuf>,
    /// clusterd's state directory: pairing writes the pair's description and certificates
    /// there.
    #[arg(long, default_value = appliance_layout::CLUSTERD_DATA)]
    cluster_state: PathBuf,
}

/// `deployd` with these arguments (the first is the program name), to its exit status.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEPLOYD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse_from(args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deployd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// How long a starting deployd waits for storaged before it serves without it (requests that
/// need volumes then fail with 503 until storaged answers).
const STORAGED_WAIT: Duration = Duration::from_secs(30);

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config {
        state_dir: args.state_dir.clone(),
        storaged_socket: args.storaged,
        session_idle_timeout: Duration::from_secs(args.session_idle_minutes * 60),
        admin_password: std::env::var("STREAMER_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
        max_upload_bytes: args.max_upload_mib.saturating_mul(1 << 20),
        max_image_bytes: Config::DEFAULT_MAX_IMAGE,
        nbd_addr: args.nbd,
        boot_nbd_addr: args.boot_nbd,
        power_control_pid: args.power_control_pid,
        max_concurrent_runs: args.max_concurrent_runs,
        run_limits: RunLimits {
            timeout: Duration::from_secs(args.plan_run_minutes * 60),
            memory: args.plan_run_memory_mib << 20,
            processes: args.plan_run_processes,
            cpu_millis: args.plan_run_cpu_percent * 10,
        },
        clusterd_socket: args.clusterd.clone(),
        cluster_state_dir: args.cluster_state.clone(),
        api_port: args.listen.port(),
    };
    // Plan-script runs interrupted by a crash left mounts, loop devices and scratch file
    // systems behind: remove them before anything new runs.
    let runs = plan_engine::run::RunConfig::new(args.state_dir.join("runs"));
    for problem in plan_engine::run::cleanup_leftovers(&runs) {
        tracing::warn!("cleaning up after an interrupted plan-script run: {problem}");
    }
    // A first start makes the certificate, while the state opens, and the Administrator
    // (an argon2 hash), beside the API: logins wait for it, nothing else does.
    let tls = TlsFiles::in_state_dir(&args.state_dir);
    let names = vec!["localhost".to_string(), args.listen.ip().to_string()];
    let certificate = {
        let tls = tls.clone();
        std::thread::spawn(move || ensure_certificate(&tls, &names))
    };
    let (state, pending) = AppState::open_deferred(config)?;
    let initial = args.state_dir.join(crate::state::INITIAL_PASSWORD_FILE);
    if let Some(password) = pending.as_ref().and_then(|p| p.generated_password()) {
        eprintln!("deployd: first start: user Administrator, password {password}");
        eprintln!("deployd: (set STREAMER_ADMIN_PASSWORD before the first start to choose it)");
        // Kept (0600, on the appliance's data partition) until the password is changed, so
        // the serial console can show it; deleted by a password change or reset.
        crate::services::files::write_private(&initial, format!("{password}\n").as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", initial.display()))?;
    }
    let state = Arc::new(state);
    {
        let state = Arc::clone(&state);
        let reset = args.admin_password_reset.clone();
        std::thread::spawn(move || {
            match crate::auth::set_up(&state.users, pending, reset.as_deref(), &initial) {
                Ok(()) => state.accounts.set_ready(),
                Err(e) => {
                    // As a failed start: init restarts deployd (a loop becomes an alert).
                    tracing::error!("{:#}", anyhow::Error::from(e));
                    std::process::exit(1);
                }
            }
        });
    }
    let generated_certificate = certificate
        .join()
        .map_err(|_| anyhow::anyhow!("the certificate generator panicked"))??;
    if generated_certificate {
        tracing::info!(
            "generated a self-signed certificate in {}",
            tls.cert.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // storaged starts beside us (init starts both at once): the clean-up of interrupted
        // work needs it, and the API listens only after that clean-up.
        if let Err(e) = state
            .services
            .storage
            .wait_until_reachable(STORAGED_WAIT)
            .await
        {
            tracing::error!(
                "storaged did not answer within {} s: {e}; serving without it",
                STORAGED_WAIT.as_secs()
            );
        }
        crate::server::serve(state, crate::server::Listen::Address(args.listen), tls).await?;
        Ok::<(), anyhow::Error>(())
    })
}
