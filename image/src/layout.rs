//! The appliance layout as the image builder uses it: the partitions and names every program
//! shares ([`appliance_layout`]), and what the image carries (host programs, kernel modules).
//! Changing a partition row is an on-disk format change: init finds partitions by these names.

pub use appliance_layout::{
    ALIGN_MIB, CONFIG_FILE, ESP_ETCD_PATH, ESP_TYPE, LINUX_DATA_TYPE, PARTITIONS, PartitionSpec,
    SLOT_A_PATH, SLOT_B_PATH,
};

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
}
