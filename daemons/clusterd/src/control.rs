//! clusterd's control interface: D-Bus peer to peer (zbus) on a Unix socket, for deployd and
//! the console. Answers are JSON documents of the types in [`crate::status`] and
//! [`crate::alerts`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};

use crate::alerts::Alert;
use crate::status::{NodeInfo, Status};

pub const INTERFACE: &str = "org.streamer.Cluster1";
pub const OBJECT_PATH: &str = "/org/streamer/Cluster";

/// What the interface reads from.
pub trait View: Send + Sync + 'static {
    fn status(&self) -> Status;
    fn nodes(&self) -> Vec<NodeInfo>;
    fn alerts(&self) -> Vec<Alert>;
}

struct Service(Arc<dyn View>);

fn json<T: serde::Serialize>(v: &T) -> zbus::fdo::Result<String> {
    serde_json::to_string(v).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
}

#[zbus::interface(name = "org.streamer.Cluster1")]
impl Service {
    /// This node's role (see `status::Status`).
    async fn status(&self) -> zbus::fdo::Result<String> {
        json(&self.0.status())
    }

    /// The pair's members (see `status::NodeInfo`).
    async fn nodes(&self) -> zbus::fdo::Result<String> {
        json(&self.0.nodes())
    }

    /// Active alerts first, then cleared ones.
    async fn alerts(&self) -> zbus::fdo::Result<String> {
        json(&self.0.alerts())
    }
}

/// Serves the interface on `socket` until the task is dropped.
pub async fn serve(socket: &Path, view: Arc<dyn View>) -> std::io::Result<()> {
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
        let view = Arc::clone(&view);
        tokio::spawn(async move {
            let conn = async {
                zbus::connection::Builder::unix_stream(stream)
                    .server(zbus::Guid::generate())?
                    .p2p()
                    .serve_at(OBJECT_PATH, Service(view))?
                    .build()
                    .await
            };
            match conn.await {
                Ok(c) => c.closed().await,
                Err(e) => tracing::warn!("control connection failed: {e}"),
            }
        });
    }
}

#[zbus::proxy(
    interface = "org.streamer.Cluster1",
    default_path = "/org/streamer/Cluster",
    gen_blocking = false
)]
pub trait Cluster {
    fn status(&self) -> zbus::Result<String>;
    fn nodes(&self) -> zbus::Result<String>;
    fn alerts(&self) -> zbus::Result<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("clusterd at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("clusterd: {0}")]
    Bus(#[from] zbus::Error),
    #[error("clusterd answered something unexpected: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A connection to clusterd.
#[derive(Debug, Clone)]
pub struct ClusterClient {
    proxy: ClusterProxy<'static>,
}

impl ClusterClient {
    pub async fn connect(socket: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        let conn = zbus::connection::Builder::unix_stream(stream)
            .p2p()
            .build()
            .await?;
        let proxy = ClusterProxy::builder(&conn)
            .destination(INTERFACE)?
            .path(OBJECT_PATH)?
            .build()
            .await?;
        Ok(Self { proxy })
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        Ok(serde_json::from_str(&self.proxy.status().await?)?)
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        Ok(serde_json::from_str(&self.proxy.nodes().await?)?)
    }

    pub async fn alerts(&self) -> Result<Vec<Alert>, ClientError> {
        Ok(serde_json::from_str(&self.proxy.alerts().await?)?)
    }
}
