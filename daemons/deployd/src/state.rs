//! Everything a request handler can reach, and opening it: the composition root of the
//! daemon (the store, the services, the accounts and sessions, the audit log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AccountsReady, LoginLimiter, PendingAdministrator, Sessions, Users};
use crate::domain::secrets::{self, Secrets};
use crate::domain::{deployment_groups, records};
use crate::meta::{EtcdStore, MetaStore, RedbStore, SealedStore, SecretKey, etcd_store};
use crate::services::audit::AuditLog;
use crate::services::cluster::{self, Cluster};
use crate::services::files::StateFiles;
use crate::services::plan_runs::{NbdRunner, PlanRuns, RunLimits};
use crate::services::storage::Storage;
use crate::services::tasks::Tasks;
use crate::services::{Services, Settings};

/// Settings of a deployd instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Metadata database, audit log, TLS certificate.
    pub state_dir: PathBuf,
    /// storaged's control socket (golden image and OS volume content).
    pub storaged_socket: PathBuf,
    /// Sessions idle longer than this are closed.
    pub session_idle_timeout: Duration,
    /// The first Administrator password (`STREAMER_ADMIN_PASSWORD`); generated if `None`.
    pub admin_password: Option<String>,
    /// Largest file accepted by an upload (golden images, artifact bundles).
    pub max_upload_bytes: u64,
    /// Largest disk image a golden image file may unpack to.
    pub max_image_bytes: u64,
    /// storaged's NBD server as this host reaches it: plan runs attach OS volumes there.
    pub nbd_addr: SocketAddr,
    /// storaged's NBD server as compute modules reach it (the boot target's address): the
    /// appliance's address on the deployment network; `None` = `nbd_addr`.
    pub boot_nbd_addr: Option<SocketAddr>,
    /// The appliance's init, signalled by `POST /rest/appliance/shutdown`; `None` (not on an
    /// appliance) refuses the request.
    pub power_control_pid: Option<i32>,
    /// Plan runs at once (attach, mount, sandbox); further deploys and captures queue.
    pub max_concurrent_runs: usize,
    /// What one plan run may use (wall clock, memory, processes, CPU).
    pub run_limits: RunLimits,
    /// clusterd's control socket: when clusterd says this appliance is paired, the metadata
    /// store is the pair's etcd and only the active node takes changes.
    pub clusterd_socket: Option<PathBuf>,
    /// clusterd's state directory: where pairing writes the pair's description and
    /// certificates.
    pub cluster_state_dir: PathBuf,
    /// The port the API listens on (what a joining member connects to).
    pub api_port: u16,
}

impl Config {
    /// What pairing works on.
    pub fn appliance(&self) -> crate::services::pairing::Appliance {
        crate::services::pairing::Appliance {
            state_dir: self.state_dir.clone(),
            cluster_state_dir: self.cluster_state_dir.clone(),
            power_control_pid: self.power_control_pid,
            api_certificate: crate::tls::TlsFiles::in_state_dir(&self.state_dir).cert,
        }
    }
}

impl Config {
    /// Default upload limit: 64 GiB.
    pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;
    /// Default unpacked image limit: 2 TiB.
    pub const DEFAULT_MAX_IMAGE: u64 = 2 << 40;
    /// storaged's default NBD address.
    pub const DEFAULT_NBD: &str = appliance_layout::LOCAL_NBD_ADDRESS;
    /// Default bound on concurrent plan runs.
    pub const DEFAULT_CONCURRENT_RUNS: usize = 4;
}

/// Failures opening the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Meta(#[from] crate::meta::MetaError),
    #[error("creating the Administrator user: {0}")]
    Users(String),
    #[error("recovering interrupted tasks: {0}")]
    Tasks(String),
    #[error("this appliance is paired but {0}")]
    Cluster(String),
}

pub use appliance_layout::INITIAL_PASSWORD_FILE;

pub use crate::meta::sealed::KEY_FILE as SECRET_KEY_FILE;

