//! The appliance's own partitions: the config partition (FAT, `/config`) and the data
//! partition (ext4, `/data`), both found by their GPT names.
//!
//! On first boot the data partition has no filesystem: init grows the partition to the end
//! of the disk (the image ships it small), then makes the filesystem. On later boots it
//! grows the partition and the filesystem again if the disk was enlarged. A factory reset
//! (the file `/config/factory-reset`, written by the console) recreates the filesystem.
//! Deciding (which device, whether to grow or format) is pure and tested on files; the
//! ioctls and the e2fsprogs commands sit in small functions.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use appliance_layout::{
    CONFIG_DIR, CONFIG_PARTITION, DATA_DIR, DATA_PARTITION, FACTORY_RESET_MARKER,
};
/// Partitions end on 1 MiB boundaries, like the image builder lays them out.
const ALIGN_SECTORS: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no partition named {0}")]
    Missing(&'static str),
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", disk.display())]
    Gpt { reason: String, disk: PathBuf },
    #[error("{program} failed on {}: {output}", dev.display())]
    Command {
        program: &'static str,
        dev: PathBuf,
        output: String,
    },
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_owned();
    move |source| StorageError::Io { path, what, source }
}

/// A partition as the kernel shows it in /sys/class/block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The partition's device node, e.g. /dev/vda3.
    pub dev: PathBuf,
    /// The whole disk's device node, e.g. /dev/vda.
    pub disk: PathBuf,
    /// The partition number (1-based, as in the GPT entry index + 1).
    pub number: u32,
}

fn uevent_value<'a>(uevent: &'a str, key: &str) -> Option<&'a str> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Finds the partition whose GPT name is `name` under `sys_class_block` (/sys/class/block).
pub fn find_partition(sys_class_block: &Path, name: &str) -> Option<Partition> {
    find_partition_by(sys_class_block, |uevent| {
        uevent_value(uevent, "PARTNAME") == Some(name)
    })
}

/// Finds the partition whose device node is `dev` (/dev/vda3).
pub fn partition_of_device(sys_class_block: &Path, dev: &Path) -> Option<Partition> {
    let name = dev.file_name()?.to_string_lossy().into_owned();
    find_partition_by(sys_class_block, |uevent| {
        uevent_value(uevent, "DEVNAME") == Some(name.as_str())
    })
}

fn find_partition_by(sys_class_block: &Path, wanted: impl Fn(&str) -> bool) -> Option<Partition> {
    let mut entries: Vec<_> = std::fs::read_dir(sys_class_block).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    entries.into_iter().find_map(|e| {
        let uevent = std::fs::read_to_string(e.path().join("uevent")).ok()?;
        if uevent_value(&uevent, "DEVTYPE") != Some("partition") || !wanted(&uevent) {
            return None;
        }
        let devname = uevent_value(&uevent, "DEVNAME")?;
        let number = uevent_value(&uevent, "PARTN")?.parse().ok()?;
        // /sys/class/block/vda3 → ../../devices/.../block/vda/vda3: the parent is the disk.
        let target = std::fs::read_link(e.path()).unwrap_or_else(|_| e.path());
        let disk = target.parent()?.file_name()?.to_string_lossy().into_owned();
        Some(Partition {
            dev: Path::new("/dev").join(devname),
            disk: Path::new("/dev").join(disk),
            number,
        })
    })
}

/// Whether the appliance's own disk (its config and data partitions) is visible already.
pub fn appliance_disk_found() -> bool {
    let class = Path::new("/sys/class/block");
    find_partition(class, CONFIG_PARTITION).is_some()
        && find_partition(class, DATA_PARTITION).is_some()
}

/// Waits up to `timeout` for the partition to appear (the disk driver probes in the
/// background after its module loads), and its device node with it: the kernel adds the
/// partition to /sys a moment before devtmpfs has its node in /dev.
pub fn wait_for_partition(name: &str, timeout: Duration) -> Option<Partition> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = find_partition(Path::new("/sys/class/block"), name)
            && p.dev.exists()
        {
            return Some(p);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // A scan of /sys/class/block is cheap; the partition appears when its disk's driver
        // has probed, which boot does not wait for separately.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the superblock of an ext2/3/4 filesystem says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Info {
    /// The filesystem's size in bytes.
    pub bytes: u64,
    /// Marked valid and without recorded errors (`s_state`). A journaled filesystem stays
    /// valid through a crash: the kernel replays its journal at mount, as `e2fsck -p` would.
    pub clean: bool,
}

