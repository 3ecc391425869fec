//! Partition tables: GPT (behind its protective MBR, with the backup header as fallback) and
//! MBR (four primary slots, and logical partitions chained through extended boot records).
//!
//! Numbers follow Linux: GPT partitions by their slot, MBR primaries 1–4, logicals from 5.
//! Sectors are 512 bytes, as on every volume storaged serves.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub use gpt::SECTOR;
/// Logical partitions followed before the chain is taken for a loop.
const MAX_LOGICAL: usize = 128;

/// Why a partition table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("reading the partition table")]
    Io(#[from] io::Error),
    #[error("corrupt partition table: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Gpt,
    Mbr,
    /// No partition table (a filesystem or PV on the whole disk, or an empty disk).
    None,
}

/// One partition; `start` and `len` in bytes from the start of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub start: u64,
    pub len: u64,
    /// MBR type byte as two hex digits, or the GPT type GUID.
    pub type_id: String,
    /// An MBR extended partition: a container, not a filesystem.
    pub extended: bool,
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn read(disk: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut b = vec![0; len];
    disk.read_exact_at(&mut b, off)?;
    Ok(b)
}

/// Reads the partition table of a disk of `size` bytes.
pub fn read_table(disk: &File, size: u64) -> Result<(TableKind, Vec<Partition>), PartitionError> {
    if size < 2 * SECTOR {
        return Ok((TableKind::None, Vec::new()));
    }
    let mbr = read(disk, 0, SECTOR as usize)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Ok((TableKind::None, Vec::new()));
    }
    let slots: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| {
            let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
            (e[4], u64::from(le32(e, 8)), u64::from(le32(e, 12)))
        })
        .collect();
    if slots.iter().any(|s| s.0 == 0xEE) {
        return Ok((TableKind::Gpt, read_gpt(disk, size)?));
    }
    // A FAT or NTFS boot sector also ends in 55 AA; its "slots" are code and BPB bytes.
    if slots.iter().all(|s| s.0 == 0) || slots.iter().any(|s| s.0 != 0 && s.1 == 0) {
        return Ok((TableKind::None, Vec::new()));
    }
    Ok((TableKind::Mbr, read_mbr(disk, size, &slots)?))
}

fn check_bounds(p: &Partition, size: u64) -> Result<(), PartitionError> {
    if p.len == 0 || p.start.checked_add(p.len).is_none_or(|end| end > size) {
        return Err(PartitionError::Corrupt(format!(
            "partition {} (bytes {}+{}) does not fit on the {size}-byte disk",
            p.number, p.start, p.len
        )));
    }
    Ok(())
}

fn read_mbr(
    disk: &File,
    size: u64,
    slots: &[(u8, u64, u64)],
) -> Result<Vec<Partition>, PartitionError> {
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, &(kind, start, sectors)) in slots.iter().enumerate() {
        if kind == 0 || sectors == 0 {
            continue;
        }
        let is_ext = matches!(kind, 0x05 | 0x0F | 0x85);
        let p = Partition {
            number: i as u32 + 1,
            start: start * SECTOR,
            // Linux shows an extended partition as 1 KiB, enough for a boot loader to chain.
            len: if is_ext {
                (2 * SECTOR).min(sectors * SECTOR)
            } else {
                sectors * SECTOR
            },
            type_id: format!("{kind:02x}"),
            extended: is_ext,
        };
        check_bounds(
            &Partition {
                len: sectors * SECTOR,
                ..p.clone()
            },
            size,
        )?;
        if is_ext {
            if extended.is_some() {
                return Err(PartitionError::Corrupt("two extended partitions".into()));
            }
            extended = Some((start, sectors));
        }
        parts.push(p);
    }
    if let Some((ext_start, ext_sectors)) = extended {
        let mut next = 0u64;
        let mut number = 5;
        loop {
            if parts.len() > MAX_LOGICAL {
                return Err(PartitionError::Corrupt(
                    "the logical partition chain loops".into(),
                ));
            }
            let ebr_lba = ext_start + next;
            if next >= ext_sectors {
                return Err(PartitionError::Corrupt(format!(
                    "extended boot record at sector {ebr_lba} lies outside the extended partition"
                )));
            }
            let ebr = read(disk, ebr_lba * SECTOR, SECTOR as usize)?;
            if ebr[510] != 0x55 || ebr[511] != 0xAA {
                return Err(PartitionError::Corrupt(format!(
                    "no extended boot record signature at sector {ebr_lba}"
                )));
            }
            let e1 = &ebr[446..462];
            if e1[4] != 0 && le32(e1, 12) != 0 {
                let p = Partition {
                    number,
                    start: (ebr_lba + u64::from(le32(e1, 8))) * SECTOR,
                    len: u64::from(le32(e1, 12)) * SECTOR,
                    type_id: format!("{:02x}", e1[4]),
                    extended: false,
                };
                check_bounds(&p, size)?;
                parts.push(p);
                number += 1;
            }
            let e2 = &ebr[462..478];
            if e2[4] == 0 || le32(e2, 8) == 0 {
                break;
            }
            next = u64::from(le32(e2, 8));
        }
    }
    Ok(parts)
}