/// Shared state of the API.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    /// What the domain works with (the store, storaged, plan runs, tasks, files).
    pub services: Arc<Services>,
    pub users: Users,
    /// Logins wait for it while a start's account work (see [`AppState::open_deferred`])
    /// runs.
    pub accounts: AccountsReady,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    pub audit: AuditLog,
}

impl AppState {
    /// Opens the state directory. The second value is a generated Administrator password, to
    /// be shown once, on the very first start.
    pub fn open(config: Config) -> Result<(Self, Option<String>), StateError> {
        let (state, pending) = Self::open_deferred(config)?;
        let generated = pending
            .as_ref()
            .and_then(|p| p.generated_password().map(str::to_owned));
        crate::auth::set_up(&state.users, pending, None, Path::new(""))
            .map_err(|e| StateError::Users(e.to_string()))?;
        state.accounts.set_ready();
        Ok((state, generated))
    }

    /// Opens the state directory, leaving the first start's Administrator (returned) to be
    /// created by [`crate::auth::set_up`] beside the API: until `accounts` is set ready,
    /// logins wait.
    pub fn open_deferred(
        config: Config,
    ) -> Result<(Self, Option<PendingAdministrator>), StateError> {
        let dir = &config.state_dir;
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| StateError::Io(p, e)
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let files = StateFiles::new(dir);
        files.prepare().map_err(io(dir))?;
        let (raw, cluster) = open_store(&config, &files)?;
        // Secrets are sealed with a key kept in a file of its own (0600), never in the store.
        let key_path = dir.join(SECRET_KEY_FILE);
        let key = SecretKey::load_or_create(&key_path).map_err(io(&key_path))?;
        let sealed = SealedStore::new(raw, &key, Arc::new(Secrets));
        // A key that does not open the sealed secrets stops the start, naming the key file.
        for kind in secrets::KINDS {
            sealed.list(kind)?;
        }
        // Secrets stored before sealing existed are sealed once, now.
        let unsealed = sealed.unsealed_secrets(&secrets::KINDS)?;
        if !unsealed.is_empty() {
            tracing::info!("sealing {} records' secrets at rest", unsealed.len());
            sealed.apply(unsealed)?;
        }
        let meta: Arc<dyn MetaStore> = Arc::new(sealed);
        // On a pair, the active node does this when it takes the role (`on_becoming_active`).
        if cluster.refusal().is_none() {
            first_start_writes(meta.as_ref())?;
        }
        let users = Users::new(Arc::clone(&meta));
        // A standby takes no changes: the active node makes the Administrator if the pair
        // has none (when it takes the role, `server`).
        let pending = if cluster.refusal().is_none() {
            PendingAdministrator::prepare(&users, config.admin_password.clone())
                .map_err(|e| StateError::Users(e.to_string()))?
        } else {
            None
        };
        let tasks = Tasks::new(Arc::clone(&meta));
        if cluster.refusal().is_none() {
            let interrupted = tasks
                .fail_interrupted()
                .map_err(|e| StateError::Tasks(e.to_string()))?;
            if interrupted > 0 {
                tracing::warn!(
                    "{interrupted} task(s) interrupted by the last stop were marked failed"
                );
            }
        }
        let audit_path = dir.join("audit.log");
        let audit =
            AuditLog::open_on(&audit_path, cluster.pair_store()).map_err(io(&audit_path))?;
        let runner = Arc::new(NbdRunner::new(files.runs_dir(), config.run_limits));
        let services = Services {
            meta,
            storage: Storage::new(&config.storaged_socket),
            tasks,
            runs: PlanRuns::new(runner, config.max_concurrent_runs, config.nbd_addr),
            files,
            settings: Settings {
                boot_nbd_addr: config.boot_nbd_addr.unwrap_or(config.nbd_addr),
                max_image_bytes: config.max_image_bytes,
            },
            cluster: Arc::new(cluster),
        };
        let state = Self {
            sessions: if services.cluster.is_pair() {
                Sessions::shared(config.session_idle_timeout, Arc::clone(&services.meta))
            } else {
                Sessions::new(config.session_idle_timeout)
            },
            limiter: LoginLimiter::default(),
            services: Arc::new(services),
            config,
            users,
            accounts: AccountsReady::pending(),
            audit,
        };
        Ok((state, pending))
    }
}

