//! GUID partition tables (UEFI 2.x §5.3), written once for the three programs that need them:
//! the image builder writes a new table ([`new_table`]), init grows the appliance's data
//! partition to the end of its disk ([`grow_partition`]), and plan runs read the tables of OS
//! volumes ([`read_table`], with the backup header when the primary is damaged).
//!
//! Layout on a disk of `n` 512-byte sectors: protective MBR at 0, primary header at 1, the
//! entry array from 2, the backup entry array just before the last sector and the backup
//! header in it. Every header carries the CRC-32 of itself and of the entry array; a table
//! whose checksums do not hold is refused, never half-used.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crc32fast::Hasher;

/// Bytes per sector: every disk these programs see (and every volume storaged serves).
pub const SECTOR: u64 = 512;
/// Entries in the tables we write.
pub const ENTRIES: u64 = 128;
/// Bytes per entry in the tables we write.
pub const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION_1_0: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// Largest entry array read (4096 entries of 128 bytes is what any real tool writes, 512 KiB).
const MAX_ENTRY_ARRAY: usize = 1 << 20;

/// Why a table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    #[error("no GPT header at sector {0}")]
    NoHeader(u64),
    #[error("GPT header at sector {lba} has an invalid size ({size} bytes)")]
    HeaderSize { lba: u64, size: u32 },
    #[error("GPT header at sector {0} fails its checksum")]
    HeaderChecksum(u64),
    #[error("GPT header: {count} entries of {size} bytes")]
    EntryArray { count: u32, size: u32 },
    #[error("GPT partition entries fail their checksum")]
    EntriesChecksum,
    #[error("GPT partition {0} ends before it starts")]
    Backwards(u32),
    #[error("no GPT entry {0}")]
    NoEntry(u32),
    #[error("GPT entry {0} is unused")]
    Unused(u32),
    #[error("{what}: {message}")]
    Io { what: &'static str, message: String },
}

fn io_error(what: &'static str) -> impl Fn(io::Error) -> GptError {
    move |e| GptError::Io {
        what,
        message: e.to_string(),
    }
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// A GPT header. Parsing keeps the sector as read, so [`Header::encode`] rewrites only the
/// fields this crate knows and leaves the rest as the writer left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: [u8; 16],
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
    /// The header's own size: what its checksum covers.
    pub size: u32,
    raw: [u8; SECTOR as usize],
}

impl Header {
    /// Parses the header in `sector` (read from `lba`) and checks its signature, size and
    /// checksum.
    pub fn parse(sector: &[u8], lba: u64) -> Result<Self, GptError> {
        if sector.len() < SECTOR as usize || &sector[0..8] != SIGNATURE {
            return Err(GptError::NoHeader(lba));
        }
        let size = le32(sector, 12);
        if !(HEADER_SIZE..=SECTOR as u32).contains(&size) {
            return Err(GptError::HeaderSize { lba, size });
        }
        let mut raw = [0u8; SECTOR as usize];
        raw.copy_from_slice(&sector[..SECTOR as usize]);
        let mut check = raw;
        check[16..20].fill(0);
        if crc32fast::hash(&check[..size as usize]) != le32(&raw, 16) {
            return Err(GptError::HeaderChecksum(lba));
        }
        let mut disk_guid = [0u8; 16];
        disk_guid.copy_from_slice(&raw[56..72]);
        Ok(Self {
            my_lba: le64(&raw, 24),
            alternate_lba: le64(&raw, 32),
            first_usable_lba: le64(&raw, 40),
            last_usable_lba: le64(&raw, 48),
            disk_guid,
            entries_lba: le64(&raw, 72),
            entry_count: le32(&raw, 80),
            entry_size: le32(&raw, 84),
            entries_crc: le32(&raw, 88),
            size,
            raw,
        })
    }

