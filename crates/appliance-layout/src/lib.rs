//! The appliance's fixed names, each written once: the disk's partitions (the image builder
//! writes them, init finds them), where they are mounted, where each daemon keeps its state
//! and its socket, the ports, and the few rules two programs must agree on.
//!
//! Changing a value here is a format change: an appliance flashed with the old image has its
//! partitions and its data under the old names.

/// One GPT partition of the appliance disk, in disk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSpec {
    /// GPT partition name (what init looks for under /sys/class/block).
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

/// The EFI system partition: both system slots (UKIs).
pub const ESP_PARTITION: &str = "streamer-esp";
/// The configuration partition (FAT, mounted read-only at [`CONFIG_DIR`]).
pub const CONFIG_PARTITION: &str = "streamer-config";
/// The data partition (ext4 made on first boot, grown to fill the disk, at [`DATA_DIR`]).
pub const DATA_PARTITION: &str = "streamer-data";

/// The partitions, in order. The ESP holds both system slots, so it is sized for two UKIs
/// plus room for a larger kernel later; the data partition is small in the image and grown
/// by init to fill the disk on first boot.
pub const PARTITIONS: [PartitionSpec; 3] = [
    PartitionSpec {
        name: ESP_PARTITION,
        type_guid: ESP_TYPE,
        size_mib: 256,
        filesystem: "vfat",
        fs_label: "STREAMERESP",
    },
    PartitionSpec {
        name: CONFIG_PARTITION,
        type_guid: LINUX_DATA_TYPE,
        size_mib: 16,
        filesystem: "vfat",
        fs_label: "STRMCONFIG",
    },
    PartitionSpec {
        name: DATA_PARTITION,
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

/// Where the config partition is mounted.
pub const CONFIG_DIR: &str = "/config";
/// Where the data partition is mounted.
pub const DATA_DIR: &str = "/data";
/// Written by the console on the config partition: the next boot recreates the data
/// filesystem.
pub const FACTORY_RESET_MARKER: &str = "/config/factory-reset";

/// storaged's volumes and catalog.
pub const STORAGED_DATA: &str = "/data/storaged";
/// deployd's state (metadata store, audit log, TLS certificate, activity logs).
pub const DEPLOYD_STATE: &str = "/data/deployd";
/// clusterd's state.
pub const CLUSTERD_DATA: &str = "/data/clusterd";
/// etcd (Debian's, gzip-compressed) on the ESP: a pair member's init unpacks it to
/// [`ETCD_BINARY`]; a single appliance never reads it, so its boot does not pay for it.
pub const ESP_ETCD_PATH: &str = "EFI/streamer/etcd.gz";
/// Where a pair member's etcd runs from (on the data partition, unpacked once per image).
pub const ETCD_BINARY: &str = "/data/clusterd/bin/etcd";

/// Where the daemons keep their sockets and init its run-time files.
pub const RUN_DIR: &str = "/run/streamer";
/// storaged's control socket; its existence means storaged is ready.
pub const STORAGED_SOCKET: &str = "/run/streamer/storaged.sock";
/// clusterd's control socket.
pub const CLUSTERD_SOCKET: &str = "/run/streamer/clusterd.sock";
/// clusterd's summary for the serial console: this node's role, then one line per active
/// alert of the pair.
pub const CLUSTER_SUMMARY: &str = "/run/streamer/cluster.txt";
/// The console writes a new Administrator password here and restarts deployd, which applies
/// and deletes it.
pub const ADMIN_PASSWORD_RESET: &str = "/run/streamer/admin-password-reset";
/// In deployd's state directory while the first-start Administrator password is unchanged
/// (0600): the serial console shows it; a password change or reset deletes it.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// The NBD port (IANA), where compute modules and plan runs reach volumes.
pub const NBD_PORT: u16 = 10809;
/// The iSCSI port (IANA), where servers' firmware and initiators reach volumes.
pub const ISCSI_PORT: u16 = 3260;
/// The REST API's port on the appliance.
pub const API_PORT: u16 = 443;
/// The REST API's address on a workstation (`make dev`) and in tests.
pub const DEV_API_ADDRESS: &str = "127.0.0.1:8443";
/// storaged's NBD address on a workstation, and deployd's way to it on the appliance.
pub const LOCAL_NBD_ADDRESS: &str = "127.0.0.1:10809";

/// Shortest password deployd accepts; the console checks the same before a reset.
pub const MIN_PASSWORD_LEN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_fat_and_names_are_unique() {
        for (i, p) in PARTITIONS.iter().enumerate() {
            assert!(p.fs_label.len() <= 11, "{}", p.name);
            assert!(p.name.len() <= 36, "{}", p.name);
            assert!(PARTITIONS[..i].iter().all(|q| q.name != p.name));
        }
        assert_eq!(PARTITIONS[0].type_guid, ESP_TYPE);
        assert!(LOCAL_NBD_ADDRESS.ends_with(&format!(":{NBD_PORT}")));
        for path in [STORAGED_SOCKET, CLUSTERD_SOCKET, ADMIN_PASSWORD_RESET] {
            assert!(path.starts_with(RUN_DIR), "{path}");
        }
        for path in [STORAGED_DATA, DEPLOYD_STATE, CLUSTERD_DATA] {
            assert!(path.starts_with(DATA_DIR), "{path}");
        }
    }
}
