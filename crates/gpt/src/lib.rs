//! A GUID partition table writer: protective MBR, primary header and entries at LBA 1-33,
//! backup entries and header at the end of the disk, CRC32s per UEFI 2.x §5.3.

use crc32fast::Hasher;

pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// One partition, LBAs inclusive like GPT stores them.
#[derive(Debug, Clone)]
pub struct GptPartition {
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" → on-disk bytes (first three fields little-endian).
pub fn guid_bytes(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

/// The inverse of [`guid_bytes`], upper case.
pub fn guid_string(b: &[u8; 16]) -> String {
    let mut b = *b;
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// First usable LBA and last usable LBA of a disk of `sectors`.
pub fn usable(sectors: u64) -> (u64, u64) {
    (2 + ENTRY_SECTORS, sectors - 2 - ENTRY_SECTORS)
}

/// The regions to write: (byte offset, bytes) for the MBR, both headers and both entry arrays.
pub fn regions(sectors: u64, disk_guid: [u8; 16], parts: &[GptPartition]) -> Vec<(u64, Vec<u8>)> {
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.unique_guid);
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + j * 2..58 + j * 2].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let (first, last) = usable(sectors);
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&first.to_le_bytes());
        h[48..56].copy_from_slice(&last.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let mut c = Hasher::new();
        c.update(&h[0..92]);
        h[16..20].copy_from_slice(&c.finalize().to_le_bytes());
        h
    };
    let mut mbr = vec![0u8; SECTOR as usize];
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let backup_entries = sectors - 1 - ENTRY_SECTORS;
    vec![
        (0, mbr),
        (SECTOR, header(1, sectors - 1, 2)),
        (2 * SECTOR, entries.clone()),
        (backup_entries * SECTOR, entries),
        (
            (sectors - 1) * SECTOR,
            header(sectors - 1, 1, backup_entries),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_round_trip() {
        let s = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        let b = guid_bytes(s).unwrap();
        assert_eq!(b[0..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(guid_string(&b), s);
        assert!(guid_bytes("nope").is_none());
    }
}
