//! Running the API: HTTPS listener, certificate reload on SIGHUP, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

use crate::state::AppState;
use crate::tls::TlsFiles;

/// Where the API listens.
#[derive(Debug)]
pub enum Listen {
    /// A socket bound already (tests bind port 0 to learn it).
    Bound(std::net::TcpListener),
    /// An address bound only once deployd can serve: its signal handlers are in and
    /// interrupted work is cleaned up, so a connection that succeeds is served at once (init
    /// takes a successful connect for `ready`).
    Address(SocketAddr),
}

impl From<std::net::TcpListener> for Listen {
    fn from(l: std::net::TcpListener) -> Self {
        Listen::Bound(l)
    }
}

/// Serves the API until SIGTERM or SIGINT.
pub async fn serve(
    state: Arc<AppState>,
    listen: impl Into<Listen>,
    tls: TlsFiles,
) -> std::io::Result<()> {
    // One process-wide crypto provider (ring): we build without aws-lc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the TLS certificate {} or its key {} is unusable ({e}): replace them, or \
                     delete both and restart to get a new self-signed certificate",
                    tls.cert.display(),
                    tls.key.display()
                ),
            )
        })?;
    let handle = axum_server::Handle::new();
    tokio::spawn(signals(handle.clone(), config.clone(), tls));
    {
        let st = Arc::clone(&state);
        tokio::spawn(async move { st.services.storage.follow().await });
    }
    if state.services.cluster.refusal().is_none() {
        recover(&state).await;
    }
    // On a pair: follow the role; a node that becomes active recovers the work the old
    // active left (its deploys and captures end as Error with nothing half-made left).
    let cluster = Arc::clone(&state.services.cluster);
    let st = Arc::clone(&state);
    let runtime = tokio::runtime::Handle::current();
    let watch = cluster.watch(move || {
        let st = Arc::clone(&st);
        runtime.spawn(async move {
            if let Err(e) = st.services.cluster.bring_single_appliance_records() {
                tracing::error!("bringing this appliance's records into the pair's store: {e}");
            }
            if let Err(e) = crate::state::first_start_writes(st.services.meta.as_ref()) {
                tracing::error!("first writes of the new active node: {e}");
            }
            ensure_administrator(&st);
            match st.services.tasks.fail_interrupted() {
                Ok(0) => {}
                Ok(n) => tracing::warn!("{n} task(s) of the old active node were marked failed"),
                Err(e) => tracing::error!("failing the old active node's tasks: {e}"),
            }
            recover(&st).await;
        });
    });
    // On a thread and a runtime of its own: the role's deadline must stay current while
    // requests keep the API's workers busy (an image upload on a one-CPU appliance), or
    // writes would be refused as if the hold on the role had lapsed.
    std::thread::Builder::new()
        .name("cluster-watch".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(watch),
                Err(e) => tracing::error!("cannot follow the pair's role: {e}"),
            }
        })
        .map_err(|e| std::io::Error::other(format!("starting the role watch: {e}")))?;
    let listener = match listen.into() {
        Listen::Bound(l) => l,
        Listen::Address(addr) => std::net::TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?,
    };
    // The web console's files beside the API (same port, same certificate).
    let app = crate::ui::router().merge(crate::rest::router(state));
    tracing::info!("REST API on https://{}", listener.local_addr()?);
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, config)
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// Cleans up after work interrupted by a stop (or by the loss of the old active node).
async fn recover(state: &AppState) {
    match crate::domain::deploy::recovery::clean_interrupted(&state.services).await {
        Ok(r) if r != Default::default() => {
            tracing::warn!("cleaned up after interrupted work: {r:?}")
        }
        Ok(_) => {}
        Err(e) => tracing::error!("cleaning up after interrupted deploys failed: {e}"),
    }
}

async fn signals(handle: axum_server::Handle, config: RustlsConfig, tls: TlsFiles) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match config.reload_from_pem_file(&tls.cert, &tls.key).await {
                    Ok(()) => tracing::info!("TLS certificate reloaded from {}", tls.cert.display()),
                    Err(e) => tracing::error!("TLS certificate reload failed (keeping the old one): {e}"),
                }
            }
        }
    }
    tracing::info!("shutting down");
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
}

/// On a node that has just become active: a pair whose store has no Administrator yet (its
/// standby started first) gets one, as a single appliance's first start makes it.
fn ensure_administrator(st: &AppState) {
    let made =
        crate::auth::PendingAdministrator::prepare(&st.users, st.config.admin_password.clone())
            .and_then(|pending| match pending {
                None => Ok(None),
                Some(p) => {
                    let generated = p.generated_password().map(str::to_owned);
                    p.create(&st.users).map(|()| Some(generated))
                }
            });
    match made {
        Ok(None) => {}
        Ok(Some(generated)) => {
            tracing::warn!("made the pair's Administrator user");
            if let Some(password) = generated {
                let initial = st
                    .config
                    .state_dir
                    .join(crate::state::INITIAL_PASSWORD_FILE);
                if let Err(e) = crate::services::files::write_private(
                    &initial,
                    format!("{password}\n").as_bytes(),
                ) {
                    tracing::error!("cannot write {}: {e}", initial.display());
                }
            }
        }
        Err(e) => tracing::error!("making the pair's Administrator user: {e}"),
    }
    st.accounts.set_ready();
}
