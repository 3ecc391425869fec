//! `storaged serve`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::control::DEFAULT_SOCKET;
use crate::export::ExportCatalog;
use crate::store::Store;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::Failure;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory holding the catalog and the layer files (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for NBD clients (the NBD port is 10809).
    #[arg(long, default_value = appliance_layout::LOCAL_NBD_ADDRESS)]
    nbd_listen: SocketAddr,
    /// Control socket (D-Bus peer to peer).
    #[arg(long, env = "STORAGED_CONTROL", default_value = DEFAULT_SOCKET)]
    control: PathBuf,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STORAGED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = Arc::new(
        Store::open(&args.data_dir)
            .map_err(|e| Failure::Local(crate::control::error::error_chain(&e)))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let local = |what: &str, e: std::io::Error| Failure::Local(format!("{what}: {e}"));
        let listener = tokio::net::TcpListener::bind(args.nbd_listen)
            .await
            .map_err(|e| local(&format!("cannot listen on {}", args.nbd_listen), e))?;
        tracing::info!(
            "storaged {} serving {} on nbd://{}",
            env!("CARGO_PKG_VERSION"),
            args.data_dir.display(),
            args.nbd_listen
        );
        let catalog: Arc<dyn ExportCatalog> = store.clone();
        let mut nbd = tokio::spawn(crate::nbd::serve(listener, catalog));
        let control_path = args.control.clone();
        let control_store = Arc::clone(&store);
        let mut control = tokio::spawn(async move {
            crate::control::server::serve(&control_path, control_store).await
        });
        let mut term = signal(SignalKind::terminate()).map_err(|e| local("signals", e))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| local("signals", e))?;
        let outcome = tokio::select! {
            _ = term.recv() => Ok(()),
            _ = int.recv() => Ok(()),
            r = &mut nbd => Err(format!("NBD server stopped: {r:?}")),
            r = &mut control => Err(format!("control interface stopped: {r:?}")),
        };
        tracing::info!("shutting down: syncing open volumes");
        if let Err(e) = store.sync_all() {
            tracing::error!("sync on shutdown failed: {e}");
        }
        let _ = std::fs::remove_file(&args.control);
        outcome.map(|()| ExitCode::SUCCESS).map_err(Failure::Local)
    })
}