    /// A new header for a disk of `sectors` whose entry array (of [`ENTRIES`] entries) has
    /// the checksum `entries_crc`.
    fn new(sectors: u64, my_lba: u64, entries_lba: u64, disk_guid: [u8; 16], crc: u32) -> Self {
        let (first, last) = usable(sectors);
        let mut raw = [0u8; SECTOR as usize];
        raw[0..8].copy_from_slice(SIGNATURE);
        raw[8..12].copy_from_slice(&REVISION_1_0.to_le_bytes());
        Self {
            my_lba,
            alternate_lba: if my_lba == 1 { sectors - 1 } else { 1 },
            first_usable_lba: first,
            last_usable_lba: last,
            disk_guid,
            entries_lba,
            entry_count: ENTRIES as u32,
            entry_size: ENTRY_SIZE as u32,
            entries_crc: crc,
            size: HEADER_SIZE,
            raw,
        }
    }

    /// The header's sector, its checksum computed.
    pub fn encode(&self) -> [u8; SECTOR as usize] {
        let mut h = self.raw;
        h[12..16].copy_from_slice(&self.size.to_le_bytes());
        h[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable_lba.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid);
        h[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&self.entry_count.to_le_bytes());
        h[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        h[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        h[16..20].fill(0);
        let mut c = Hasher::new();
        c.update(&h[..self.size as usize]);
        h[16..20].copy_from_slice(&c.finalize().to_le_bytes());
        h
    }

    /// Bytes of the entry array, refused when implausible.
    pub fn entries_len(&self) -> Result<usize, GptError> {
        let (count, size) = (self.entry_count, self.entry_size);
        let len = count as usize * size as usize;
        if !(128..=4096).contains(&size) || count == 0 || len > MAX_ENTRY_ARRAY {
            return Err(GptError::EntryArray { count, size });
        }
        Ok(len)
    }

    /// Checks the entry array against the header's checksum.
    pub fn check_entries(&self, array: &[u8]) -> Result<(), GptError> {
        if crc32fast::hash(array) == self.entries_crc {
            Ok(())
        } else {
            Err(GptError::EntriesChecksum)
        }
    }
}

/// One partition entry, LBAs inclusive as GPT stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// At most 36 UTF-16 code units.
    pub name: String,
}

impl Entry {
    /// The entry in `raw`, or `None` for an unused slot (all-zero type GUID).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        if raw.len() < 128 || raw[0..16].iter().all(|&b| b == 0) {
            return None;
        }
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&raw[0..16]);
        let mut unique_guid = [0u8; 16];
        unique_guid.copy_from_slice(&raw[16..32]);
        let units: Vec<u16> = raw[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(Self {
            type_guid,
            unique_guid,
            first_lba: le64(raw, 32),
            last_lba: le64(raw, 40),
            attributes: le64(raw, 48),
            name: String::from_utf16_lossy(&units),
        })
    }

    fn encode_into(&self, e: &mut [u8]) {
        e[0..16].copy_from_slice(&self.type_guid);
        e[16..32].copy_from_slice(&self.unique_guid);
        e[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        for (j, u) in self.name.encode_utf16().take(36).enumerate() {
            e[56 + j * 2..58 + j * 2].copy_from_slice(&u.to_le_bytes());
        }
    }
}

/// A table read from a disk: the header used and the partitions by their (1-based) slot.
#[derive(Debug, Clone)]
pub struct Table {
    pub header: Header,
    pub partitions: Vec<(u32, Entry)>,
    /// The primary header was damaged and the backup was used.
    pub from_backup: bool,
}

/// The used entries of `array`, numbered from 1 by slot.
pub fn entries(header: &Header, array: &[u8]) -> Result<Vec<(u32, Entry)>, GptError> {
    let size = header.entry_size as usize;
    let mut out = Vec::new();
    for (i, raw) in array.chunks_exact(size).enumerate() {
        let number = i as u32 + 1;
        if let Some(e) = Entry::parse(raw) {
            if e.last_lba < e.first_lba {
                return Err(GptError::Backwards(number));
            }
            out.push((number, e));
        }
    }
    Ok(out)
}

