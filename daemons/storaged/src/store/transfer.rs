//! Import of raw and qcow2 files as new volumes, and export of volumes to such files.
//!
//! Imports stream the source's data extents into a new base layer, skipping zero blocks so the
//! layer stays sparse, and record the SHA-256 of the whole virtual content. A failed or
//! interrupted import leaves nothing in the catalog; its layer file is removed at once or,
//! after a crash, when the store next opens.

use std::fs::File;

use sha2::{Digest, Sha256};

use super::{Store, StoreError, VolumeInfo, VolumeRecord, VolumeState, validate_size};
use crate::imagefile::{self, ImageFormat};
use crate::volume::layer::Layer;
use crate::volume::write::is_zero;
use crate::volume::{CatalogOp, WriteOp};

/// Progress callback: bytes done, bytes in all.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Bytes copied per read of the source.
const CHUNK: usize = 4 << 20;

impl Store {
    /// Imports `file` (raw or qcow2; detected when `format` is `None`) as a new volume, frozen
    /// (a golden image) unless `writable`.
    pub fn import(
        &self,
        name: Option<&str>,
        file: File,
        format: Option<ImageFormat>,
        writable: bool,
        origin: Option<String>,
        progress: Progress<'_>,
    ) -> Result<VolumeInfo, StoreError> {
        let format = match format {
            Some(f) => f,
            None => imagefile::detect(&file)
                .map_err(StoreError::io("reading the image to detect its format"))?,
        };
        let source = imagefile::open_source(file, format)?;
        // Volumes are whole sectors; a raw file of another length is padded with zeroes.
        let size = source.size().div_ceil(512) * 512;
        validate_size(size)?;
        if let Some(n) = name {
            self.state.lock().check_name_free(n)?;
        }
        let state = if writable {
            VolumeState::Writable
        } else {
            VolumeState::Frozen
        };
        let mut r = Self::new_record(name, size, None, state);
        r.origin = origin;
        r.home = self.ownership.me().map(str::to_string);
        let paths = self.paths(&r.layer);
        Layer::create(&paths, size, r.block_size, false).map_err(StoreError::io(format!(
            "creating the layer of volume {}",
            r.id
        )))?;
        let copied = (|| {
            let layer = Layer::open(&r.layer, &paths, size, r.block_size, false, true)?;
            let checksum = copy_into(&*source, &layer, size, progress)?;
            layer
                .sync()
                .map_err(StoreError::io(format!("syncing imported volume {}", r.id)))?;
            Ok::<_, StoreError>(checksum)
        })();
        let checksum = match copied {
            Ok(c) => c,
            Err(e) => {
                self.remove_layer_files(&r.layer);
                return Err(e);
            }
        };
        r.checksum = Some(checksum);
        let info = {
            let mut st = self.state.lock();
            if let Some(Err(e)) = name.map(|n| st.check_name_free(n)) {
                self.remove_layer_files(&r.layer);
                return Err(e);
            }
            self.commit_new(&mut st, r)?
        };
        // On a pair the image is ready only once the replica holds it too, checked.
        if let Err(e) = self.send_to_replica(&info.record, name) {
            let id = info.record.id.clone();
            if let Err(d) = self.delete_with(&id, false) {
                tracing::error!("removing volume {id}, which the replica did not take: {d}");
            }
            return Err(e);
        }
        Ok(info)
    }

    /// Sends an imported volume to the replica: created there under its id, its non-zero
    /// chunks written, then (a golden image) frozen once the replica's SHA-256 matches.
    /// Returns whether it got there whole: if the peer was marked Outdated half-way, the
    /// volume is put on the unsent list (sent again whole at the resync), not frozen there.
    pub(super) fn send_to_replica(
        &self,
        r: &VolumeRecord,
        name: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !self.replica.mirrors() {
            return Ok(true);
        }
        // Changes the replica skipped meanwhile (the peer was marked Outdated half-way):
        // then the copy there is incomplete, and is sent again whole at the resync.
        let skipped = self.replica.skipped(&r.id);
        self.replicate(&CatalogOp::Create {
            id: r.id.clone(),
            name: name.map(str::to_string),
            size: r.size,
            home: r.home.clone(),
        })?;
        let lease = self.lease(&r.id)?;
        let volume = lease.volume();
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0;
        while pos < r.size {
            let n = (r.size - pos).min(CHUNK as u64) as usize;
            crate::block::BlockDevice::read_at(&**volume, &mut buf[..n], pos)
                .map_err(StoreError::io(format!("reading volume {} at {pos}", r.id)))?;
            fail::fail_point!("transfer::chunk");
            if buf[..n].iter().any(|b| *b != 0) {
                self.replica
                    .write(&r.id, pos, WriteOp::Data(&buf[..n]))
                    .map_err(StoreError::io(format!(
                        "sending volume {} to the replica",
                        r.id
                    )))?;
            }
            pos += n as u64;
            if self.replica.skipped(&r.id) != skipped {
                // The peer was marked Outdated: the rest would not be sent either.
                break;
            }
        }
        if self.replica.skipped(&r.id) == skipped {
            self.replica.flush(&r.id).map_err(StoreError::io(format!(
                "sending volume {} to the replica",
                r.id
            )))?;
        }
        if self.replica.skipped(&r.id) != skipped {
            tracing::warn!(
                "volume {}: the peer missed part of it (it was marked Outdated meanwhile): \
                 sent again whole at its resync",
                r.id
            );
            self.unsent.add(&r.id)?;
            return Ok(false);
        }
        if r.state == VolumeState::Frozen {
            self.replicate(&CatalogOp::Freeze {
                id: r.id.clone(),
                checksum: r.checksum.clone().unwrap_or_default(),
            })?;
        }
        Ok(true)
    }

