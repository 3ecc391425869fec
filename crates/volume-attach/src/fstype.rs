//! Filesystem detection by superblock magic, the way blkid does it for the types plan
//! scripts meet: ext2/3/4, xfs, btrfs, FAT, NTFS, swap, LVM2 physical volumes and ISO 9660.

use std::fmt;

/// What a partition or logical volume holds; `Display` gives guestfish's `vfs-type` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    /// FAT12, FAT16 or FAT32 (the number).
    Vfat(u8),
    Ntfs,
    Swap,
    LvmPv,
    Iso9660,
    Unknown,
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat(_) => "vfat",
            FsType::Ntfs => "ntfs",
            FsType::Swap => "swap",
            FsType::LvmPv => "LVM2_member",
            FsType::Iso9660 => "iso9660",
            FsType::Unknown => "unknown",
        })
    }
}

/// Bytes [`detect`] wants from the start of the device (the btrfs superblock ends here).
pub const PROBE_LEN: usize = 0x10000 + 0x1000;

fn at(b: &[u8], off: usize, magic: &[u8]) -> bool {
    b.get(off..off + magic.len()) == Some(magic)
}

fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Detects the filesystem from the first bytes of a device (up to [`PROBE_LEN`]; a shorter
/// slice just rules out the types whose magic lies further in).
pub fn detect(b: &[u8]) -> FsType {
    if (0..4).any(|s| at(b, s * 512, b"LABELONE") && at(b, s * 512 + 24, b"LVM2 001")) {
        return FsType::LvmPv;
    }
    if at(b, 0, b"XFSB") {
        return FsType::Xfs;
    }
    if at(b, 3, b"NTFS    ") {
        return FsType::Ntfs;
    }
    if at(b, 0x10040, b"_BHRfS_M") {
        return FsType::Btrfs;
    }
    if le16(b, 1024 + 0x38) == 0xEF53 {
        return ext_kind(b);
    }
    if at(b, 0x8001, b"CD001") {
        return FsType::Iso9660;
    }
    for page in [4096usize, 8192, 16384, 65536] {
        if at(b, page - 10, b"SWAPSPACE2") || at(b, page - 10, b"SWAP-SPACE") {
            return FsType::Swap;
        }
    }
    fat_kind(b).map_or(FsType::Unknown, FsType::Vfat)
}

fn ext_kind(b: &[u8]) -> FsType {
    let sb = 1024;
    let compat = le32(b, sb + 0x5C);
    let incompat = le32(b, sb + 0x60);
    let ro_compat = le32(b, sb + 0x64);
    // Features ext3 does not know: extents, 64bit, flex_bg, mmp, ...; huge_file, gdt_csum,
    // dir_nlink, extra_isize, metadata_csum.
    const EXT4_INCOMPAT: u32 = 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x8000 | 0x10000;
    const EXT4_RO_COMPAT: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x400;
    if incompat & EXT4_INCOMPAT != 0 || ro_compat & EXT4_RO_COMPAT != 0 {
        FsType::Ext4
    } else if compat & 0x4 != 0 {
        FsType::Ext3
    } else {
        FsType::Ext2
    }
}

/// FAT12/16/32 from the boot sector, with the BPB checks blkid uses so an MBR or garbage
/// ending in 55 AA is not taken for a filesystem.
fn fat_kind(b: &[u8]) -> Option<u8> {
    if b.len() < 512 || b[510] != 0x55 || b[511] != 0xAA {
        return None;
    }
    let bytes_per_sector = le16(b, 11);
    let sectors_per_cluster = b[13];
    let reserved = le16(b, 14);
    let fats = b[16];
    let media = b[21];
    let sane = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved > 0
        && matches!(fats, 1 | 2)
        && (media == 0xF0 || media >= 0xF8);
    if !sane {
        return None;
    }
    if at(b, 82, b"FAT32   ") {
        return Some(32);
    }
    if at(b, 54, b"FAT16   ") {
        return Some(16);
    }
    if at(b, 54, b"FAT12   ") {
        return Some(12);
    }
    // No label: count clusters as the FAT specification says.
    let root_entries = u32::from(le16(b, 17));
    let total16 = u32::from(le16(b, 19));
    let fat16 = u32::from(le16(b, 22));
    let total = if total16 != 0 { total16 } else { le32(b, 32) };
    let fat_size = if fat16 != 0 { fat16 } else { le32(b, 36) };
    let bps = u32::from(bytes_per_sector);
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let data =
        total.checked_sub(u32::from(reserved) + u32::from(fats) * fat_size + root_sectors)?;
    let clusters = data / u32::from(sectors_per_cluster);
    Some(if clusters < 4085 {
        12
    } else if clusters < 65525 {
        16
    } else {
        32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Vec<u8> {
        vec![0; PROBE_LEN]
    }

    #[test]
    fn magics() {
        let mut b = blank();
        b[0..4].copy_from_slice(b"XFSB");
        assert_eq!(detect(&b), FsType::Xfs);

        let mut b = blank();
        b[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert_eq!(detect(&b), FsType::Btrfs);

        let mut b = blank();
        b[512..520].copy_from_slice(b"LABELONE");
        b[536..544].copy_from_slice(b"LVM2 001");
        assert_eq!(detect(&b), FsType::LvmPv);

        let mut b = blank();
        b[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(detect(&b), FsType::Swap);

        let mut b = blank();
        b[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(detect(&b), FsType::Iso9660);

        let mut b = blank();
        b[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(detect(&b), FsType::Ntfs);

        assert_eq!(detect(&blank()), FsType::Unknown);
        assert_eq!(detect(&[]), FsType::Unknown);
    }

    #[test]
    fn ext_generations() {
        let mut b = blank();
        b[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        assert_eq!(detect(&b), FsType::Ext2);
        b[1024 + 0x5C] = 0x4; // has_journal
        assert_eq!(detect(&b), FsType::Ext3);
        b[1024 + 0x60] = 0x40; // extents
        assert_eq!(detect(&b), FsType::Ext4);
    }

    #[test]
    fn fat_needs_a_sane_boot_sector() {
        let mut b = blank();
        b[510] = 0x55;
        b[511] = 0xAA;
        assert_eq!(detect(&b), FsType::Unknown, "an MBR is not FAT");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 4;
        b[14..16].copy_from_slice(&4u16.to_le_bytes());
        b[16] = 2;
        b[21] = 0xF8;
        b[82..90].copy_from_slice(b"FAT32   ");
        assert_eq!(detect(&b), FsType::Vfat(32));
        b[82..90].copy_from_slice(&[0; 8]);
        b[17..19].copy_from_slice(&512u16.to_le_bytes());
        b[19..21].copy_from_slice(&32768u16.to_le_bytes()); // 16 MiB
        b[22..24].copy_from_slice(&32u16.to_le_bytes());
        assert_eq!(detect(&b), FsType::Vfat(16));
    }
}
