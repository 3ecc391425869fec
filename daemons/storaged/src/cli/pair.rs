//! `storaged pair ...`: a pair member's replication, as clusterd drives it (for operators
//! looking into a pair, and for tests without clusterd).

use std::process::ExitCode;

use clap::Subcommand;

use super::{ClientArgs, Failure};

#[derive(Debug, Subcommand)]
pub enum PairCommand {
    /// Show the groups served here, the peer's state, degraded volumes, the resync.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Serve group HOME (the volumes of node HOME's storage address) at EPOCH.
    Own {
        home: String,
        epoch: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop serving group HOME, now at EPOCH (its clients' connections close).
    Disown {
        home: String,
        epoch: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark the peer Outdated (writes go on without it), or with --back, not.
    Outdate {
        #[arg(long)]
        back: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send the peer every region it may lack of the volumes served here.
    Resync {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(cmd: PairCommand) -> Result<ExitCode, Failure> {
    super::volume::runtime()?.block_on(async move {
        let (client, what) = match &cmd {
            PairCommand::Status { client } => (client, String::new()),
            PairCommand::Own { client, home, .. } => (client, format!("serving group {home}")),
            PairCommand::Disown { client, home, .. } => {
                (client, format!("no longer serving group {home}"))
            }
            PairCommand::Outdate { client, back } => (
                client,
                if *back {
                    "the peer is back"
                } else {
                    "the peer is marked Outdated"
                }
                .into(),
            ),
            PairCommand::Resync { client } => (client, String::new()),
        };
        let c = super::volume::connect(client).await?;
        let p = c.pair();
        let remote = |e: zbus::Error| Failure::from(crate::control::client::ClientError::from(e));
        match &cmd {
            PairCommand::Status { .. } => {
                let s = p.status().await.map_err(remote)?;
                let v: serde_json::Value = serde_json::from_str(&s)
                    .map_err(|e| Failure::Local(format!("storaged's answer: {e}")))?;
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or(s));
                return Ok(ExitCode::SUCCESS);
            }
            PairCommand::Resync { .. } => {
                let s = p.resync().await.map_err(remote)?;
                println!("{s}");
                return Ok(ExitCode::SUCCESS);
            }
            PairCommand::Own { home, epoch, .. } => p.own(home, *epoch).await,
            PairCommand::Disown { home, epoch, .. } => p.disown(home, *epoch).await,
            PairCommand::Outdate { back, .. } => p.set_peer_outdated(!back).await,
        }
        .map_err(remote)?;
        super::output::done(&what, client.json);
        Ok(ExitCode::SUCCESS)
    })
}
