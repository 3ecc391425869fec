//! Exports: which volumes the boot protocols serve, and to whom.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::catalog::Change;
use super::{ExportRecord, Store, StoreError, VolumeLease, VolumeState};
use crate::block::{BlockDevice, Extent};
use crate::export::{ExportCatalog, ExportError, ExportSummary, IscsiAccess, OpenExport};
use crate::ownership::Served;
use crate::volume::CatalogOp;
use crate::volume::Volume;

impl Store {
    /// Exports volume `key` to the clients in `allow` (any client when empty). Replaces an
    /// existing export of the volume. On a pair the replica records it first (the node that
    /// takes the volume over serves it to the same clients).
    pub fn export_add(
        &self,
        key: &str,
        allow: Vec<IpNet>,
        read_only: bool,
    ) -> Result<ExportRecord, StoreError> {
        self.export_add_iscsi(key, allow, read_only, None)
    }

    /// As [`Store::export_add`], with who may log in over iSCSI.
    pub fn export_add_iscsi(
        &self,
        key: &str,
        allow: Vec<IpNet>,
        read_only: bool,
        iscsi: Option<IscsiAccess>,
    ) -> Result<ExportRecord, StoreError> {
        let id = self.state.lock().resolve(key)?.id.clone();
        // Not under the state lock: the peer may be replicating to this store meanwhile.
        // (A volume the peer has no copy of yet gets its export there at the resync.)
        if !self.held(&id) {
            self.replicate(&CatalogOp::Export {
                id: id.clone(),
                allow: allow.clone(),
                read_only,
                iscsi: iscsi.clone(),
            })?;
        }
        self.export_put(ExportRecord {
            volume: id,
            allow,
            read_only,
            iscsi,
        })
    }

    /// The replica's side of an export (the same a second time changes nothing).
    pub fn export_put(&self, rec: ExportRecord) -> Result<ExportRecord, StoreError> {
        let mut st = self.state.lock();
        st.resolve(&rec.volume)?;
        if st.exports.get(&rec.volume) != Some(&rec) {
            self.catalog.commit(&[Change::PutExport(rec.clone())])?;
            st.exports.insert(rec.volume.clone(), rec.clone());
        }
        Ok(rec)
    }

    /// Stops exporting volume `key`. Connections already open keep running until they close.
    pub fn export_remove(&self, key: &str) -> Result<(), StoreError> {
        let id = {
            let st = self.state.lock();
            let id = st.resolve(key)?.id.clone();
            if !st.exports.contains_key(&id) {
                return Err(StoreError::Invalid(format!("volume {key} is not exported")));
            }
            id
        };
        if !self.held(&id) {
            self.replicate(&CatalogOp::Unexport { id: id.clone() })?;
        }
        self.export_drop(&id)
    }

    /// The replica's side of removing an export: one already gone is fine.
    pub fn export_drop(&self, key: &str) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let id = match st.resolve(key) {
            Ok(r) => r.id.clone(),
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if st.exports.contains_key(&id) {
            self.catalog.commit(&[Change::DeleteExport(id.clone())])?;
            st.exports.remove(&id);
        }
        Ok(())
    }

    /// Every export.
    pub fn export_list(&self) -> Vec<ExportRecord> {
        self.state.lock().exports.values().cloned().collect()
    }
}

fn allowed(rec: &ExportRecord, client: IpAddr) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    rec.allow.is_empty() || rec.allow.iter().any(|net| net.contains(&client))
}

impl ExportCatalog for Store {
    fn open(&self, name: &str, client: IpAddr) -> Result<OpenExport, ExportError> {
        let st = self.state.lock();
        let unknown = || ExportError::Unknown(name.to_string());
        let r = st.resolve(name).map_err(|_| unknown())?;
        let rec = st.exports.get(&r.id).ok_or_else(unknown)?;
        if !allowed(rec, client) {
            return Err(ExportError::Denied {
                name: name.to_string(),
                client,
            });
        }
        let served = if r.state == VolumeState::Writable {
            self.ownership.serves(&r.id).ok_or_else(|| {
                tracing::info!(
                    "export {name}: not served by this node now (the other node owns its group)"
                );
                unknown()
            })?
        } else {
            Served::always()
        };
        let volume = self.open_volume(&st, r).map_err(|e| {
            tracing::error!("export {name}: cannot open volume {}: {e}", r.id);
            unknown()
        })?;
        let lease = VolumeLease::new(Arc::clone(&volume));
        let device: Arc<dyn BlockDevice> = if rec.read_only && r.state == VolumeState::Writable {
            Arc::new(ReadOnlyView(volume))
        } else {
            volume
        };
        Ok(OpenExport {
            name: name.to_string(),
            description: format!(
                "{} ({}, {})",
                r.name,
                r.id,
                match r.state {
                    VolumeState::Frozen => "golden image",
                    VolumeState::Writable => "volume",
                }
            ),
            device,
            lease: Box::new(lease),
            served,
            iscsi: rec.iscsi.clone().unwrap_or_default(),
            volume_id: r.id.clone(),
        })
    }

    fn list(&self, client: IpAddr) -> Vec<ExportSummary> {
        let st = self.state.lock();
        st.exports
            .values()
            .filter(|e| allowed(e, client))
            .filter_map(|e| st.volumes.get(&e.volume))
            .filter(|r| r.state == VolumeState::Frozen || self.ownership.owns(&r.id))
            .map(|r| ExportSummary {
                id: r.id.clone(),
                name: r.name.clone(),
                description: r.id.clone(),
            })
            .collect()
    }
}

/// A writable volume served read-only.
#[derive(Debug)]
struct ReadOnlyView(Arc<Volume>);

fn read_only_error() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "export is read-only")
}

impl BlockDevice for ReadOnlyView {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn read_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.0.read_cached(buf, offset)
    }
    fn write_at(&self, _: &[u8], _: u64, _: bool) -> io::Result<()> {
        Err(read_only_error())
    }
    fn write_zeroes(&self, _: u64, _: u64, _: bool, _: bool) -> io::Result<()> {
        Err(read_only_error())
    }
    fn trim(&self, _: u64, _: u64) -> io::Result<()> {
        Err(read_only_error())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        self.0.block_status(offset, len)
    }
}
