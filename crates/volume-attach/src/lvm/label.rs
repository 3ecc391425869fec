//! LVM2's binary on-disk structures of a physical volume: the label (`LABELONE` in one of the
//! first four sectors) with the PV header (UUID, size, data and metadata areas), and each
//! metadata area's header whose first raw location points at the current text metadata in a
//! circular buffer. Checksums are LVM's CRC-32 variant (initial value 0xf597a6cf, no final
//! inversion).
//!
//! Layouts (little-endian), offsets from the PV start:
//! - label header, sector S: `LABELONE`, sector u64 (= S), crc u32 (bytes 20..512), offset u32
//!   (of the PV header within the sector, 32), type `LVM2 001`.
//! - PV header: uuid [32], device size u64, data areas (offset u64, size u64)* 0-terminated,
//!   metadata areas (offset u64, size u64)* 0-terminated.
//! - metadata area header (512 bytes at the area's offset): crc u32 (bytes 4..512), magic
//!   ` LVM2 x[5A%r0N*>`, version u32, start u64, size u64, raw locations (offset u64 from the
//!   area start, size u64, crc u32 of the text, flags u32)* 0-terminated.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const INITIAL_CRC: u32 = 0xf597_a6cf;
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
const MDA_HEADER: u64 = 512;
const RAW_LOCN_IGNORED: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("reading or writing the physical volume")]
    Io(#[from] io::Error),
    #[error("corrupt LVM physical volume: {0}")]
    Corrupt(String),
    #[error("the LVM metadata area at byte {0} is too small for the new metadata")]
    AreaFull(u64),
}

/// LVM's CRC-32: the standard table, initial value `INITIAL_CRC`, no final inversion.
pub fn lvm_crc(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!INITIAL_CRC);
    h.update(data);
    !h.finalize()
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// What the label of a physical volume says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// In LVM's dashed form (6-4-4-4-4-4-6), as the text metadata writes it.
    pub uuid: String,
    pub device_size: u64,
    /// Offset of the first data area (`pe_start`) in bytes.
    pub data_offset: u64,
    /// Metadata areas: (offset, size) in bytes.
    pub mdas: Vec<(u64, u64)>,
}

/// A physical volume at `base` bytes into `dev`.
#[derive(Debug, Clone, Copy)]
pub struct Pv<'a> {
    pub dev: &'a File,
    pub base: u64,
}

impl Pv<'_> {
    fn read(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0; len];
        self.dev.read_exact_at(&mut b, self.base + off)?;
        Ok(b)
    }

    fn write(&self, off: u64, b: &[u8]) -> io::Result<()> {
        self.dev.write_all_at(b, self.base + off)
    }
}

/// Reads the label, or `None` when the device is not a PV.
pub fn read_label(pv: Pv<'_>) -> Result<Option<PvLabel>, LabelError> {
    let head = pv.read(0, 4 * 512)?;
    let Some(s) = (0..4).find(|s| &head[s * 512..s * 512 + 8] == b"LABELONE") else {
        return Ok(None);
    };
    let sec = &head[s * 512..(s + 1) * 512];
    if &sec[24..32] != b"LVM2 001" {
        return Ok(None);
    }
    if lvm_crc(&sec[20..]) != le32(sec, 16) {
        return Err(LabelError::Corrupt(format!(
            "label in sector {s} fails its checksum"
        )));
    }
    let mut at = le32(sec, 20) as usize;
    if at + 40 > 512 {
        return Err(LabelError::Corrupt(format!("PV header offset {at}")));
    }
    let raw = &sec[at..at + 32];
    let uuid = [0..6, 6..10, 10..14, 14..18, 18..22, 22..26, 26..32]
        .into_iter()
        .map(|r| String::from_utf8_lossy(&raw[r]).into_owned())
        .collect::<Vec<_>>()
        .join("-");
    let device_size = le64(sec, at + 32);
    at += 40;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            if at + 16 > 512 {
                return Err(LabelError::Corrupt("unterminated area list".into()));
            }
            let (off, size) = (le64(sec, at), le64(sec, at + 8));
            at += 16;
            if off == 0 {
                break;
            }
            list.push((off, size));
        }
    }
    let [data, mdas] = lists;
    let data_offset = data
        .first()
        .map(|d| d.0)
        .ok_or_else(|| LabelError::Corrupt("PV header lists no data area".into()))?;
    Ok(Some(PvLabel {
        uuid,
        device_size,
        data_offset,
        mdas,
    }))
}

