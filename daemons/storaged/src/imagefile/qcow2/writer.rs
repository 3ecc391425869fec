//! Writing a volume out as a qcow2 version 3 image.
//!
//! The layout is fixed before any data is read, from the device's allocation map: header,
//! L1 table, refcount table, refcount blocks and one L2 table for every L1 entry whose range
//! may hold data, then the data clusters in guest order. Every cluster from the header to the
//! last data cluster is therefore used exactly once, so the refcounts are all 1 and can be
//! written after the data without a second pass over the device. The volume is read once.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::super::raw::data_ranges;
use super::super::{CHUNK, ImageFileError};
use super::header::MAGIC;
use super::{COPIED, OFFSET_MASK};
use crate::block::BlockDevice;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 16-bit refcounts: QEMU's default, and what `qemu-img check` expects most often.
const REFCOUNT_ORDER: u32 = 4;
const L2_ENTRIES: u64 = CLUSTER / 8;
const REFCOUNTS_PER_BLOCK: u64 = (CLUSTER * 8) >> REFCOUNT_ORDER;
const HEADER_LENGTH: u32 = 104;

/// Writes `dev` to `out` as a qcow2 v3 image with 64 KiB clusters, allocating only clusters
/// that hold non-zero bytes. The virtual size is the device's rounded up to 512 bytes.
///
/// `out` is truncated first. `progress` is called with the number of device bytes handled so
/// far. The file is synced to stable storage before this returns.
pub fn write_qcow2(
    out: &File,
    dev: &dyn BlockDevice,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ImageFileError> {
    let size = dev.size();
    // QEMU drops a partial last sector of a qcow2 virtual disk, so the exported disk is
    // padded with zeroes to whole sectors, as `qemu-img convert` does.
    let virtual_size = size.next_multiple_of(512);
    let ranges = data_ranges(dev)?;

    // Candidate clusters and the L1 entries that need an L2 table, from the allocation map.
    let mut candidates = 0u64;
    let mut l2_needed: Vec<u64> = Vec::new();
    let mut last_cluster: Option<u64> = None;
    for &(off, len) in &ranges {
        let mut first = off / CLUSTER;
        let end = (off + len).div_ceil(CLUSTER);
        // Adjacent ranges can share a cluster; count it once.
        if last_cluster == Some(first) {
            first += 1;
        }
        if first < end {
            candidates += end - first;
            for l1 in first / L2_ENTRIES..=(end - 1) / L2_ENTRIES {
                if l2_needed.last() != Some(&l1) {
                    l2_needed.push(l1);
                }
            }
            last_cluster = Some(end - 1);
        }
    }

    let l1_size = virtual_size.div_ceil(CLUSTER * L2_ENTRIES);
    let l1_clusters = (l1_size * 8).div_ceil(CLUSTER);
    let l2_count = l2_needed.len() as u64;
    // The refcount table and blocks must cover themselves too: iterate to a fixed point.
    let mut rb_count = 1u64;
    let mut rt_clusters = 1u64;
    loop {
        let total = 1 + l1_clusters + rt_clusters + rb_count + l2_count + candidates;
        let rb = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let rt = (rb * 8).div_ceil(CLUSTER);
        if rb == rb_count && rt == rt_clusters {
            break;
        }
        rb_count = rb.max(rb_count);
        rt_clusters = rt.max(rt_clusters);
    }
    let l1_offset = CLUSTER;
    let rt_offset = l1_offset + l1_clusters * CLUSTER;
    let rb_offset = rt_offset + rt_clusters * CLUSTER;
    let l2_offset = rb_offset + rb_count * CLUSTER;
    let data_offset = l2_offset + l2_count * CLUSTER;

    out.set_len(0)
        .map_err(|e| ImageFileError::io("truncating the qcow2 output file", e))?;
    let write = |buf: &[u8], at: u64, what: &str| {
        out.write_all_at(buf, at)
            .map_err(|e| ImageFileError::io(format!("writing the {what} at {at}"), e))
    };

    // Every planned L2 table is referenced, even one whose range turns out to hold only
    // zeroes: an empty table is valid, and it keeps every cluster up to the end in use once.
    let mut l1 = vec![0u64; usize::try_from(l1_size).map_err(|_| too_big(size))?];
    for (slot, &l1_index) in l2_needed.iter().enumerate() {
        if let Some(e) = l1.get_mut(usize::try_from(l1_index).unwrap_or(usize::MAX)) {
            *e = (l2_offset + slot as u64 * CLUSTER) | COPIED;
        }
    }
    let table_at = |l1_index: u64| l1[usize::try_from(l1_index).unwrap_or(0)] & OFFSET_MASK;

    // Data clusters in guest order; each L2 table is written once the data moves past it.
    let mut table = vec![0u8; CLUSTER as usize];
    let mut table_l1: Option<u64> = None;
    let mut next_data = data_offset;
    let mut buf = vec![0u8; CHUNK];
    let mut done_cluster: Option<u64> = None;
    for &(off, len) in &ranges {
        // Whole clusters around the range; one already read for the previous range is skipped.
        let mut pos = off / CLUSTER * CLUSTER;
        if done_cluster == Some(pos / CLUSTER) {
            pos += CLUSTER;
        }
        let end = (off + len).div_ceil(CLUSTER) * CLUSTER;
        while pos < end {
            let n = (end - pos).min(CHUNK as u64);
            let valid = n.min(size - pos);
            let chunk = &mut buf[..n as usize];
            chunk.fill(0);
            dev.read_at(&mut chunk[..valid as usize], pos)
                .map_err(|e| {
                    ImageFileError::io(format!("reading the volume at offset {pos}"), e)
                })?;
            for (i, cluster) in chunk.chunks(CLUSTER as usize).enumerate() {
                let guest = pos / CLUSTER + i as u64;
                done_cluster = Some(guest);
                if cluster.iter().all(|&b| b == 0) {
                    continue;
                }
                let l1_index = guest / L2_ENTRIES;
                if let Some(prev) = table_l1
                    && prev != l1_index
                {
                    write(&table, table_at(prev), "L2 table")?;
                    table.fill(0);
                }
                table_l1 = Some(l1_index);
                write(cluster, next_data, "data cluster")?;
                let slot = ((guest % L2_ENTRIES) * 8) as usize;
                table[slot..slot + 8]
                    .copy_from_slice(&((next_data & OFFSET_MASK) | COPIED).to_be_bytes());
                next_data += CLUSTER;
            }
            pos += n;
            progress(pos.min(size));
        }
    }
    if let Some(prev) = table_l1 {
        write(&table, table_at(prev), "L2 table")?;
    }

    let end = next_data;
    let used_clusters = end / CLUSTER;
    let mut refblock = vec![0u8; CLUSTER as usize];
    let mut rt = vec![0u8; (rt_clusters * CLUSTER) as usize];
    for b in 0..rb_count {
        refblock.fill(0);
        let first = b * REFCOUNTS_PER_BLOCK;
        let last = used_clusters.min(first + REFCOUNTS_PER_BLOCK);
        for c in first..last {
            let at = ((c - first) * 2) as usize;
            refblock[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        write(&refblock, rb_offset + b * CLUSTER, "refcount block")?;
        let at = (b * 8) as usize;
        rt[at..at + 8].copy_from_slice(&(rb_offset + b * CLUSTER).to_be_bytes());
    }
    write(&rt, rt_offset, "refcount table")?;

    let mut l1_bytes = vec![0u8; (l1_clusters * CLUSTER) as usize];
    for (i, e) in l1.iter().enumerate() {
        l1_bytes[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
    }
    write(&l1_bytes, l1_offset, "L1 table")?;

    let mut header = vec![0u8; CLUSTER as usize];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC);
    put(4, &3u32.to_be_bytes());
    put(20, &CLUSTER_BITS.to_be_bytes());
    put(24, &virtual_size.to_be_bytes());
    put(
        36,
        &u32::try_from(l1_size)
            .map_err(|_| too_big(size))?
            .to_be_bytes(),
    );
    put(40, &l1_offset.to_be_bytes());
    put(48, &rt_offset.to_be_bytes());
    put(
        56,
        &u32::try_from(rt_clusters)
            .map_err(|_| too_big(size))?
            .to_be_bytes(),
    );
    put(96, &REFCOUNT_ORDER.to_be_bytes());
    put(100, &HEADER_LENGTH.to_be_bytes());
    // Bytes 104..112 stay zero: the end-of-header-extensions marker.
    write(&header, 0, "qcow2 header")?;

    // Pad to whole clusters so the last allocated cluster is entirely inside the file.
    out.set_len(end)
        .map_err(|e| ImageFileError::io("sizing the qcow2 output file", e))?;
    out.sync_all()
        .map_err(|e| ImageFileError::io("syncing the qcow2 image", e))?;
    progress(size);
    Ok(())
}

fn too_big(size: u64) -> ImageFileError {
    ImageFileError::Unsupported(format!(
        "a {size}-byte volume is too large for qcow2 export"
    ))
}