/// Reads the table of a disk of `sectors` through `read_at(offset, buf)`: the primary
/// header, or the backup at the last sector when the primary is missing or damaged.
pub fn read_table(
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    sectors: u64,
) -> Result<Table, GptError> {
    let mut header_at = |lba: u64| -> Result<Header, GptError> {
        let mut b = vec![0u8; SECTOR as usize];
        read_at(lba * SECTOR, &mut b).map_err(io_error("reading the GPT header"))?;
        Header::parse(&b, lba)
    };
    let (header, from_backup) = match header_at(1) {
        Ok(h) => (h, false),
        Err(primary) => (
            header_at(sectors.saturating_sub(1)).map_err(|_| primary)?,
            true,
        ),
    };
    let mut array = vec![0u8; header.entries_len()?];
    read_at(header.entries_lba * SECTOR, &mut array)
        .map_err(io_error("reading the GPT entries"))?;
    header.check_entries(&array)?;
    let partitions = entries(&header, &array)?;
    Ok(Table {
        header,
        partitions,
        from_backup,
    })
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

/// First usable LBA and last usable LBA of a disk of `sectors`, with our entry arrays.
pub fn usable(sectors: u64) -> (u64, u64) {
    (2 + ENTRY_SECTORS, sectors - 2 - ENTRY_SECTORS)
}

/// A protective MBR for a disk of `sectors` (its one partition covers the disk, capped at
/// 2 TiB as the 32-bit field allows).
pub fn protective_mbr(sectors: u64) -> [u8; SECTOR as usize] {
    let mut mbr = [0u8; SECTOR as usize];
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

/// A new table for a disk of `sectors`: the regions to write, as (byte offset, bytes), for
/// the MBR, both headers and both entry arrays.
pub fn new_table(sectors: u64, disk_guid: [u8; 16], parts: &[Entry]) -> Vec<(u64, Vec<u8>)> {
    let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        p.encode_into(&mut array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize]);
    }
    let crc = crc32fast::hash(&array);
    let backup_entries = sectors - 1 - ENTRY_SECTORS;
    let primary = Header::new(sectors, 1, 2, disk_guid, crc);
    let backup = Header::new(sectors, sectors - 1, backup_entries, disk_guid, crc);
    vec![
        (0, protective_mbr(sectors).to_vec()),
        (SECTOR, primary.encode().to_vec()),
        (2 * SECTOR, array.clone()),
        (backup_entries * SECTOR, array),
        ((sectors - 1) * SECTOR, backup.encode().to_vec()),
    ]
}

/// Where a grown partition now lies, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub start: u64,
    pub length: u64,
    pub old_length: u64,
}

