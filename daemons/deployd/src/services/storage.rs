//! Everything deployd asks of storaged: golden image and OS volume content.
//!
//! One connection per operation (the control socket is local and cheap to open), so a restart
//! of storaged never leaves deployd holding a dead connection. Imports and exports pass file
//! descriptors over the socket: the bytes never cross it.

use std::fs::File;
use std::path::{Path, PathBuf};

use storaged::control::client::{ClientError, StorageClient};
use storaged::store::{ExportRecord, VolumeInfo};
use zbus::zvariant::Fd;

/// Failures of storaged operations.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// storaged is not running or not reachable.
    #[error("the volume store (storaged) is unavailable: {0}")]
    Unavailable(String),
    /// storaged refused the request (bad image, unknown volume, name taken).
    #[error("the volume store refused the request: {0}")]
    Refused(String),
    #[error("{0}")]
    Local(String),
}

impl From<ClientError> for StorageError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Connect { .. } | ClientError::Transport(_) => {
                Self::Unavailable(e.to_string())
            }
            ClientError::Remote(m) => Self::Refused(m),
            ClientError::Reply(e) => Self::Local(e.to_string()),
        }
    }
}

/// storaged, reached through its control socket.
#[derive(Debug, Clone)]
pub struct Storage {
    socket: PathBuf,
    /// Whether the other node holds current copies, as last seen by [`Storage::follow`]:
    /// 0 unknown or a single appliance, 1 no, 2 yes.
    redundant: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

/// How often [`Storage::follow`] asks storaged on a pair...
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// ...and on a single appliance.
const FOLLOW_SINGLE: std::time::Duration = std::time::Duration::from_secs(10);

impl Storage {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            redundant: std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0)),
        }
    }

    /// On a pair: whether every golden image has a current copy on the other node too (the
    /// peer is not Outdated, no resync is running and none is due: one made while the peer
    /// was away, or whose transfer was cut, reaches it at the resync). None: a single
    /// appliance, or storaged not answering.
    pub fn redundant(&self) -> Option<bool> {
        match self.redundant.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// Keeps [`Storage::redundant`] current, for ever (a task of its own: resources are
    /// rendered without waiting for storaged): once a second on a pair, every
    /// [`FOLLOW_SINGLE`] on a single appliance (which may be paired later).
    pub async fn follow(&self) {
        loop {
            let status = self.pair_status().await;
            let pause = match status {
                Ok(Some(_)) => FOLLOW_EVERY,
                _ => FOLLOW_SINGLE,
            };
            let seen = match status {
                Ok(Some(s)) => {
                    if !s.peer_outdated && !s.resync.running && s.needs_resync.is_empty() {
                        2
                    } else {
                        1
                    }
                }
                Ok(None) | Err(_) => 0,
            };
            self.redundant
                .store(seen, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(pause).await;
        }
    }

    async fn client(&self) -> Result<StorageClient, StorageError> {
        Ok(StorageClient::connect(&self.socket).await?)
    }

    /// Waits until storaged answers on its control socket (it may be starting beside us), for
    /// at most `limit`; the error is the last attempt's.
    pub async fn wait_until_reachable(
        &self,
        limit: std::time::Duration,
    ) -> Result<(), StorageError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.client().await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    /// Imports the image in `file` (raw or qcow2, detected) as a frozen volume named `name`.
    pub async fn import_frozen(
        &self,
        name: &str,
        file: &File,
        origin: &str,
    ) -> Result<VolumeInfo, StorageError> {
        let c = self.client().await?;
        let token = uuid::Uuid::new_v4().to_string();
        let reply = c
            .proxy()
            .import(name, "", Fd::from(file), false, origin, &token)
            .await
            .map_err(ClientError::from)?;
        serde_json::from_str(&reply).map_err(|e| StorageError::Local(e.to_string()))
    }

    /// Writes the raw content of `volume` into `out`.
    pub async fn export_raw(&self, volume: &str, out: &File) -> Result<(), StorageError> {
        let c = self.client().await?;
        let token = uuid::Uuid::new_v4().to_string();
        c.proxy()
            .export(volume, "raw", Fd::from(out), &token)
            .await
            .map_err(ClientError::from)?;
        Ok(())
    }

    /// A writable copy-on-write clone of frozen volume `parent` (O(1)).
    pub async fn clone_volume(&self, parent: &str, name: &str) -> Result<VolumeInfo, StorageError> {
        Ok(self.client().await?.clone_volume(parent, name).await?)
    }

    /// A frozen point-in-time copy of `volume`; the volume itself stays writable (O(1)).
    pub async fn snapshot(&self, volume: &str, name: &str) -> Result<VolumeInfo, StorageError> {
        Ok(self.client().await?.snapshot(volume, name).await?)
    }

    /// An empty writable volume of `size` bytes.
    pub async fn create(&self, name: &str, size: u64) -> Result<VolumeInfo, StorageError> {
        Ok(self.client().await?.create(name, size).await?)
    }

    /// Serves `volume` over NBD to the clients in `allow` only (replaces its export, if any).
    pub async fn export_add(
        &self,
        volume: &str,
        allow: &[&str],
    ) -> Result<ExportRecord, StorageError> {
        Ok(self
            .client()
            .await?
            .export_add(volume, allow, false)
            .await?)
    }

    /// Exports `volume` to `allow`, and over iSCSI only to the initiators and CHAP secret of
    /// `iscsi`.
    pub async fn export_add_iscsi(
        &self,
        volume: &str,
        allow: &[&str],
        iscsi: &storaged::export::IscsiAccess,
    ) -> Result<ExportRecord, StorageError> {
        Ok(self
            .client()
            .await?
            .export_add_iscsi(volume, allow, false, iscsi)
            .await?)
    }

    pub async fn export_remove(&self, volume: &str) -> Result<(), StorageError> {
        Ok(self.client().await?.export_remove(volume).await?)
    }

    /// Removes `volume`'s export if it has one, then deletes it.
    pub async fn unexport_and_delete(&self, volume: &str) -> Result<(), StorageError> {
        match self.info(volume).await {
            Ok(i) if i.export.is_some() => self.export_remove(volume).await?,
            Ok(_) => {}
            // Already gone: nothing to do.
            Err(StorageError::Refused(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.delete(volume).await
    }

    pub async fn info(&self, volume: &str) -> Result<VolumeInfo, StorageError> {
        Ok(self.client().await?.info(volume).await?)
    }

    pub async fn list(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        Ok(self.client().await?.list().await?)
    }

    /// The pair's replication state on this node (None: a single appliance's storaged,
    /// which does not replicate).
    pub async fn pair_status(
        &self,
    ) -> Result<Option<storaged::replication::pair::PairStatus>, StorageError> {
        let c = self.client().await?;
        match c.pair_status().await {
            Ok(s) => Ok(Some(s)),
            // No pair interface on a single appliance's storaged.
            Err(storaged::control::client::ClientError::Remote(m))
                if m.contains("UnknownInterface") || m.contains("Unknown interface") =>
            {
                Ok(None)
            }
            Err(e) => {
                tracing::debug!("storaged's pair status: {e:?}");
                Err(e.into())
            }
        }
    }

    pub async fn delete(&self, volume: &str) -> Result<(), StorageError> {
        Ok(self.client().await?.delete(volume).await?)
    }

    /// Deletes volumes made by work that is being rolled back; failures are only logged,
    /// as the caller is already reporting the original error.
    pub async fn delete_quietly(&self, volumes: &[String]) {
        for v in volumes {
            if let Err(e) = self.delete(v).await {
                tracing::error!("rolling back: volume {v} could not be deleted: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_storaged_ends_when_it_answers_or_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("storaged.sock");
        let storage = Storage::new(&socket);

        let t0 = Instant::now();
        let err = storage
            .wait_until_reachable(Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(200));

        // storaged comes up 300 ms into the wait: the wait ends then, not at its limit.
        let store = Arc::new(storaged::store::Store::open(&dir.path().join("store")).unwrap());
        let sock = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            storaged::control::server::serve(&sock, store, None).await
        });
        let t0 = Instant::now();
        storage
            .wait_until_reachable(Duration::from_secs(20))
            .await
            .unwrap();
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
    }
}
