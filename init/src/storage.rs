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

pub const CONFIG_PARTITION: &str = "streamer-config";
pub const CONFIG_DIR: &str = "/config";
pub const DATA_DIR: &str = "/data";
pub const FACTORY_RESET_MARKER: &str = "/config/factory-reset";
const SECTOR: u64 = 512;
/// Partitions end on 1 MiB boundaries, like the image builder lays them out.
const ALIGN_SECTORS: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
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

/// The data partition's GPT name in the appliance's own layout.
pub const DATA_PARTITION: &str = "streamer-data";

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

fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}

/// Where a grown partition now lies, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub start: u64,
    pub length: u64,
    pub old_length: u64,
}

/// Extends partition `number` of the GPT on `disk` (`disk_bytes` long) to the last usable,
/// 1 MiB aligned sector, when it is the last partition and the disk has room; moves the
/// backup header and entries to the end of the disk. Returns `None` when there is nothing
/// to do. The primary copy is written last, so an interruption leaves a valid primary.
pub fn grow_gpt_partition(
    disk: &mut (impl Read + Write + Seek),
    disk_bytes: u64,
    number: u32,
) -> Result<Option<Grown>, String> {
    let sectors = disk_bytes / SECTOR;
    let rd = |disk: &mut dyn ReadSeek, off: u64, len: usize| -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; len];
        disk.seek(SeekFrom::Start(off))
            .and_then(|_| disk.read_exact(&mut b))
            .map_err(|e| format!("reading the partition table: {e}"))?;
        Ok(b)
    };
    let mut hdr = rd(disk, SECTOR, SECTOR as usize)?;
    if &hdr[0..8] != b"EFI PART" {
        return Err("no GPT header at LBA 1".into());
    }
    let hsize = le32(&hdr, 12) as usize;
    if !(92..=512).contains(&hsize) {
        return Err(format!("GPT header size {hsize} is invalid"));
    }
    let mut check = hdr[..hsize].to_vec();
    check[16..20].fill(0);
    if crc32(&check) != le32(&hdr, 16) {
        return Err("GPT header checksum mismatch".into());
    }
    let entries_lba = le64(&hdr, 72);
    let count = le32(&hdr, 80) as usize;
    let esize = le32(&hdr, 84) as usize;
    if esize < 128 || count == 0 || count * esize > 1 << 20 {
        return Err("GPT entry array size is invalid".into());
    }
    let mut entries = rd(disk, entries_lba * SECTOR, count * esize)?;
    if crc32(&entries) != le32(&hdr, 88) {
        return Err("GPT entry array checksum mismatch".into());
    }
    let idx = number
        .checked_sub(1)
        .map(|n| n as usize)
        .filter(|&i| i < count);
    let Some(idx) = idx else {
        return Err(format!("no GPT entry {number}"));
    };
    let entry = |i: usize| &entries[i * esize..(i + 1) * esize];
    let (first, last) = (le64(entry(idx), 32), le64(entry(idx), 40));
    if entry(idx)[..16].iter().all(|&b| b == 0) {
        return Err(format!("GPT entry {number} is unused"));
    }
    let later = (0..count)
        .any(|i| i != idx && entry(i)[..16].iter().any(|&b| b != 0) && le64(entry(i), 32) > last);
    if later {
        // Not the last partition: growing it would overlap the next one.
        return Ok(None);
    }
    let entry_sectors = (count * esize) as u64 / SECTOR;
    let last_usable = sectors.saturating_sub(2 + entry_sectors);
    let new_last = (last_usable + 1) / ALIGN_SECTORS * ALIGN_SECTORS - 1;
    if new_last <= last {
        return Ok(None);
    }
    entries[idx * esize + 40..idx * esize + 48].copy_from_slice(&new_last.to_le_bytes());
    let entries_crc = crc32(&entries);
    let backup_entries = sectors - 1 - entry_sectors;
    let header = |hdr: &mut Vec<u8>, my: u64, alt: u64, elba: u64| {
        hdr[24..32].copy_from_slice(&my.to_le_bytes());
        hdr[32..40].copy_from_slice(&alt.to_le_bytes());
        hdr[48..56].copy_from_slice(&last_usable.to_le_bytes());
        hdr[72..80].copy_from_slice(&elba.to_le_bytes());
        hdr[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        hdr[16..20].fill(0);
        let c = crc32(&hdr[..hsize]);
        hdr[16..20].copy_from_slice(&c.to_le_bytes());
    };
    let mut backup = hdr.clone();
    header(&mut backup, sectors - 1, 1, backup_entries);
    header(&mut hdr, 1, sectors - 1, entries_lba);
    let wr = |disk: &mut dyn WriteSeek, off: u64, b: &[u8]| -> Result<(), String> {
        disk.seek(SeekFrom::Start(off))
            .and_then(|_| disk.write_all(b))
            .and_then(|()| disk.flush())
            .map_err(|e| format!("writing the partition table: {e}"))
    };
    wr(disk, backup_entries * SECTOR, &entries)?;
    wr(disk, (sectors - 1) * SECTOR, &backup)?;
    wr(disk, entries_lba * SECTOR, &entries)?;
    wr(disk, SECTOR, &hdr)?;
    // The protective MBR covers the whole disk (capped at 2 TiB).
    let mbr_size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    wr(disk, 446 + 12, &mbr_size.to_le_bytes())?;
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
        &["-q", "-F", "-t", "ext4", "-L", "streamer-data", "-m", "0"],
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
    let grown = grow_gpt_partition(&mut disk, disk_bytes, part.number).map_err(|reason| {
        StorageError::Gpt {
            reason,
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

    /// A minimal GPT with three partitions, written like the image builder does.
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
        h[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        let c = crc32(&h[..92]);
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
        let g = grow_gpt_partition(&mut c, 32768 * 512, 3).unwrap().unwrap();
        assert_eq!(g.start, 6144 * 512);
        // 32768 sectors - 34 = 32734 last usable; aligned down: 30720 - 1.
        assert_eq!(g.length, (30719 + 1 - 6144) * 512);
        assert_eq!(g.old_length, (12287 + 1 - 6144) * 512);
        let d = c.get_ref();
        let h = &d[512..1024];
        let mut chk = h[..92].to_vec();
        chk[16..20].fill(0);
        assert_eq!(crc32(&chk), le32(h, 16));
        assert_eq!(le64(h, 32), 32767);
        assert_eq!(le64(h, 48), 32734);
        let entries = &d[1024..1024 + 128 * 128];
        assert_eq!(crc32(entries), le32(h, 88));
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
        assert_eq!(grow_gpt_partition(&mut c, 32768 * 512, 3).unwrap(), None);
    }

    #[test]
    fn only_the_last_partition_grows_and_bad_tables_are_named() {
        let image = disk_with_gpt(16384, &[(2048, 4095), (4096, 6143)]);
        let mut disk = vec![0u8; 32768 * 512];
        disk[..image.len()].copy_from_slice(&image);
        let mut c = Cursor::new(disk.clone());
        assert_eq!(grow_gpt_partition(&mut c, 32768 * 512, 1).unwrap(), None);
        assert!(
            grow_gpt_partition(&mut c, 32768 * 512, 5)
                .unwrap_err()
                .contains("unused")
        );
        disk[1024 + 40] ^= 1;
        let mut c = Cursor::new(disk);
        assert!(
            grow_gpt_partition(&mut c, 32768 * 512, 2)
                .unwrap_err()
                .contains("checksum")
        );
        let mut c = Cursor::new(vec![0u8; 8192]);
        assert!(
            grow_gpt_partition(&mut c, 8192, 1)
                .unwrap_err()
                .contains("no GPT")
        );
    }
}