/// Extends partition `number` of the table on `disk` (`disk_bytes` long) to the last usable
/// sector, rounded down to a multiple of `align_sectors`, when it is the last partition and
/// the disk has room; moves the backup header and entries to the end of the disk. `None` when
/// there is nothing to do. The primary copy is written last, so an interruption leaves a
/// valid primary table.
pub fn grow_partition(
    disk: &mut (impl Read + Write + Seek),
    disk_bytes: u64,
    number: u32,
    align_sectors: u64,
) -> Result<Option<Grown>, GptError> {
    let sectors = disk_bytes / SECTOR;
    let read = |disk: &mut dyn ReadSeek, off: u64, len: usize| {
        let mut b = vec![0u8; len];
        disk.seek(SeekFrom::Start(off))
            .and_then(|_| disk.read_exact(&mut b))
            .map_err(io_error("reading the partition table"))?;
        Ok::<_, GptError>(b)
    };
    let mut header = Header::parse(&read(disk, SECTOR, SECTOR as usize)?, 1)?;
    let mut array = read(disk, header.entries_lba * SECTOR, header.entries_len()?)?;
    header.check_entries(&array)?;
    let parts = entries(&header, &array)?;
    let Some((_, entry)) = parts.iter().find(|(n, _)| *n == number) else {
        return Err(if number == 0 || number > header.entry_count {
            GptError::NoEntry(number)
        } else {
            GptError::Unused(number)
        });
    };
    let (first, last) = (entry.first_lba, entry.last_lba);
    if parts
        .iter()
        .any(|(n, e)| *n != number && e.first_lba > last)
    {
        // Not the last partition: growing it would overlap the next one.
        return Ok(None);
    }
    let entry_sectors = header.entries_len()? as u64 / SECTOR;
    let last_usable = sectors.saturating_sub(2 + entry_sectors);
    let Some(new_last) = ((last_usable + 1) / align_sectors.max(1) * align_sectors.max(1))
        .checked_sub(1)
        .filter(|&n| n > last)
    else {
        return Ok(None);
    };
    let at = (number as usize - 1) * header.entry_size as usize;
    array[at + 40..at + 48].copy_from_slice(&new_last.to_le_bytes());
    header.entries_crc = crc32fast::hash(&array);
    header.last_usable_lba = last_usable;
    header.my_lba = 1;
    header.alternate_lba = sectors - 1;
    let backup_entries = sectors - 1 - entry_sectors;
    let backup = Header {
        my_lba: sectors - 1,
        alternate_lba: 1,
        entries_lba: backup_entries,
        ..header.clone()
    };
    let write = |disk: &mut dyn WriteSeek, off: u64, b: &[u8]| {
        disk.seek(SeekFrom::Start(off))
            .and_then(|_| disk.write_all(b))
            .and_then(|()| disk.flush())
            .map_err(io_error("writing the partition table"))
    };
    write(disk, backup_entries * SECTOR, &array)?;
    write(disk, (sectors - 1) * SECTOR, &backup.encode())?;
    write(disk, header.entries_lba * SECTOR, &array)?;
    write(disk, SECTOR, &header.encode())?;
    // The protective MBR covers the whole disk (capped at 2 TiB).
    let mbr_size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    write(disk, 446 + 12, &mbr_size.to_le_bytes())?;
    Ok(Some(Grown {
        start: first * SECTOR,
        length: (new_last + 1 - first) * SECTOR,
        old_length: (last + 1 - first) * SECTOR,
    }))
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}
trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

    #[test]
    fn guid_round_trip() {
        let b = guid_bytes(ESP).unwrap();
        assert_eq!(b[0..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(guid_string(&b), ESP);
        assert!(guid_bytes("nope").is_none());
    }

    fn disk_of(sectors: u64, regions: Vec<(u64, Vec<u8>)>) -> Vec<u8> {
        let mut d = vec![0u8; (sectors * SECTOR) as usize];
        for (off, b) in regions {
            d[off as usize..off as usize + b.len()].copy_from_slice(&b);
        }
        d
    }

    fn reader(d: &[u8]) -> impl FnMut(u64, &mut [u8]) -> io::Result<()> + '_ {
        |off, buf| {
            let off = off as usize;
            let end = off + buf.len();
            if end > d.len() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.copy_from_slice(&d[off..end]);
            Ok(())
        }
    }

    #[test]
    fn a_new_table_reads_back_and_the_backup_stands_in_for_a_damaged_primary() {
        let part = Entry {
            type_guid: guid_bytes(ESP).unwrap(),
            unique_guid: [7; 16],
            first_lba: 2048,
            last_lba: 4095,
            attributes: 0,
            name: "streamer-esp".into(),
        };
        let mut d = disk_of(8192, new_table(8192, [9; 16], std::slice::from_ref(&part)));
        let t = read_table(&mut reader(&d), 8192).unwrap();
        assert!(!t.from_backup);
        assert_eq!(t.partitions, vec![(1, part.clone())]);
        assert_eq!(t.header.disk_guid, [9; 16]);
        assert_eq!(d[510..512], [0x55, 0xAA]);
        d[512 + 30] ^= 1; // the primary header's checksum no longer holds
        let t = read_table(&mut reader(&d), 8192).unwrap();
        assert!(t.from_backup);
        assert_eq!(t.header.my_lba, 8191);
        assert_eq!(t.partitions, vec![(1, part)]);
        d[8191 * 512 + 30] ^= 1;
        assert_eq!(
            read_table(&mut reader(&d), 8192).unwrap_err(),
            GptError::HeaderChecksum(1)
        );
        let e = read_table(&mut reader(&[0u8; 8192 * 512]), 8192).unwrap_err();
        assert!(e.to_string().contains("no GPT"), "{e}");
    }

    /// A minimal GPT written byte by byte (not by this crate), as the image builder lays one
    /// out.
    fn disk_with_gpt(sectors: u64, parts: &[(u64, u64)]) -> Vec<u8> {
        let mut disk = vec![0u8; (sectors * SECTOR) as usize];
        let mut entries = vec![0u8; 128 * 128];
        for (i, (first, last)) in parts.iter().enumerate() {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[0] = 0xAF; // a non-zero type GUID
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        }
        let mut h = vec![0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let c = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&c.to_le_bytes());
        disk[512..1024].copy_from_slice(&h);
        disk[1024..1024 + entries.len()].copy_from_slice(&entries);
        disk
    }

    #[test]
    fn the_last_partition_grows_to_the_aligned_end_with_valid_checksums() {
        // An image of 8 MiB whose data partition (3) ends at 6 MiB, copied onto a 16 MiB disk.
        let image = disk_with_gpt(16384, &[(2048, 4095), (4096, 6143), (6144, 12287)]);
        let mut disk = vec![0u8; 32768 * 512];
        disk[..image.len()].copy_from_slice(&image);
        let mut c = Cursor::new(disk);
        let g = grow_partition(&mut c, 32768 * 512, 3, 2048)
            .unwrap()
            .unwrap();
        assert_eq!(g.start, 6144 * 512);
        // 32768 sectors - 34 = 32734 last usable; aligned down: 30720 - 1.
        assert_eq!(g.length, (30719 + 1 - 6144) * 512);
        assert_eq!(g.old_length, (12287 + 1 - 6144) * 512);
        let d = c.get_ref();
        let h = &d[512..1024];
        let mut chk = h[..92].to_vec();
        chk[16..20].fill(0);
        assert_eq!(crc32fast::hash(&chk), le32(h, 16));
        assert_eq!(le64(h, 32), 32767);
        assert_eq!(le64(h, 48), 32734);
        let entries = &d[1024..1024 + 128 * 128];
        assert_eq!(crc32fast::hash(entries), le32(h, 88));
        assert_eq!(le64(entries, 2 * 128 + 40), 30719);
        // The backup header at the last sector points at the backup entries.
        let bh = &d[32767 * 512..32768 * 512];
        assert_eq!(&bh[..8], b"EFI PART");
        assert_eq!(
            (le64(bh, 24), le64(bh, 32), le64(bh, 72)),
            (32767, 1, 32735)
        );
        assert_eq!(&d[32735 * 512..32735 * 512 + 128 * 128], entries);
        // Growing again is a no-op.
        assert_eq!(grow_partition(&mut c, 32768 * 512, 3, 2048).unwrap(), None);
    }

    #[test]
    fn only_the_last_partition_grows_and_bad_tables_are_named() {
        let image = disk_with_gpt(16384, &[(2048, 4095), (4096, 6143)]);
        let mut disk = vec![0u8; 32768 * 512];
        disk[..image.len()].copy_from_slice(&image);
        let mut c = Cursor::new(disk.clone());
        assert_eq!(grow_partition(&mut c, 32768 * 512, 1, 2048).unwrap(), None);
        assert!(
            grow_partition(&mut c, 32768 * 512, 5, 2048)
                .unwrap_err()
                .to_string()
                .contains("unused")
        );
        disk[1024 + 40] ^= 1;
        let mut c = Cursor::new(disk);
        assert!(
            grow_partition(&mut c, 32768 * 512, 2, 2048)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        let mut c = Cursor::new(vec![0u8; 8192]);
        assert!(
            grow_partition(&mut c, 8192, 1, 2048)
                .unwrap_err()
                .to_string()
                .contains("no GPT")
        );
    }
}