    /// Writes the content of volume `key` to `out` as `format`.
    pub fn export_to_file(
        &self,
        key: &str,
        out: &File,
        format: ImageFormat,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        let lease = self.lease(key)?;
        let volume = lease.volume();
        let size = crate::block::BlockDevice::size(&**volume);
        let mut report = |done: u64| progress(done, size);
        match format {
            ImageFormat::Raw => imagefile::write_raw(out, &**volume, &mut report)?,
            ImageFormat::Qcow2 => imagefile::write_qcow2(out, &**volume, &mut report)?,
        }
        Ok(())
    }

    /// SHA-256 of the whole content of volume `key`, as `sha256:<hex>`.
    pub fn content_checksum(&self, key: &str) -> Result<String, StoreError> {
        let lease = self.lease(key)?;
        let volume = lease.volume();
        let size = crate::block::BlockDevice::size(&**volume);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0;
        while pos < size {
            let n = (size - pos).min(CHUNK as u64) as usize;
            crate::block::BlockDevice::read_at(&**volume, &mut buf[..n], pos)
                .map_err(StoreError::io(format!("reading volume {key} at {pos}")))?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }
}

/// Copies the source into a base layer and returns the checksum of the `size` bytes.
fn copy_into(
    source: &dyn imagefile::SourceImage,
    layer: &Layer,
    size: u64,
    progress: Progress<'_>,
) -> Result<String, StoreError> {
    let mut hasher = Sha256::new();
    let zeroes = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let hash_zeroes = |hasher: &mut Sha256, mut len: u64| {
        while len > 0 {
            let n = len.min(CHUNK as u64) as usize;
            hasher.update(&zeroes[..n]);
            len -= n as u64;
        }
    };
    for extent in source.extents()? {
        if extent.offset > pos {
            hash_zeroes(&mut hasher, extent.offset - pos);
        }
        pos = extent.offset;
        let end = extent.offset + extent.len;
        if !extent.data {
            hash_zeroes(&mut hasher, extent.len);
            pos = end;
            progress(pos, size);
            continue;
        }
        while pos < end {
            let n = (end - pos).min(CHUNK as u64) as usize;
            source
                .read_at(&mut buf[..n], pos)
                .map_err(StoreError::io(format!("reading the image at offset {pos}")))?;
            hasher.update(&buf[..n]);
            write_nonzero_blocks(layer, &buf[..n], pos).map_err(StoreError::io(format!(
                "writing the new volume at offset {pos}"
            )))?;
            pos += n as u64;
            progress(pos, size);
        }
    }
    if size > pos {
        hash_zeroes(&mut hasher, size - pos);
    }
    progress(size, size);
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Writes the blocks of `buf` (at `offset`) that are not all zeroes, leaving holes for the
/// rest. Zeroes are skipped block by block, not per 4 MiB chunk: a fully allocated raw file
/// (a `dd` of a disk) must still import sparse, and a chunk with a little data in it would
/// otherwise allocate the whole 4 MiB.
fn write_nonzero_blocks(layer: &Layer, buf: &[u8], offset: u64) -> std::io::Result<()> {
    let bs = layer.block_size();
    let mut pos = 0usize;
    let mut run: Option<usize> = None;
    while pos < buf.len() {
        let at = offset + pos as u64;
        let end = (((at / bs) + 1) * bs - offset).min(buf.len() as u64) as usize;
        match (is_zero(&buf[pos..end]), run) {
            (false, None) => run = Some(pos),
            (true, Some(start)) => {
                layer.write_data(&buf[start..pos], offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(start) = run {
        layer.write_data(&buf[start..], offset + start as u64)?;
    }
    Ok(())
}
