//! clusterd's command line: the node daemon (init starts it between storaged and deployd),
//! and the etcd member of a node or of the witness. `src/main.rs` and the appliance's
//! multi-call binary both call [`main`].

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::ClusterConfig;
use crate::{Single, control, node};

#[derive(Debug, Parser)]
#[command(name = "clusterd", version, about = "Streamer's cluster daemon")]
struct Args {
    /// clusterd's state: the pair's description (cluster.json), etcd's data.
    #[arg(long, default_value = appliance_layout::CLUSTERD_DATA, global = true)]
    state_dir: PathBuf,
    /// The control socket (D-Bus, peer to peer).
    #[arg(long, default_value = appliance_layout::CLUSTERD_SOCKET)]
    control: PathBuf,
    /// Where the serial console reads this node's role and the pair's active alerts.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// storaged's control socket: on a pair, clusterd decides which node serves each group
    /// of OS volumes and storaged carries it out. Without it, storage is not managed.
    #[arg(long)]
    storaged: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs this member's etcd (a pair node's, or the witness's) as the pair's description
    /// says; replaces this process with etcd.
    Etcd,
    /// Runs the witness: the third etcd member, on any host of the enclosure network
    /// (the same as `etcd` on a member whose role is witness). `witness join` first makes
    /// this host the witness of a pair.
    Witness {
        #[command(subcommand)]
        action: Option<WitnessAction>,
    },
}

#[derive(Debug, Subcommand)]
enum WitnessAction {
    /// Joins the pair being made on the appliance at --api with the witness token it showed;
    /// retries while the other appliance has not joined yet, until the token expires.
    Join {
        /// The first appliance's API, e.g. https://10.0.0.1 or https://10.0.0.1:8443.
        #[arg(long)]
        api: String,
        /// The witness token (`witnessToken` of POST /rest/appliance/pair).
        #[arg(long)]
        token: String,
        /// This host's address on the enclosure network (the one the pair was planned with).
        #[arg(long)]
        address: std::net::IpAddr,
    },
}

/// Makes this host the witness of the pair being made at `api`.
async fn witness_join(
    state_dir: &std::path::Path,
    api: &str,
    token: &str,
    address: std::net::IpAddr,
) -> anyhow::Result<()> {
    use crate::pairing::{self, JoinRequest, PairError};
    let creds = pairing::credentials(pairing::WITNESS_NAME)?;
    let req = JoinRequest {
        token: token.trim().into(),
        version: pairing::VERSION.into(),
        name: pairing::WITNESS_NAME.into(),
        address,
        role: crate::config::MemberRole::Witness,
        csr: creds.csr_pem.clone(),
        storage_ip: None,
    };
    let api = if api.starts_with("https://") {
        api.to_string()
    } else {
        format!("https://{api}")
    };
    let end = std::time::Instant::now() + pairing::TOKEN_LIFETIME;
    let answer = loop {
        match pairing::request_join(&api, &req).await {
            Ok(a) => break a,
            Err(PairError::Refused { code, .. })
                if code == "PAIR_NOT_FORMED" && std::time::Instant::now() < end =>
            {
                eprintln!("clusterd: the other appliance has not joined yet; retrying in 5 s");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            Err(e) => bail!("{e} ({})", e.recommended_action()),
        }
    };
    pairing::install(state_dir, &answer, &creds.key_pem)?;
    println!(
        "this host is the witness of pair {}; start it with: clusterd --state-dir {} witness",
        answer.config.cluster_id,
        state_dir.display()
    );
    Ok(())
}

/// `clusterd` with these arguments (the first is the program name), to its exit status.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLUSTERD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The pair's heartbeat must not starve behind bulk work (an image import, a resync on a
/// busy machine): clusterd and its etcd run at nice -10 (inherited by etcd through exec).
/// A lease renewed late is a failover nobody wanted.
fn raise_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, -10) {
        tracing::warn!("cannot raise clusterd's priority (nice -10): {e}");
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ClusterConfig::load(&args.state_dir)?;
    if !matches!(
        args.command,
        Some(Command::Witness {
            action: Some(WitnessAction::Join { .. })
        })
    ) {
        raise_priority();
    }
    match args.command {
        Some(Command::Witness {
            action:
                Some(WitnessAction::Join {
                    api,
                    token,
                    address,
                }),
        }) => tokio::runtime::Runtime::new()?.block_on(witness_join(
            &args.state_dir,
            &api,
            &token,
            address,
        )),
        Some(Command::Etcd) | Some(Command::Witness { action: None }) => {
            let Some(cfg) = cfg else {
                bail!(
                    "{} has no cluster.json: this appliance is not paired, so it runs no etcd",
                    args.state_dir.display()
                );
            };
            let member = cfg.etcd_member(&args.state_dir.join("etcd"));
            let err = member.command(&etcd_member::etcd_binary()).exec();
            Err(err).context("starting etcd")
        }
        None => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                match cfg {
                    None => {
                        let me = std::fs::read_to_string("/proc/sys/kernel/hostname")
                            .map(|h| h.trim().to_string())
                            .unwrap_or_else(|_| "streamer".into());
                        tracing::info!("not paired: a single appliance");
                        if let Some(path) = &args.summary {
                            crate::node::write_summary(path, "single appliance (not paired)", &[]);
                        }
                        control::serve(&args.control, Arc::new(Single { me })).await?;
                    }
                    Some(cfg) => {
                        tracing::info!("pair member {} of cluster {}", cfg.me, cfg.cluster_id);
                        // A pair made before storage was replicated has no storaged settings:
                        // they take effect at storaged's next start.
                        if let Some(f) = cfg.replication()
                            && !args
                                .state_dir
                                .join(storaged::replication::PairFile::FILE)
                                .exists()
                            && let Err(e) = f.save(&args.state_dir)
                        {
                            tracing::error!("writing storaged's replication settings: {e}");
                        }
                        let shared = node::Shared::new(cfg, args.summary.clone());
                        tokio::spawn(node::run(Arc::clone(&shared)));
                        if let Some(socket) = args.storaged.clone() {
                            tokio::spawn(crate::storage::run(Arc::clone(&shared), socket));
                        }
                        control::serve(&args.control, crate::view(&shared)).await?;
                    }
                }
                Ok(())
            })
        }
    }
}
