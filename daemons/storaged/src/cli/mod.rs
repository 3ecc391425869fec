//! Command-line parsing and dispatch: the `storaged` program (`src/main.rs` and the
//! appliance's multi-call binary both call [`main`]).

mod output;
mod pair;
mod serve;
mod volume;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::control::DEFAULT_SOCKET;

#[derive(Debug, Parser)]
#[command(
    name = "storaged",
    version,
    about = "Streamer volume store and NBD boot-volume service"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: serve volumes over NBD and the control socket.
    Serve(serve::ServeArgs),
    /// Manage volumes on a running daemon.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage which volumes are served over NBD, and to which clients.
    #[command(subcommand)]
    Export(volume::ExportCommand),
    /// A pair member's replication: groups served, the peer, the resync.
    #[command(subcommand)]
    Pair(pair::PairCommand),
}

/// Options shared by every command that talks to the daemon.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Control socket of the daemon.
    #[arg(long, env = "STORAGED_CONTROL", default_value = DEFAULT_SOCKET, global = true)]
    control: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

/// A failure, with the exit status it maps to.
#[derive(Debug)]
pub enum Failure {
    /// The daemon refused or failed the request.
    Refused(String),
    /// The daemon could not be reached, or a local file could not be used.
    Local(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Self::Refused(m) | Self::Local(m) => m,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Refused(_) => ExitCode::from(1),
            Self::Local(_) => ExitCode::from(3),
        }
    }
}

impl From<crate::control::client::ClientError> for Failure {
    fn from(e: crate::control::client::ClientError) -> Self {
        use crate::control::client::ClientError;
        match e {
            ClientError::Remote(m) => Self::Refused(m),
            other => Self::Local(crate::control::error::error_chain(&other)),
        }
    }
}

/// `storaged` with these arguments (the first is the program name), to its exit status.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storaged: {}", e.message());
            e.exit_code()
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Volume(cmd) => volume::run_volume(cmd),
        Command::Export(cmd) => volume::run_export(cmd),
        Command::Pair(cmd) => pair::run(cmd),
    }
}
