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
    /// Address for iSCSI initiators (the iSCSI port is 3260); none: no iSCSI target.
    #[arg(long)]
    iscsi_listen: Option<SocketAddr>,
    /// Control socket (D-Bus peer to peer).
    #[arg(long, env = "STORAGED_CONTROL", default_value = DEFAULT_SOCKET)]
    control: PathBuf,
    #[command(flatten)]
    replication: ReplicationArgs,
}

/// The pair's replication link (all of `--cluster-id`, `--node` and one of the addresses, or
/// none: a single appliance).
#[derive(Debug, Args)]
struct ReplicationArgs {
    /// A pair member: replicate as `DIR/replication.json` says, with the pair's certificates
    /// in `DIR/tls/` (clusterd's state directory; both written by pairing).
    #[arg(long, conflicts_with_all = ["replication_listen", "replicate_to", "cluster_id", "node", "pair_tls"])]
    pair_dir: Option<PathBuf>,
    /// Where the other node's storaged sends its volumes' writes to this one.
    #[arg(long, requires_all = ["cluster_id", "node"])]
    replication_listen: Option<std::net::SocketAddr>,
    /// The other node's replication address: every write to a volume here is acknowledged
    /// only once it holds it too.
    #[arg(long, requires_all = ["cluster_id", "node"])]
    replicate_to: Option<std::net::SocketAddr>,
    /// The pair's id (both nodes give the same).
    #[arg(long)]
    cluster_id: Option<String>,
    /// This node's name in the pair.
    #[arg(long)]
    node: Option<String>,
    /// The pair's certificates (`ca.pem`, `cert.pem`, `key.pem`: clusterd's `tls/`):
    /// replication is mutual TLS with them.
    #[arg(long)]
    pair_tls: Option<PathBuf>,
    /// Replicate over plain TCP (tests on one host; never on an enclosure network).
    #[arg(long, conflicts_with = "pair_tls")]
    replication_without_tls: bool,
    /// Serve this node's own volumes from the start (tests without clusterd). Otherwise a
    /// pair member serves no writable volume until clusterd says which groups it owns.
    #[arg(long)]
    serve_own_volumes: bool,
}

impl ReplicationArgs {
    /// Fills the options from `--pair-dir`'s files.
    fn resolve(&mut self) -> Result<(), Failure> {
        let Some(dir) = &self.pair_dir else {
            return Ok(());
        };
        let f = crate::replication::PairFile::load(dir).map_err(|e| {
            Failure::Local(format!(
                "{e}: the pair's replication settings (clusterd writes them when the \
                 appliance is paired)"
            ))
        })?;
        self.replication_listen = Some(f.listen);
        self.replicate_to = Some(f.peer);
        self.cluster_id = Some(f.cluster_id);
        self.node = Some(f.node);
        self.pair_tls = Some(dir.join("tls"));
        Ok(())
    }

    fn used(&self) -> bool {
        self.replication_listen.is_some() || self.replicate_to.is_some()
    }

    fn hello(&self) -> crate::replication::Hello {
        crate::replication::Hello {
            cluster_id: self.cluster_id.clone().unwrap_or_default(),
            node: self.node.clone().unwrap_or_default(),
        }
    }

    fn files(&self) -> Result<Option<crate::replication::tls::TlsFiles>, Failure> {
        match (&self.pair_tls, self.replication_without_tls) {
            (Some(dir), _) => Ok(Some(crate::replication::tls::TlsFiles::in_dir(dir))),
            (None, true) => Ok(None),
            (None, false) => Err(Failure::Local(
                "replication needs the pair's certificates (--pair-tls DIR); \
                 --replication-without-tls is for tests on one host"
                    .into(),
            )),
        }
    }
}

pub fn run(mut args: ServeArgs) -> Result<ExitCode, Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STORAGED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    args.replication.resolve()?;
    let rep = &args.replication;
    let files = if rep.used() { rep.files()? } else { None };
    let tls_err = |e: crate::replication::tls::TlsError| Failure::Local(e.to_string());
    let link = match rep.replicate_to {
        Some(peer) => {
            let tls = files
                .as_ref()
                .map(crate::replication::tls::client_config)
                .transpose()
                .map_err(tls_err)?;
            tracing::info!("replicating every volume's writes to {peer}");
            let hello = rep.hello();
            let ownership = Arc::new(crate::ownership::Ownership::node(
                &hello.node,
                rep.serve_own_volumes,
            ));
            Some(Arc::new(crate::replication::PeerReplica::with_tls(
                peer, hello, tls, ownership,
            )))
        }
        None => None,
    };
    let replica: Arc<dyn crate::volume::Replica> = match &link {
        Some(l) => l.clone(),
        None => Arc::new(crate::volume::LocalOnly),
    };
    let store = Arc::new(
        Store::open_with_replica(&args.data_dir, replica)
            .map_err(|e| Failure::Local(crate::control::error::error_chain(&e)))?,
    );
    let pair = link
        .map(|l| crate::replication::pair::PairLink::new(Arc::clone(&store), l, &rep.hello().node));
    if let Some(addr) = rep.replication_listen {
        let tls = files
            .as_ref()
            .map(crate::replication::tls::server_config)
            .transpose()
            .map_err(tls_err)?;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| Failure::Local(format!("cannot listen on {addr}: {e}")))?;
        let server =
            crate::replication::ReplicaServer::with_tls(Arc::clone(&store), rep.hello(), tls);
        tracing::info!("taking the other node's replication on {addr}");
        std::thread::Builder::new()
            .name("replica-server".into())
            .spawn(move || server.serve(listener))
            .map_err(|e| Failure::Local(format!("cannot start the replica server: {e}")))?;
    }
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
        let mut nbd = tokio::spawn(crate::nbd::serve(listener, Arc::clone(&catalog)));
        let mut iscsi = match args.iscsi_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| local(&format!("cannot listen on {addr}"), e))?;
                tracing::info!("iSCSI target on {addr}");
                tokio::spawn(crate::iscsi::serve(l, catalog))
            }
            None => tokio::spawn(std::future::pending()),
        };
        let control_path = args.control.clone();
        let control_store = Arc::clone(&store);
        let mut control = tokio::spawn(async move {
            crate::control::server::serve(&control_path, control_store, pair).await
        });
        let mut term = signal(SignalKind::terminate()).map_err(|e| local("signals", e))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| local("signals", e))?;
        let outcome = tokio::select! {
            _ = term.recv() => Ok(()),
            _ = int.recv() => Ok(()),
            r = &mut nbd => Err(format!("NBD server stopped: {r:?}")),
            r = &mut iscsi => Err(format!("iSCSI target stopped: {r:?}")),
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
