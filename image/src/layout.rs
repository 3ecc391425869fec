//! The appliance disk layout: one table that the builder writes and that the Buildroot tree
//! (`buildroot/board/streamer`) is checked against. Changing a row is an on-disk format
//! change: init finds partitions by these names.

/// One GPT partition of the appliance disk, in disk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSpec {
    /// GPT partition name (what init looks for under /dev/disk/by-partlabel).
    pub name: &'static str,
    /// GPT partition type GUID.
    pub type_guid: &'static str,
    /// Default size in MiB.
    pub size_mib: u64,
    /// Filesystem the builder puts there ("vfat", or "none": init creates it on first boot).
    pub filesystem: &'static str,
    /// FAT volume label (at most 11 characters), empty when there is no filesystem.
    pub fs_label: &'static str,
}

/// EFI system partition type.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Generic Linux filesystem data type.
pub const LINUX_DATA_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// The partitions, in order. The ESP holds both system slots, so it is sized for two UKIs
/// plus room for a larger kernel later; the data partition is small in the image and grown
/// by init to fill the disk on first boot.
pub const PARTITIONS: [PartitionSpec; 3] = [
    PartitionSpec {
        name: "streamer-esp",
        type_guid: ESP_TYPE,
        size_mib: 256,
        filesystem: "vfat",
        fs_label: "STREAMERESP",
    },
    PartitionSpec {
        name: "streamer-config",
        type_guid: LINUX_DATA_TYPE,
        size_mib: 16,
        filesystem: "vfat",
        fs_label: "STRMCONFIG",
    },
    PartitionSpec {
        name: "streamer-data",
        type_guid: LINUX_DATA_TYPE,
        size_mib: 64,
        filesystem: "none",
        fs_label: "",
    },
];

/// Partitions start on 1 MiB boundaries.
pub const ALIGN_MIB: u64 = 1;
/// The UKI of system slot A: the removable-media path firmware boots without NVRAM entries.
pub const SLOT_A_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// The UKI of system slot B.
pub const SLOT_B_PATH: &str = "EFI/streamer/B.efi";
/// The appliance configuration file at the root of the config partition.
pub const CONFIG_FILE: &str = "streamer.conf";

/// Host programs the image carries with their shared libraries: init makes and grows the
/// data filesystem with them.
pub const HOST_PROGRAMS: &[&str] = &["/sbin/mke2fs", "/sbin/resize2fs", "/sbin/e2fsck"];

/// The kernel modules the appliance loads (init resolves their order from modules.dep).
/// Debian 12's kernel does not build ntfs3; a module the kernel lacks is reported, not fatal.
/// Real servers' disk controllers and NICs are here too: init loads a hardware driver only
/// when a device it claims is present (`modules.alias`), so they cost a VM nothing but bytes.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_rng",
    "virtio_scsi",
    "virtio_console",
    "nvme",
    "ahci",
    "sd_mod",
    "e1000e",
    "igb",
    "ixgbe",
    "nbd",
    "loop",
    "dm_mod",
    "fuse",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "nls_ascii",
    "button",
    "evdev",
    "i6300esb",
    "crc32c_generic",
    "ext4",
    "xfs",
    "efivarfs",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_init_asks_for_is_in_the_image() {
        let init = [
            streamer_init::plan::boot_modules(),
            streamer_init::plan::OTHER_DISK_DRIVERS.to_vec(),
            streamer_init::plan::LATER_MODULES.to_vec(),
        ];
        for m in init.concat() {
            assert!(
                DEFAULT_MODULES.contains(&m),
                "init loads {m}, the image lacks it"
            );
        }
    }

    #[test]
    fn labels_fit_fat_and_names_are_unique() {
        for (i, p) in PARTITIONS.iter().enumerate() {
            assert!(p.fs_label.len() <= 11, "{}", p.name);
            assert!(p.name.len() <= 36, "{}", p.name);
            assert!(PARTITIONS[..i].iter().all(|q| q.name != p.name));
        }
        assert_eq!(PARTITIONS[0].type_guid, ESP_TYPE);
    }
}