fn read_gpt(disk: &File, size: u64) -> Result<Vec<Partition>, PartitionError> {
    let mut read_at = |off: u64, buf: &mut [u8]| disk.read_exact_at(buf, off);
    let table = gpt::read_table(&mut read_at, size / SECTOR).map_err(|e| match e {
        gpt::GptError::Io { .. } => PartitionError::Corrupt(e.to_string()),
        gpt::GptError::NoHeader(_) => PartitionError::Corrupt(format!("protective MBR but {e}")),
        other => PartitionError::Corrupt(other.to_string()),
    })?;
    if table.from_backup {
        tracing::warn!("primary GPT header is corrupt; using the backup");
    }
    let mut parts = Vec::new();
    for (number, e) in table.partitions {
        let p = Partition {
            number,
            start: e.first_lba * SECTOR,
            len: (e.last_lba - e.first_lba + 1) * SECTOR,
            type_id: gpt::guid_string(&e.type_guid),
            extended: false,
        };
        check_bounds(&p, size)?;
        parts.push(p);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn disk(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn mbr_entry(b: &mut [u8], at: usize, kind: u8, start: u32, sectors: u32) {
        b[at + 4] = kind;
        b[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        b[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
    }

    #[test]
    fn mbr_with_logicals() {
        let mut b = vec![0u8; 4096 * 512];
        b[510] = 0x55;
        b[511] = 0xAA;
        mbr_entry(&mut b, 446, 0x83, 2048, 1024);
        mbr_entry(&mut b, 462, 0x05, 3072, 1024);
        // EBR 1 at 3072: logical at +64 (128 sectors), next EBR at ext+512.
        let e = 3072 * 512;
        b[e + 510] = 0x55;
        b[e + 511] = 0xAA;
        mbr_entry(&mut b, e + 446, 0x8e, 64, 128);
        mbr_entry(&mut b, e + 462, 0x05, 512, 256);
        let e = (3072 + 512) * 512;
        b[e + 510] = 0x55;
        b[e + 511] = 0xAA;
        mbr_entry(&mut b, e + 446, 0x82, 64, 100);
        let (kind, parts) = read_table(&disk(&b), b.len() as u64).unwrap();
        assert_eq!(kind, TableKind::Mbr);
        let got: Vec<_> = parts
            .iter()
            .map(|p| (p.number, p.start / 512, p.len / 512, p.extended))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 2048, 1024, false),
                (2, 3072, 2, true),
                (5, 3136, 128, false),
                (6, 3648, 100, false)
            ]
        );
    }

    #[test]
    fn mbr_partition_past_the_end_is_corrupt() {
        let mut b = vec![0u8; 64 * 512];
        b[510] = 0x55;
        b[511] = 0xAA;
        mbr_entry(&mut b, 446, 0x83, 32, 64);
        let err = read_table(&disk(&b), b.len() as u64).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn no_table() {
        let b = vec![0u8; 64 * 512];
        assert_eq!(
            read_table(&disk(&b), b.len() as u64).unwrap().0,
            TableKind::None
        );
    }

    fn gpt_image() -> Vec<u8> {
        let sectors = 2048u64;
        let mut b = vec![0u8; (sectors * 512) as usize];
        b[510] = 0x55;
        b[511] = 0xAA;
        mbr_entry(&mut b, 446, 0xEE, 1, (sectors - 1) as u32);
        let mut entries = vec![0u8; 128 * 128];
        // Slot 2 (partition 2) only: sectors 100..=199, type Linux filesystem.
        let e = &mut entries[128..256];
        e[0..16].copy_from_slice(&[
            0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47,
            0x7D, 0xE4,
        ]);
        e[16] = 1;
        e[32..40].copy_from_slice(&100u64.to_le_bytes());
        e[40..48].copy_from_slice(&199u64.to_le_bytes());
        let ecrc = crc32fast::hash(&entries);
        for (hdr_lba, entries_lba) in [(1u64, 2u64), (sectors - 1, sectors - 33)] {
            let h = (hdr_lba * 512) as usize;
            b[h..h + 8].copy_from_slice(b"EFI PART");
            b[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
            b[h + 72..h + 80].copy_from_slice(&entries_lba.to_le_bytes());
            b[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
            b[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
            b[h + 88..h + 92].copy_from_slice(&ecrc.to_le_bytes());
            let crc = crc32fast::hash(&b[h..h + 92]);
            b[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
            let el = (entries_lba * 512) as usize;
            b[el..el + entries.len()].copy_from_slice(&entries);
        }
        b
    }

    #[test]
    fn gpt_and_its_backup() {
        let mut b = gpt_image();
        let (kind, parts) = read_table(&disk(&b), b.len() as u64).unwrap();
        assert_eq!(kind, TableKind::Gpt);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].number, parts[0].start, parts[0].len),
            (2, 100 * 512, 100 * 512)
        );
        assert_eq!(parts[0].type_id, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        // Damage the primary header: the backup still describes the disk.
        b[512 + 20] ^= 0xFF;
        let (_, parts) = read_table(&disk(&b), b.len() as u64).unwrap();
        assert_eq!(parts[0].number, 2);
        // Damage the backup too.
        let last = b.len() - 512;
        b[last + 20] ^= 0xFF;
        let err = read_table(&disk(&b), b.len() as u64).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
