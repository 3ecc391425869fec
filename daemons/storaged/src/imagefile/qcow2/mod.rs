//! qcow2 images: reading versions 2 and 3 for import, writing version 3 for export.
//!
//! Only self-contained images are read: no backing file, no encryption, no external data file,
//! no extended L2 entries. Layout reference: QEMU `docs/interop/qcow2.txt`.

mod header;
mod reader;
mod writer;

pub(super) use header::MAGIC;
pub(super) use reader::Qcow2Source;
pub use writer::write_qcow2;

/// L1 and standard L2 entries: host offset of the table or cluster (bits 9-55).
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L1 and L2 entries: the cluster's refcount is exactly one, so it may be written in place.
const COPIED: u64 = 1 << 63;
/// L2 entries: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// L2 entries (version 3): the cluster reads as zeroes.
const ZERO: u64 = 1;

#[cfg(test)]
mod tests;