/// The ext2/3/4 filesystem at the start of `dev`, or `None` when there is none (no
/// superblock magic).
pub fn ext4_info(dev: &mut (impl Read + Seek)) -> std::io::Result<Option<Ext4Info>> {
    let mut sb = [0u8; 1024];
    dev.seek(SeekFrom::Start(1024))?;
    dev.read_exact(&mut sb)?;
    if sb[56..58] != [0x53, 0xEF] {
        return Ok(None);
    }
    let u32_at = |o: usize| u64::from(u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]));
    let block = 1024u64 << u32_at(24);
    let incompat = u32_at(96);
    let mut blocks = u32_at(4);
    if incompat & 0x80 != 0 {
        // INCOMPAT_64BIT: the high half of the block count.
        blocks |= u32_at(0x150) << 32;
    }
    // s_state: 1 = valid (cleanly unmounted, or journaled), 2 = errors were found.
    let state = u16::from_le_bytes([sb[0x3A], sb[0x3B]]);
    Ok(Some(Ext4Info {
        bytes: blocks * block,
        clean: state & 1 != 0 && state & 2 == 0,
    }))
}

/// Zeroes the superblock region so the next boot sees no filesystem (factory reset).
pub fn erase_superblock(dev: &mut (impl Write + Seek)) -> std::io::Result<()> {
    dev.seek(SeekFrom::Start(1024))?;
    dev.write_all(&[0u8; 1024])?;
    dev.flush()
}

pub use gpt::Grown;

/// BLKGETSIZE64 = _IOR(0x12, 114, u64).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// BLKPG = _IO(0x12, 105).
const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// The size of a block device in bytes.
pub fn device_size(f: &File) -> std::io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}

/// Tells the kernel partition `number` of `disk` now spans `start..start+length` bytes
/// (works while other partitions of the disk are mounted, unlike BLKRRPART).
fn kernel_resize_partition(disk: &File, number: u32, g: Grown) -> std::io::Result<()> {
    let mut part = BlkpgPartition {
        start: g.start as libc::c_longlong,
        length: g.length as libc::c_longlong,
        pno: number as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&raw mut part).cast(),
    };
    // SAFETY: `arg` points at a complete blkpg_partition of the declared length; both live
    // across the call.
    let r = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, &mut arg) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn run(program: &'static str, args: &[&str], dev: &Path) -> Result<(), StorageError> {
    let out = Command::new(program)
        .args(args)
        .arg(dev)
        .output()
        .map_err(io(Path::new(program), "cannot run"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StorageError::Command {
            program,
            dev: dev.to_owned(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        })
    }
}

/// Makes the data filesystem.
pub fn make_filesystem(dev: &Path) -> Result<(), StorageError> {
    run(
        "/sbin/mke2fs",
        &["-q", "-F", "-t", "ext4", "-L", DATA_PARTITION, "-m", "0"],
        dev,
    )
}

/// What happened to the data partition on this boot, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    Created { dev: PathBuf, bytes: u64 },
    Mounted { dev: PathBuf, grown_to: Option<u64> },
}

/// Grows (if the disk has room), formats (first boot or factory reset) and mounts the data
/// partition at /data. `reset` = a factory reset was requested.
pub fn prepare_data(part: &Partition, reset: bool) -> Result<DataOutcome, StorageError> {
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&part.disk)
        .map_err(io(&part.disk, "cannot open the disk"))?;
    let disk_bytes = device_size(&disk).map_err(io(&part.disk, "cannot read the disk size"))?;
    let grown =
        gpt::grow_partition(&mut disk, disk_bytes, part.number, ALIGN_SECTORS).map_err(|e| {
            StorageError::Gpt {
                reason: e.to_string(),
                disk: part.disk.clone(),
            }
        })?;
    if let Some(g) = grown {
        disk.sync_all().map_err(io(&part.disk, "cannot sync"))?;
        kernel_resize_partition(&disk, part.number, g).map_err(io(
            &part.disk,
            "cannot tell the kernel the new partition size",
        ))?;
    }
    let mut dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&part.dev)
        .map_err(io(&part.dev, "cannot open the data partition"))?;
    if reset {
        erase_superblock(&mut dev).map_err(io(&part.dev, "cannot erase the filesystem"))?;
        dev.sync_all().map_err(io(&part.dev, "cannot sync"))?;
    }
    let existing = ext4_info(&mut dev).map_err(io(&part.dev, "cannot read the superblock"))?;
    let part_bytes = device_size(&dev).map_err(io(&part.dev, "cannot read its size"))?;
    drop(dev);
    let created = existing.is_none();
    if created {
        make_filesystem(&part.dev)?;
    } else if existing.is_some_and(|fs| !fs.clean) {
        // Not valid or with recorded errors: -p fixes what is safe to fix unattended.
        let _ = run("/sbin/e2fsck", &["-p"], &part.dev);
    }
    std::fs::create_dir_all(DATA_DIR).map_err(io(Path::new(DATA_DIR), "cannot create"))?;
    crate::sys::mount(
        &part.dev.to_string_lossy(),
        DATA_DIR,
        "ext4",
        libc::MS_NOATIME | libc::MS_NODEV | libc::MS_NOSUID,
        None,
    )
    .map_err(io(&part.dev, "cannot mount the data partition"))?;
    if created {
        return Ok(DataOutcome::Created {
            dev: part.dev.clone(),
            bytes: part_bytes,
        });
    }
    // The filesystem is smaller than its partition by more than a MiB: grow it online.
    let grown_to = match existing {
        Some(fs) if fs.bytes + (1 << 20) < part_bytes => {
            run("/sbin/resize2fs", &[], &part.dev)?;
            Some(part_bytes)
        }
        _ => None,
    };
    Ok(DataOutcome::Mounted {
        dev: part.dev.clone(),
        grown_to,
    })
}