/// Where one copy of the metadata text lies, and the text itself (without the final NUL).
#[derive(Debug, Clone)]
pub struct MdaText {
    pub mda: (u64, u64),
    pub offset: u64,
    pub size: u64,
    pub text: String,
}

fn read_mda_header(pv: Pv<'_>, mda: (u64, u64)) -> Result<Vec<u8>, LabelError> {
    let h = pv.read(mda.0, MDA_HEADER as usize)?;
    if &h[4..20] != MDA_MAGIC {
        return Err(LabelError::Corrupt(format!(
            "no metadata area header at byte {}",
            mda.0
        )));
    }
    if lvm_crc(&h[4..]) != le32(&h, 0) {
        return Err(LabelError::Corrupt(format!(
            "metadata area header at byte {} fails its checksum",
            mda.0
        )));
    }
    Ok(h)
}

/// Reads the current metadata text from each metadata area that has one.
pub fn read_metadata(pv: Pv<'_>, label: &PvLabel) -> Result<Vec<MdaText>, LabelError> {
    let mut out = Vec::new();
    for &mda in &label.mdas {
        let h = read_mda_header(pv, mda)?;
        let (offset, size, crc, flags) = (le64(&h, 40), le64(&h, 48), le32(&h, 56), le32(&h, 60));
        if offset == 0 || flags & RAW_LOCN_IGNORED != 0 {
            continue;
        }
        if offset < MDA_HEADER || offset >= mda.1 || size > mda.1 - MDA_HEADER {
            return Err(LabelError::Corrupt(format!(
                "metadata text at {offset}+{size} outside its {}-byte area",
                mda.1
            )));
        }
        // The area after the header is a circular buffer: the text may wrap.
        let first = size.min(mda.1 - offset);
        let mut text = pv.read(mda.0 + offset, first as usize)?;
        text.extend(pv.read(mda.0 + MDA_HEADER, (size - first) as usize)?);
        if lvm_crc(&text) != crc {
            return Err(LabelError::Corrupt(format!(
                "metadata text in the area at byte {} fails its checksum",
                mda.0
            )));
        }
        while text.last() == Some(&0) {
            text.pop();
        }
        out.push(MdaText {
            mda,
            offset,
            size,
            text: String::from_utf8_lossy(&text).into_owned(),
        });
    }
    Ok(out)
}

/// Commits `text` as the new metadata of the area `old` came from: the text goes after the
/// current copy (never over it), then the header is rewritten to point at it, so a crash in
/// between leaves the old metadata in force.
pub fn write_metadata(pv: Pv<'_>, old: &MdaText, text: &str) -> Result<(), LabelError> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    let len = bytes.len() as u64;
    let (mda_off, mda_size) = old.mda;
    let after = (old.offset + old.size).div_ceil(512) * 512;
    let start = if after + len <= mda_size {
        after
    } else if MDA_HEADER + len <= old.offset {
        MDA_HEADER
    } else {
        return Err(LabelError::AreaFull(mda_off));
    };
    pv.write(mda_off + start, &bytes)?;
    pv.dev.sync_data()?;
    let mut h = read_mda_header(pv, old.mda)?;
    h[40..48].copy_from_slice(&start.to_le_bytes());
    h[48..56].copy_from_slice(&len.to_le_bytes());
    h[56..60].copy_from_slice(&lvm_crc(&bytes).to_le_bytes());
    h[60..64].fill(0);
    // A precommitted copy would describe the old metadata; drop it.
    h[64..88].fill(0);
    let crc = lvm_crc(&h[4..]);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    pv.write(mda_off, &h)?;
    pv.dev.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn crc_matches_lvm() {
        // LVM's calc_crc over the empty buffer is its initial value.
        assert_eq!(lvm_crc(&[]), INITIAL_CRC);
    }
}
