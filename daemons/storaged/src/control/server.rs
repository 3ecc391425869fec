//! The daemon side of the control socket.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;
use tokio::net::UnixListener;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedFd;

use super::error::ControlError;
use super::{INTERFACE, OBJECT_PATH};
use crate::imagefile::ImageFormat;
use crate::store::{Store, StoreError};

/// The object served on every control connection.
#[derive(Debug, Clone)]
pub struct StorageService {
    store: Arc<Store>,
}

fn json<T: Serialize>(v: &T) -> Result<String, ControlError> {
    serde_json::to_string(v).map_err(|e| ControlError::Failed(e.to_string()))
}

fn optional(name: &str) -> Option<&str> {
    (!name.is_empty()).then_some(name)
}

fn format_arg(format: &str) -> Result<Option<ImageFormat>, ControlError> {
    match format {
        "" | "auto" => Ok(None),
        f => ImageFormat::from_str(f).map(Some).map_err(|_| {
            ControlError::Invalid(format!("unknown image format {f:?}: use raw or qcow2"))
        }),
    }
}

impl StorageService {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Runs `job` on the blocking pool, relaying its progress as `Progress` signals tagged
    /// with `token`, and returns its result.
    async fn with_progress<T: Send + 'static>(
        &self,
        emitter: &SignalEmitter<'_>,
        token: &str,
        job: impl FnOnce(&Store, &mut dyn FnMut(u64, u64)) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, u64)>(8);
        let store = Arc::clone(&self.store);
        let mut task = tokio::task::spawn_blocking(move || {
            let mut last = (u64::MAX, 0);
            job(&store, &mut |done, total| {
                // About 200 updates per transfer are plenty for a progress bar.
                let step = (total / 200).max(1);
                if last.0 == u64::MAX || done / step != last.0 / step || done == total {
                    last = (done, total);
                    let _ = tx.try_send((done, total));
                }
            })
        });
        loop {
            tokio::select! {
                result = &mut task => {
                    return result
                        .map_err(|e| ControlError::Failed(format!("operation aborted: {e}")))?
                        .map_err(ControlError::from);
                }
                Some((done, total)) = rx.recv() => {
                    let _ = Self::progress(emitter, token, done, total).await;
                }
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || job(&store))
            .await
            .map_err(|e| ControlError::Failed(format!("operation aborted: {e}")))?
            .map_err(ControlError::from)
    }
}

#[zbus::interface(name = "org.streamer.Storage1")]
impl StorageService {
    /// Creates an empty writable volume; returns its info.
    async fn create(&self, name: String, size: u64) -> Result<String, ControlError> {
        let info = self
            .blocking(move |s| s.create(optional(&name), size))
            .await?;
        json(&info)
    }

    /// Imports the image open at `fd` ("raw", "qcow2" or "" to detect).
    #[allow(clippy::too_many_arguments)]
    async fn import(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        name: String,
        format: String,
        fd: OwnedFd,
        writable: bool,
        origin: String,
        token: String,
    ) -> Result<String, ControlError> {
        let format = format_arg(&format)?;
        let file = File::from(std::os::fd::OwnedFd::from(fd));
        let info = self
            .with_progress(&emitter, &token, move |s, progress| {
                s.import(
                    optional(&name),
                    file,
                    format,
                    writable,
                    optional(&origin).map(str::to_string),
                    progress,
                )
            })
            .await?;
        json(&info)
    }

    /// Writes volume `volume` to the file open at `fd` as `format`.
    async fn export(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        volume: String,
        format: String,
        fd: OwnedFd,
        token: String,
    ) -> Result<(), ControlError> {
        let format = format_arg(&format)?.unwrap_or(ImageFormat::Raw);
        let file = File::from(std::os::fd::OwnedFd::from(fd));
        self.with_progress(&emitter, &token, move |s, progress| {
            s.export_to_file(&volume, &file, format, progress)
        })
        .await
    }

    async fn clone(&self, parent: String, name: String) -> Result<String, ControlError> {
        let info = self
            .blocking(move |s| s.clone_volume(&parent, optional(&name)))
            .await?;
        json(&info)
    }