/// How the config partition is mounted (besides read-only or not).
const CONFIG_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
const CONFIG_OPTIONS: &str = "umask=077,flush";

/// Mounts the config partition read-only at /config: a power cut then never catches FAT in
/// the middle of a write, nor leaves it marked dirty. Writers go through
/// [`with_config_writable`].
pub fn mount_config(part: &Partition) -> Result<(), StorageError> {
    std::fs::create_dir_all(CONFIG_DIR).map_err(io(Path::new(CONFIG_DIR), "cannot create"))?;
    crate::sys::mount(
        &part.dev.to_string_lossy(),
        CONFIG_DIR,
        "vfat",
        CONFIG_FLAGS | libc::MS_RDONLY,
        Some(CONFIG_OPTIONS),
    )
    .map_err(io(&part.dev, "cannot mount the config partition"))
}

/// Runs `write` with /config remounted read-write, then syncs and remounts it read-only
/// (also when `write` failed). The first error is returned.
pub fn with_config_writable<T>(write: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    let remount = |read_only: bool| {
        let ro = if read_only { libc::MS_RDONLY } else { 0 };
        crate::sys::mount(
            "",
            CONFIG_DIR,
            "",
            libc::MS_REMOUNT | CONFIG_FLAGS | ro,
            Some(CONFIG_OPTIONS),
        )
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot remount {CONFIG_DIR}: {e}")))
    };
    remount(false)?;
    let written = write();
    crate::sys::sync();
    let back = remount(true);
    let value = written?;
    back?;
    Ok(value)
}

/// Where init mounts the ESP (read-only) for a moment, to read etcd.
const ESP_MOUNT: &str = "/run/streamer/esp";

