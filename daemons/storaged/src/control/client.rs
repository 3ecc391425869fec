//! The caller side of the control socket, used by `storaged volume ...` and by other daemons.

use std::path::Path;

use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use zbus::zvariant::Fd;

use super::OBJECT_PATH;
use crate::store::{ExportRecord, VerifyReport, VolumeInfo};

/// Proxy of `org.streamer.Storage1`; see [`super::server::StorageService`] for the methods.
#[zbus::proxy(
    interface = "org.streamer.Storage1",
    default_path = "/org/streamer/Storage1",
    gen_blocking = false
)]
pub trait Storage {
    fn create(&self, name: &str, size: u64) -> zbus::Result<String>;
    #[allow(clippy::too_many_arguments)]
    fn import(
        &self,
        name: &str,
        format: &str,
        fd: Fd<'_>,
        writable: bool,
        origin: &str,
        token: &str,
    ) -> zbus::Result<String>;
    fn export(&self, volume: &str, format: &str, fd: Fd<'_>, token: &str) -> zbus::Result<()>;
    fn clone(&self, parent: &str, name: &str) -> zbus::Result<String>;
    fn snapshot(&self, volume: &str, name: &str) -> zbus::Result<String>;
    fn flatten(&self, volume: &str) -> zbus::Result<String>;
    fn delete(&self, volume: &str) -> zbus::Result<()>;
    fn list(&self) -> zbus::Result<String>;
    fn info(&self, volume: &str) -> zbus::Result<String>;
    fn verify(&self, deep: bool) -> zbus::Result<String>;
    fn export_add(&self, volume: &str, allow: &[&str], read_only: bool) -> zbus::Result<String>;
    fn export_add_iscsi(
        &self,
        volume: &str,
        allow: &[&str],
        read_only: bool,
        iscsi: &str,
    ) -> zbus::Result<String>;
    fn export_remove(&self, volume: &str) -> zbus::Result<()>;
    fn export_list(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn progress(&self, token: &str, done: u64, total: u64) -> zbus::Result<()>;
}

/// Proxy of `org.streamer.StoragePair1` (a pair member's storaged); see
/// [`super::pair::PairService`].
#[zbus::proxy(
    interface = "org.streamer.StoragePair1",
    default_path = "/org/streamer/Storage1",
    gen_blocking = false
)]
pub trait StoragePair {
    fn own(&self, home: &str, epoch: u64) -> zbus::Result<()>;
    fn disown(&self, home: &str, epoch: u64) -> zbus::Result<()>;
    fn set_peer_outdated(&self, outdated: bool) -> zbus::Result<()>;
    fn peer_reachable(&self) -> zbus::Result<bool>;
    fn status(&self) -> zbus::Result<String>;
    fn resync(&self) -> zbus::Result<String>;
}

/// Failures talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach storaged at {path}: {source} (is `storaged serve` running?)")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The daemon refused or failed the request; the text is its message.
    #[error("{0}")]
    Remote(String),
    /// The connection to the daemon failed (it stopped, or the socket broke).
    #[error("lost the connection to storaged: {0}")]
    Transport(String),
    #[error("storaged sent an unreadable reply: {0}")]
    Reply(#[from] serde_json::Error),
}

impl From<zbus::Error> for ClientError {
    fn from(e: zbus::Error) -> Self {
        match e {
            zbus::Error::MethodError(_, Some(msg), _) => Self::Remote(msg),
            zbus::Error::MethodError(name, None, _) => Self::Remote(name.to_string()),
            zbus::Error::FDO(e) => Self::Remote(e.to_string()),
            other => Self::Transport(other.to_string()),
        }
    }
}

/// A connection to storaged's control socket.
#[derive(Debug, Clone)]
pub struct StorageClient {
    proxy: StorageProxy<'static>,
    pair: StoragePairProxy<'static>,
}

fn parse<T: DeserializeOwned>(s: &str) -> Result<T, ClientError> {
    Ok(serde_json::from_str(s)?)
}

impl StorageClient {
    pub async fn connect(socket: &Path) -> Result<Self, ClientError> {
        let connect_err = |source| ClientError::Connect {
            path: socket.display().to_string(),
            source,
        };
        let stream = UnixStream::connect(socket).await.map_err(connect_err)?;
        let conn = zbus::connection::Builder::unix_stream(stream)
            .p2p()
            .build()
            .await?;
        let proxy = StorageProxy::builder(&conn)
            .destination(super::INTERFACE)?
            .path(OBJECT_PATH)?
            .build()
            .await?;
        let pair = StoragePairProxy::builder(&conn)
            .destination(super::PAIR_INTERFACE)?
            .path(OBJECT_PATH)?
            .build()
            .await?;
        Ok(Self { proxy, pair })
    }

    /// The pair's interface (a pair member's storaged answers it; a single appliance's
    /// does not).
    pub fn pair(&self) -> &StoragePairProxy<'static> {
        &self.pair
    }

    /// The replication state of a pair member.
    pub async fn pair_status(&self) -> Result<crate::replication::pair::PairStatus, ClientError> {
        parse(&self.pair.status().await?)
    }

    pub fn proxy(&self) -> &StorageProxy<'static> {
        &self.proxy
    }

    pub async fn create(&self, name: &str, size: u64) -> Result<VolumeInfo, ClientError> {
        parse(&self.proxy.create(name, size).await?)
    }

    pub async fn clone_volume(&self, parent: &str, name: &str) -> Result<VolumeInfo, ClientError> {
        parse(&self.proxy.clone(parent, name).await?)
    }

    pub async fn snapshot(&self, volume: &str, name: &str) -> Result<VolumeInfo, ClientError> {
        parse(&self.proxy.snapshot(volume, name).await?)
    }

    pub async fn flatten(&self, volume: &str) -> Result<VolumeInfo, ClientError> {
        parse(&self.proxy.flatten(volume).await?)
    }

    pub async fn delete(&self, volume: &str) -> Result<(), ClientError> {
        Ok(self.proxy.delete(volume).await?)
    }

    pub async fn list(&self) -> Result<Vec<VolumeInfo>, ClientError> {
        parse(&self.proxy.list().await?)
    }

    pub async fn info(&self, volume: &str) -> Result<VolumeInfo, ClientError> {
        parse(&self.proxy.info(volume).await?)
    }

    pub async fn verify(&self, deep: bool) -> Result<VerifyReport, ClientError> {
        parse(&self.proxy.verify(deep).await?)
    }

    pub async fn export_add(
        &self,
        volume: &str,
        allow: &[&str],
        read_only: bool,
    ) -> Result<ExportRecord, ClientError> {
        parse(&self.proxy.export_add(volume, allow, read_only).await?)
    }

    /// As [`StorageClient::export_add`], with who may log in over iSCSI (initiator names,
    /// CHAP).
    pub async fn export_add_iscsi(
        &self,
        volume: &str,
        allow: &[&str],
        read_only: bool,
        iscsi: &crate::export::IscsiAccess,
    ) -> Result<ExportRecord, ClientError> {
        let iscsi = serde_json::to_string(iscsi).unwrap_or_default();
        parse(
            &self
                .proxy
                .export_add_iscsi(volume, allow, read_only, &iscsi)
                .await?,
        )
    }

    pub async fn export_remove(&self, volume: &str) -> Result<(), ClientError> {
        Ok(self.proxy.export_remove(volume).await?)
    }

    pub async fn export_list(&self) -> Result<Vec<ExportRecord>, ClientError> {
        parse(&self.proxy.export_list().await?)
    }
}