    async fn snapshot(&self, volume: String, name: String) -> Result<String, ControlError> {
        let info = self
            .blocking(move |s| s.snapshot(&volume, optional(&name)))
            .await?;
        json(&info)
    }

    async fn flatten(&self, volume: String) -> Result<String, ControlError> {
        let info = self.blocking(move |s| s.flatten(&volume)).await?;
        json(&info)
    }

    async fn delete(&self, volume: String) -> Result<(), ControlError> {
        self.blocking(move |s| s.delete(&volume)).await
    }

    async fn list(&self) -> Result<String, ControlError> {
        json(&self.store.list())
    }

    async fn info(&self, volume: String) -> Result<String, ControlError> {
        json(&self.store.info(&volume)?)
    }

    async fn verify(&self, deep: bool) -> Result<String, ControlError> {
        let report = self.blocking(move |s| s.verify(deep)).await?;
        json(&report)
    }

    /// Exports `volume` over NBD to `allow` (addresses or networks; empty = any client).
    async fn export_add(
        &self,
        volume: String,
        allow: Vec<String>,
        read_only: bool,
    ) -> Result<String, ControlError> {
        let allow = allow
            .iter()
            .map(|a| parse_client(a))
            .collect::<Result<Vec<_>, _>>()?;
        let rec = self
            .blocking(move |s| s.export_add(&volume, allow, read_only))
            .await?;
        json(&rec)
    }

    /// As `ExportAdd`, with who may log in over iSCSI (`iscsi`: JSON, initiator names and
    /// CHAP secrets).
    async fn export_add_iscsi(
        &self,
        volume: String,
        allow: Vec<String>,
        read_only: bool,
        iscsi: String,
    ) -> Result<String, ControlError> {
        let allow = allow
            .iter()
            .map(|a| parse_client(a))
            .collect::<Result<Vec<_>, _>>()?;
        let iscsi: crate::export::IscsiAccess = serde_json::from_str(&iscsi).map_err(|e| {
            ControlError::Invalid(format!("the iSCSI access is not valid JSON: {e}"))
        })?;
        let rec = self
            .blocking(move |s| s.export_add_iscsi(&volume, allow, read_only, Some(iscsi)))
            .await?;
        json(&rec)
    }

    async fn export_remove(&self, volume: String) -> Result<(), ControlError> {
        self.blocking(move |s| s.export_remove(&volume)).await
    }

    async fn export_list(&self) -> Result<String, ControlError> {
        json(&self.store.export_list())
    }

    /// Progress of an import or export started with `token`.
    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        token: &str,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;
}

/// Parses a client address (`10.0.0.5`) or network (`10.0.0.0/24`).
pub fn parse_client(s: &str) -> Result<IpNet, ControlError> {
    IpNet::from_str(s)
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ControlError::Invalid(format!(
                "{s:?} is not an IP address or network (examples: 10.0.0.5, 10.0.0.0/24)"
            ))
        })
}

/// Serves the control interface on `socket` until the task is dropped; with `pair`, the
/// pair's interface too.
pub async fn serve(
    socket: &Path,
    store: Arc<Store>,
    pair: Option<Arc<crate::replication::pair::PairLink>>,
) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!("control interface {INTERFACE} on {}", socket.display());
    loop {
        let (stream, _) = listener.accept().await?;
        let service = StorageService::new(Arc::clone(&store));
        let pair = pair.clone().map(super::pair::PairService::new);
        tokio::spawn(async move {
            let conn = async {
                let mut b = zbus::connection::Builder::unix_stream(stream)
                    .server(zbus::Guid::generate())?
                    .p2p()
                    .serve_at(OBJECT_PATH, service)?;
                if let Some(p) = pair {
                    b = b.serve_at(OBJECT_PATH, p)?;
                }
                b.build().await
            };
            match conn.await {
                // The connection serves requests from its own tasks until the peer hangs up.
                Ok(c) => c.closed().await,
                Err(e) => tracing::warn!("control connection failed: {e}"),
            }
        });
    }
}