/// On a pair member: makes sure [`appliance_layout::ETCD_BINARY`] is the etcd of this image,
/// unpacking it from the ESP (gzip) when it is missing or another image's. A gzip file ends
/// with the CRC-32 and length of its content: those eight bytes identify it, so an
/// unchanged etcd is not unpacked again. Returns whether it was unpacked.
pub fn install_etcd() -> Result<bool, StorageError> {
    let Some(esp) = find_partition(
        Path::new("/sys/class/block"),
        appliance_layout::ESP_PARTITION,
    ) else {
        return Err(StorageError::Missing(appliance_layout::ESP_PARTITION));
    };
    std::fs::create_dir_all(ESP_MOUNT).map_err(io(Path::new(ESP_MOUNT), "cannot create"))?;
    crate::sys::mount(
        &esp.dev.to_string_lossy(),
        ESP_MOUNT,
        "vfat",
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(io(&esp.dev, "cannot mount the ESP"))?;
    let result = unpack_etcd(
        &Path::new(ESP_MOUNT).join(appliance_layout::ESP_ETCD_PATH),
        Path::new(appliance_layout::ETCD_BINARY),
    );
    let _ = crate::sys::umount(ESP_MOUNT);
    result
}

/// Unpacks the gzip file `blob` to `to` (0755, synced, renamed into place) unless `to.id`
/// says it already holds that content.
pub fn unpack_etcd(blob: &Path, to: &Path) -> Result<bool, StorageError> {
    let mut f = File::open(blob).map_err(io(blob, "cannot open"))?;
    let len = f.metadata().map_err(io(blob, "cannot read"))?.len();
    let mut id = [0u8; 8];
    f.seek(SeekFrom::Start(len.saturating_sub(8)))
        .and_then(|_| f.read_exact(&mut id))
        .map_err(io(blob, "cannot read"))?;
    let id = format!("{:016x}", u64::from_le_bytes(id));
    let id_file = to.with_extension("id");
    if to.exists() && std::fs::read_to_string(&id_file).is_ok_and(|s| s.trim() == id) {
        return Ok(false);
    }
    let dir = to.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io(dir, "cannot create"))?;
    f.seek(SeekFrom::Start(0))
        .map_err(io(blob, "cannot read"))?;
    let tmp = to.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)
            .map_err(io(&tmp, "cannot create"))?;
        std::io::copy(
            &mut flate2::read::GzDecoder::new(std::io::BufReader::new(f)),
            &mut out,
        )
        .map_err(io(blob, "cannot unpack"))?;
        out.sync_all().map_err(io(&tmp, "cannot sync"))?;
    }
    std::fs::rename(&tmp, to).map_err(io(to, "cannot rename into place"))?;
    std::fs::write(&id_file, format!("{id}\n")).map_err(io(&id_file, "cannot write"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn partitions_are_found_by_gpt_name() {
        let d = tempfile::tempdir().unwrap();
        let devices = d.path().join("devices/pci/virtio1/block/vda");
        for (name, n, label) in [("vda1", 1, "streamer-esp"), ("vda3", 3, "streamer-data")] {
            let p = devices.join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(
                p.join("uevent"),
                format!("MAJOR=254\nMINOR={n}\nDEVNAME={name}\nDEVTYPE=partition\nPARTN={n}\nPARTNAME={label}\n"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(&devices).unwrap();
        std::fs::write(devices.join("uevent"), "DEVNAME=vda\nDEVTYPE=disk\n").unwrap();
        let class = d.path().join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        for name in ["vda", "vda1", "vda3"] {
            let target = if name == "vda" {
                devices.clone()
            } else {
                devices.join(name)
            };
            std::os::unix::fs::symlink(target, class.join(name)).unwrap();
        }
        assert_eq!(
            find_partition(&class, "streamer-data"),
            Some(Partition {
                dev: "/dev/vda3".into(),
                disk: "/dev/vda".into(),
                number: 3
            })
        );
        assert_eq!(find_partition(&class, "streamer-config"), None);
        assert_eq!(
            partition_of_device(&class, Path::new("/dev/vda1")).map(|p| p.number),
            Some(1)
        );
    }

    #[test]
    fn ext4_superblocks_are_recognised_and_erased() {
        let mut disk = Cursor::new(vec![0u8; 4096]);
        assert_eq!(ext4_info(&mut disk).unwrap(), None);
        let b = disk.get_mut();
        b[1024 + 56] = 0x53;
        b[1024 + 57] = 0xEF;
        b[1024 + 4..1024 + 8].copy_from_slice(&1000u32.to_le_bytes());
        b[1024 + 24] = 2; // 4096-byte blocks
        b[1024 + 0x3A] = 1; // valid
        let info = |disk: &mut Cursor<Vec<u8>>| ext4_info(disk).unwrap();
        assert_eq!(
            info(&mut disk),
            Some(Ext4Info {
                bytes: 4096 * 1000,
                clean: true
            })
        );
        disk.get_mut()[1024 + 0x3A] = 3; // valid, but errors were recorded
        assert_eq!(info(&mut disk).map(|i| i.clean), Some(false));
        disk.get_mut()[1024 + 0x3A] = 0; // not cleanly unmounted, no journal
        assert_eq!(info(&mut disk).map(|i| i.clean), Some(false));
        erase_superblock(&mut disk).unwrap();
        assert_eq!(info(&mut disk), None);
    }

    #[test]
    fn etcd_is_unpacked_once_per_content() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("etcd.gz");
        let gz = |content: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, content).unwrap();
            e.finish().unwrap()
        };
        std::fs::write(&blob, gz(b"etcd one")).unwrap();
        let to = dir.path().join("bin/etcd");
        assert!(unpack_etcd(&blob, &to).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), b"etcd one");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(!unpack_etcd(&blob, &to).unwrap(), "the same content again");
        std::fs::write(&blob, gz(b"etcd two, another image")).unwrap();
        assert!(unpack_etcd(&blob, &to).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), b"etcd two, another image");
        let e = unpack_etcd(&dir.path().join("none.gz"), &to).unwrap_err();
        assert!(e.to_string().contains("none.gz"), "{e}");
    }
}