/// How long a starting deployd waits for clusterd's answer.
const CLUSTERD_WAIT: Duration = Duration::from_secs(30);
/// How long a starting deployd waits for the pair's etcd.
const STORE_WAIT: Duration = Duration::from_secs(60);

/// The metadata store: redb on a single appliance; the pair's etcd when clusterd says this
/// appliance is paired.
fn open_store(
    config: &Config,
    files: &StateFiles,
) -> Result<(Arc<dyn MetaStore>, Cluster), StateError> {
    let status = match &config.clusterd_socket {
        // clusterd starts just before us (init waits for its socket); a restarted one may
        // take a moment.
        Some(socket) => {
            let end = std::time::Instant::now() + CLUSTERD_WAIT;
            let status = loop {
                match cluster::ask_once(socket) {
                    Ok(st) => break st,
                    Err(e) if std::time::Instant::now() >= end => {
                        return Err(StateError::Cluster(format!(
                            "clusterd does not answer: {e}"
                        )));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            Some((socket, status))
        }
        None => None,
    };
    match status {
        Some((socket, st)) if st.role != clusterd::status::Role::Single => {
            let endpoint = st.store_endpoint.clone().ok_or_else(|| {
                StateError::Cluster("clusterd names no cluster store endpoint".into())
            })?;
            tracing::info!("paired: the metadata store is the pair's etcd at {endpoint}");
            // Mutual TLS with the pair's certificates, when it has them.
            let options = match &st.store_tls {
                Some(tls) => Some(
                    etcd_client::ConnectOptions::new().with_tls(
                        clusterd::pairing::connect_options(tls)
                            .map_err(|e| StateError::Cluster(e.to_string()))?,
                    ),
                ),
                None => None,
            };
            // etcd starts beside us (init starts both): wait for it a while.
            let end = std::time::Instant::now() + STORE_WAIT;
            let store = loop {
                let answered =
                    EtcdStore::connect(vec![endpoint.clone()], options.clone(), etcd_store::ROOT)
                        .and_then(|s| s.revision().map(|_| s));
                match answered {
                    Ok(s) => break Arc::new(s),
                    Err(e) if std::time::Instant::now() >= end => return Err(e.into()),
                    Err(_) => std::thread::sleep(Duration::from_millis(250)),
                }
            };
            let single = config.state_dir.join("meta.redb");
            let cluster = Cluster::pair(socket, Arc::clone(&store), st, Some(single));
            // The active node of a new pair brings its artifacts along (the standby, when it
            // becomes active).
            if cluster.refusal().is_none() {
                cluster.bring_single_appliance_records()?;
            }
            Ok((store, cluster))
        }
        _ => {
            let meta_path = config.state_dir.join("meta.redb");
            let store: Arc<dyn MetaStore> = Arc::new(RedbStore::open(&meta_path)?);
            let io = |e| StateError::Io(meta_path.display().to_string(), e);
            files.make_private(&meta_path).map_err(io)?;
            Ok((store, Cluster::single()))
        }
    }
}

/// A first start (and the first start after an upgrade) writes once: the default deployment
/// group and the index of names and references, in one transaction.
pub fn first_start_writes(meta: &dyn MetaStore) -> Result<(), crate::meta::MetaError> {
    let mut ops = records::index_building(meta)?;
    if !ops.is_empty() {
        tracing::info!("building the name and reference indexes of the metadata store");
    }
    ops.extend(deployment_groups::default_group(meta)?);
    if !ops.is_empty() {
        meta.apply(ops)?;
    }
    Ok(())
}
