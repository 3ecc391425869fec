//! Attaching an OS volume as local block devices, and detaching it again, always.
//!
//! Plan scripts edit the guest's real filesystems through the kernel (design §3), so the
//! volume must become block devices the kernel can mount: one loop device for the whole disk,
//! one per partition and one per linear LVM logical volume, each a window on a single disk
//! file. That file is a local raw image ([`AttachedDisk::attach_file`]) or an NBD export of
//! storaged served to the kernel through FUSE by our own NBD client
//! ([`AttachedDisk::attach_nbd`]). Partition tables and LVM metadata are read by our own code
//! because the host kernel scans neither (no partition scanning on loops, no device-mapper).
//!
//! It must never leave anything attached: whatever fails midway, and on drop, detach or
//! panic, every mount below the work directory, every loop device, the FUSE mount and the NBD
//! session are undone in reverse order; [`cleanup_leftovers`] does the same after a crash.

mod cleanup;
pub mod fstype;
mod fuse_file;
mod kernel_nbd;
mod loopdev;
pub mod lvm;
mod names;
pub mod nbd_client;
pub mod partition;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub use cleanup::{CleanupReport, cleanup_leftovers, mounts_under};
pub use fstype::FsType;
pub use partition::TableKind;

use fuse_file::{FuseDisk, SharedClient};
use kernel_nbd::KernelNbd;
use loopdev::LoopDevice;
use lvm::{LvmError, Pv, PvScan};
use names::DeviceName;
use nbd_client::{NbdClient, NbdError};
use partition::PartitionError;

/// The name scripts use for the one disk.
pub const DISK_NAME: &str = "/dev/sda";
/// Directory below the work directory where the FUSE disk file is mounted.
const FUSE_DIR: &str = "nbd-disk";
/// File in the work directory naming the `/dev/nbdN` in use, for [`cleanup_leftovers`].
const KERNEL_NBD_MARKER: &str = "kernel-nbd";

/// Why attaching, resolving a device name, renaming a volume group or detaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Nbd(#[from] NbdError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error(transparent)]
    Lvm(#[from] LvmError),
    #[error(
        "{0}: not a device name (expected /dev/sda, /dev/sdaN, /dev/VG/LV or /dev/mapper/VG-LV)"
    )]
    NotADevice(String),
    #[error("{name}: no such device: the OS volume is {DISK_NAME}")]
    NoSuchDevice { name: String },
    #[error("{name}: no such partition: the OS volume has {have}")]
    NoSuchPartition { name: String, have: String },
    #[error("{name}: no such logical volume: the OS volume has {have}")]
    NoSuchLv { name: String, have: String },
    #[error("volume group {name} not found: the OS volume has {have}")]
    NoSuchVg { name: String, have: String },
    #[error("volume group {0} already exists")]
    VgExists(String),
    #[error("{name}: {why}")]
    NotAttachable { name: String, why: String },
    #[error("the disk needs more than the {0} loop devices allowed")]
    TooManyLoops(usize),
    #[error("detaching left problems: {}", .0.join("; "))]
    Detach(Vec<String>),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AttachError {
    let what = what.into();
    move |source| AttachError::Io { what, source }
}

/// A block device to mount, and where its bytes lie in [`AttachedDisk::disk_path`] for
/// userspace access (FAT on hosts without vfat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTarget {
    /// The loop device (or, on the appliance, the kernel NBD partition) to mount.
    pub node: PathBuf,
    pub offset: u64,
    pub len: u64,
    pub fs: FsType,
}

/// Which NBD client makes the export a local disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NbdClientKind {
    /// The kernel's where `/dev/nbd0` exists and the `nbd` module is loaded, else ours
    /// through FUSE.
    #[default]
    Auto,
    /// Ours, serving the export as a FUSE file.
    Fuse,
    /// The kernel's; fails where it is missing.
    Kernel,
}

/// Knobs for an attach.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Refuse disks that need more loop devices than this (whole disk + partitions + LVs).
    pub max_loops: Option<usize>,
    pub nbd_client: NbdClientKind,
}

#[derive(Debug)]
struct Part {
    number: u32,
    start: u64,
    len: u64,
    fs: FsType,
    extended: bool,
    dev: Option<LoopDevice>,
}

#[derive(Debug)]
struct Lv {
    vg: String,
    name: String,
    /// Where it lies on the disk, or why it cannot be attached.
    range: Result<(u64, u64), String>,
    fs: FsType,
    dev: Option<LoopDevice>,
}

#[derive(Debug)]
struct Vg {
    name: String,
    /// Each PV of the group found on this disk: its offset and what was read there.
    pvs: Vec<(u64, PvScan)>,
}

#[derive(Debug)]
enum Backend {
    File,
    Nbd {
        fuse: Option<FuseDisk>,
        client: SharedClient,
    },
    KernelNbd(Option<KernelNbd>),
}

/// An OS volume attached as local block devices. Dropping it detaches everything; call
/// [`AttachedDisk::detach`] to hear about problems.
#[derive(Debug)]
pub struct AttachedDisk {
    work_dir: PathBuf,
    disk_path: PathBuf,
    size: u64,
    table: TableKind,
    whole_fs: FsType,
    backend: Backend,
    disk: Option<File>,
    whole: Option<LoopDevice>,
    parts: Vec<Part>,
    vgs: Vec<Vg>,
    lvs: Vec<Lv>,
    max_loops: Option<usize>,
    torn_down: bool,
}

impl AttachedDisk {
    /// Attaches a local raw image file (tests, benchmarks).
    pub fn attach_file(path: &Path, work_dir: &Path) -> Result<AttachedDisk, AttachError> {
        Self::attach_file_with(path, work_dir, &AttachOptions::default())
    }

    pub fn attach_file_with(
        path: &Path,
        work_dir: &Path,
        opts: &AttachOptions,
    ) -> Result<AttachedDisk, AttachError> {
        let work_dir = prepare_work_dir(work_dir)?;
        let path = path
            .canonicalize()
            .map_err(io_err(format!("opening disk image {}", path.display())))?;
        let mut d = AttachedDisk::empty(work_dir, path, Backend::File, opts);
        d.populate()?;
        Ok(d)
    }

    /// Attaches NBD export `export` at `addr`: our NBD client serves it to the kernel as one
    /// file through FUSE, mounted below `work_dir`.
    pub fn attach_nbd(
        addr: SocketAddr,
        export: &str,
        work_dir: &Path,
    ) -> Result<AttachedDisk, AttachError> {
        Self::attach_nbd_with(addr, export, work_dir, &AttachOptions::default())
    }

    pub fn attach_nbd_with(
        addr: SocketAddr,
        export: &str,
        work_dir: &Path,
        opts: &AttachOptions,
    ) -> Result<AttachedDisk, AttachError> {
        let work_dir = prepare_work_dir(work_dir)?;
        let kernel = match opts.nbd_client {
            NbdClientKind::Auto => kernel_nbd::available(),
            NbdClientKind::Fuse => false,
            NbdClientKind::Kernel => true,
        };
        if kernel {
            match Self::attach_kernel_nbd(addr, export, &work_dir, opts) {
                Ok(d) => return Ok(d),
                Err(e) if opts.nbd_client == NbdClientKind::Auto => {
                    tracing::warn!("kernel NBD client failed ({e}); using FUSE instead");
                }
                Err(e) => return Err(e),
            }
        }
        let client = NbdClient::connect(addr, export)?;
        let client: SharedClient = Arc::new(Mutex::new(Some(client)));
        let mountpoint = work_dir.join(FUSE_DIR);
        let backend = Backend::Nbd {
            fuse: None,
            client: Arc::clone(&client),
        };
        // From here on, dropping `d` undoes whatever was done.
        let mut d = AttachedDisk::empty(
            work_dir,
            mountpoint.join(fuse_file::FILE_NAME),
            backend,
            opts,
        );
        std::fs::create_dir(&mountpoint)
            .map_err(io_err(format!("creating {}", mountpoint.display())))?;
        let fuse = FuseDisk::mount(client, &mountpoint).map_err(io_err(format!(
            "mounting the FUSE disk file at {}",
            mountpoint.display()
        )))?;
        if let Backend::Nbd { fuse: f, .. } = &mut d.backend {
            *f = Some(fuse);
        }
        d.populate()?;
        Ok(d)
    }

    fn attach_kernel_nbd(
        addr: SocketAddr,
        export: &str,
        work_dir: &Path,
        opts: &AttachOptions,
    ) -> Result<AttachedDisk, AttachError> {
        let (stream, size, flags) = NbdClient::connect(addr, export)?.into_socket();
        let nbd = KernelNbd::start(stream, size, flags)
            .map_err(io_err("starting the kernel NBD client"))?;
        let path = nbd.path().to_path_buf();
        let mut d = AttachedDisk::empty(
            work_dir.to_path_buf(),
            path.clone(),
            Backend::KernelNbd(Some(nbd)),
            opts,
        );
        let marker = work_dir.join(KERNEL_NBD_MARKER);
        std::fs::write(&marker, path.as_os_str().as_encoded_bytes())
            .map_err(io_err(format!("writing {}", marker.display())))?;
        d.populate()?;
        Ok(d)
    }

    fn empty(
        work_dir: PathBuf,
        disk_path: PathBuf,
        backend: Backend,
        opts: &AttachOptions,
    ) -> Self {
        AttachedDisk {
            work_dir,
            disk_path,
            size: 0,
            table: TableKind::None,
            whole_fs: FsType::Unknown,
            backend,
            disk: None,
            whole: None,
            parts: Vec::new(),
            vgs: Vec::new(),
            lvs: Vec::new(),
            max_loops: opts.max_loops,
            torn_down: false,
        }
    }

    /// Reads the partition table and LVM metadata, detects filesystems, then makes the loop
    /// devices. Reading comes first so a damaged disk fails before anything is attached.
    fn populate(&mut self) -> Result<(), AttachError> {
        let disk = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.disk_path)
            .map_err(io_err(format!("opening {}", self.disk_path.display())))?;
        // Seeking to the end gives the size of block devices too (their metadata says 0).
        self.size = (&disk).seek(SeekFrom::End(0)).map_err(io_err(format!(
            "reading the size of {}",
            self.disk_path.display()
        )))?;
        let (table, parts) = partition::read_table(&disk, self.size)?;
        self.table = table;
        self.whole_fs = if table == TableKind::None {
            probe(&disk, 0, self.size)?
        } else {
            FsType::Unknown
        };
        for p in parts {
            let fs = if p.extended {
                FsType::Unknown
            } else {
                probe(&disk, p.start, p.len)?
            };
            self.parts.push(Part {
                number: p.number,
                start: p.start,
                len: p.len,
                fs,
                extended: p.extended,
                dev: None,
            });
        }
        let mut pv_places: Vec<u64> = self
            .parts
            .iter()
            .filter(|p| p.fs == FsType::LvmPv)
            .map(|p| p.start)
            .collect();
        if self.whole_fs == FsType::LvmPv {
            pv_places.push(0);
        }
        for base in pv_places {
            if let Some(scan) = lvm::scan(Pv { dev: &disk, base })? {
                let Some(name) = scan.vg.as_ref().map(|v| v.name.clone()) else {
                    continue;
                };
                match self.vgs.iter_mut().find(|v| v.name == name) {
                    Some(v) => v.pvs.push((base, scan)),
                    None => self.vgs.push(Vg {
                        name,
                        pvs: vec![(base, scan)],
                    }),
                }
            }
        }
        self.lvs = lvs_of(&self.vgs);
        for lv in &mut self.lvs {
            if let Ok((off, len)) = lv.range {
                lv.fs = probe(&disk, off, len)?;
            }
        }
        self.disk = Some(disk);
        self.make_loops()
    }

    fn new_loop(&self, used: &mut usize, offset: u64, len: u64) -> Result<LoopDevice, AttachError> {
        if self.max_loops.is_some_and(|m| *used >= m) {
            return Err(AttachError::TooManyLoops(*used));
        }
        let disk = self
            .disk
            .as_ref()
            .ok_or_else(|| io_err("attaching a loop device")(io::Error::other("disk closed")))?;
        let dev = LoopDevice::attach(disk, &self.disk_path, offset, len, false).map_err(io_err(
            format!(
                "attaching a loop device to bytes {offset}+{len} of {}",
                self.disk_path.display()
            ),
        ))?;
        *used += 1;
        Ok(dev)
    }

    fn make_loops(&mut self) -> Result<(), AttachError> {
        let mut used = 0;
        self.whole = Some(self.new_loop(&mut used, 0, self.size)?);
        for i in 0..self.parts.len() {
            if self.parts[i].extended {
                continue;
            }
            let (start, len) = (self.parts[i].start, self.parts[i].len);
            self.parts[i].dev = Some(self.new_loop(&mut used, start, len)?);
        }
        for i in 0..self.lvs.len() {
            if let Ok((off, len)) = self.lvs[i].range {
                self.lvs[i].dev = Some(self.new_loop(&mut used, off, len)?);
            }
        }
        Ok(())
    }

    /// The file all block devices are windows on: the FUSE disk file, the image file, or (on
    /// the appliance) the kernel NBD device.
    pub fn disk_path(&self) -> &Path {
        &self.disk_path
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Size of the disk in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn table(&self) -> TableKind {
        self.table
    }

    /// guestfish `list-devices`.
    pub fn devices(&self) -> Vec<String> {
        vec![DISK_NAME.to_string()]
    }

    /// guestfish `list-partitions`.
    pub fn partitions(&self) -> Vec<String> {
        self.parts
            .iter()
            .map(|p| format!("{DISK_NAME}{}", p.number))
            .collect()
    }

    /// guestfish `list-filesystems`: partitions (not PVs or extended ones) and logical
    /// volumes with what they hold; the whole disk when it has no partition table.
    pub fn filesystems(&self) -> Vec<(String, FsType)> {
        let mut out = Vec::new();
        if self.table == TableKind::None && self.whole_fs != FsType::LvmPv {
            out.push((DISK_NAME.to_string(), self.whole_fs));
        }
        for p in &self.parts {
            if !p.extended && p.fs != FsType::LvmPv {
                out.push((format!("{DISK_NAME}{}", p.number), p.fs));
            }
        }
        for lv in &self.lvs {
            out.push((format!("/dev/{}/{}", lv.vg, lv.name), lv.fs));
        }
        out
    }

    /// guestfish `vgs`.
    pub fn vgs(&self) -> Vec<String> {
        self.vgs.iter().map(|v| v.name.clone()).collect()
    }

    /// guestfish `lvs`: `/dev/VG/LV` for every visible logical volume.
    pub fn lvs(&self) -> Vec<String> {
        self.lvs
            .iter()
            .map(|lv| format!("/dev/{}/{}", lv.vg, lv.name))
            .collect()
    }

    /// The block device a script's device name stands for.
    pub fn resolve(&self, name: &str) -> Result<BlockTarget, AttachError> {
        let parsed = names::parse(name).ok_or_else(|| AttachError::NotADevice(name.into()))?;
        let loop_node = |dev: &Option<LoopDevice>| -> Result<PathBuf, AttachError> {
            dev.as_ref()
                .map(|d| d.path().to_path_buf())
                .ok_or_else(|| AttachError::NotAttachable {
                    name: name.into(),
                    why: "the volume is detached".into(),
                })
        };
        match parsed {
            DeviceName::Disk(l) | DeviceName::Partition(l, _) if l != "a" => {
                Err(AttachError::NoSuchDevice { name: name.into() })
            }
            DeviceName::Disk(_) => Ok(BlockTarget {
                node: loop_node(&self.whole)?,
                offset: 0,
                len: self.size,
                fs: self.whole_fs,
            }),
            DeviceName::Partition(_, n) => {
                let p = self.parts.iter().find(|p| p.number == n).ok_or_else(|| {
                    AttachError::NoSuchPartition {
                        name: name.into(),
                        have: list_or_none(self.partitions()),
                    }
                })?;
                if p.extended {
                    return Err(AttachError::NotAttachable {
                        name: name.into(),
                        why: "an extended partition holds logical partitions, not a filesystem"
                            .into(),
                    });
                }
                Ok(BlockTarget {
                    node: loop_node(&p.dev)?,
                    offset: p.start,
                    len: p.len,
                    fs: p.fs,
                })
            }
            DeviceName::Lv { vg, lv } => {
                let l = self
                    .lvs
                    .iter()
                    .find(|l| l.vg == vg && l.name == lv)
                    .ok_or_else(|| AttachError::NoSuchLv {
                        name: name.into(),
                        have: list_or_none(self.lvs()),
                    })?;
                let (offset, len) = l.range.clone().map_err(|why| AttachError::NotAttachable {
                    name: name.into(),
                    why,
                })?;
                Ok(BlockTarget {
                    node: loop_node(&l.dev)?,
                    offset,
                    len,
                    fs: l.fs,
                })
            }
        }
    }

    /// guestfish `vgrename OLD NEW`: rewrites the metadata on every PV of the group; the loop
    /// devices of its logical volumes stay as they are (only their names change).
    pub fn vgrename(&mut self, old: &str, new: &str) -> Result<(), AttachError> {
        lvm::validate_vg_name(new)?;
        if self.vgs.iter().any(|v| v.name == new) {
            return Err(AttachError::VgExists(new.into()));
        }
        let have = list_or_none(self.vgs());
        let disk = self
            .disk
            .as_ref()
            .ok_or_else(|| io_err("renaming a volume group")(io::Error::other("disk closed")))?;
        let vg =
            self.vgs
                .iter_mut()
                .find(|v| v.name == old)
                .ok_or_else(|| AttachError::NoSuchVg {
                    name: old.into(),
                    have,
                })?;
        for (base, scan) in &mut vg.pvs {
            let pv = Pv {
                dev: disk,
                base: *base,
            };
            lvm::rename(pv, scan, new)?;
            *scan = lvm::scan(pv)?
                .ok_or_else(|| LvmError::Metadata("the label vanished while renaming".into()))?;
        }
        vg.name = new.to_string();
        for lv in self.lvs.iter_mut().filter(|l| l.vg == old) {
            lv.vg = new.to_string();
        }
        Ok(())
    }

    /// Detaches everything, reporting what could not be undone cleanly.
    pub fn detach(mut self) -> Result<(), AttachError> {
        let problems = self.teardown();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AttachError::Detach(problems))
        }
    }

    fn loop_nodes(&self) -> Vec<PathBuf> {
        let parts = self.parts.iter().filter_map(|p| p.dev.as_ref());
        let lvs = self.lvs.iter().filter_map(|l| l.dev.as_ref());
        self.whole
            .iter()
            .chain(parts)
            .chain(lvs)
            .map(|d| d.path().to_path_buf())
            .collect()
    }

    /// Mounts, loop devices, FUSE, NBD: undone in reverse order of creation.
    fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        let fuse_dir = self.work_dir.join(FUSE_DIR);
        let ours = self.loop_nodes();
        match cleanup::mounts() {
            Ok(all) => {
                let mut targets: Vec<PathBuf> = all
                    .iter()
                    .filter(|m| {
                        (m.mountpoint.starts_with(&self.work_dir)
                            && m.mountpoint != fuse_dir
                            && m.mountpoint != self.work_dir)
                            || ours.iter().any(|l| Path::new(&m.source) == l)
                    })
                    .map(|m| m.mountpoint.clone())
                    .collect();
                targets.reverse();
                targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
                targets.dedup();
                for t in targets {
                    if let Err(e) = cleanup::unmount(&t) {
                        problems.push(format!("unmounting {}: {e}", t.display()));
                    }
                }
            }
            Err(e) => problems.push(format!("reading /proc/self/mountinfo: {e}")),
        }
        let lvs = self.lvs.iter_mut().rev().filter_map(|l| l.dev.take());
        let parts: Vec<_> = self
            .parts
            .iter_mut()
            .rev()
            .filter_map(|p| p.dev.take())
            .collect();
        let devs: Vec<LoopDevice> = lvs.chain(parts).chain(self.whole.take()).collect();
        for d in devs {
            let path = d.path().display().to_string();
            if let Err(e) = d.sync() {
                problems.push(format!("flushing {path}: {e}"));
            }
            if let Err(e) = d.detach() {
                problems.push(format!("detaching {path}: {e}"));
            }
        }
        if let Some(disk) = self.disk.take()
            && let Err(e) = disk.sync_all()
        {
            problems.push(format!("flushing {}: {e}", self.disk_path.display()));
        }
        if let Backend::KernelNbd(nbd) = &mut self.backend {
            if let Some(n) = nbd.take()
                && let Err(e) = n.stop()
            {
                problems.push(format!("disconnecting {}: {e}", self.disk_path.display()));
            }
            let marker = self.work_dir.join(KERNEL_NBD_MARKER);
            if let Err(e) = std::fs::remove_file(&marker)
                && e.kind() != io::ErrorKind::NotFound
            {
                problems.push(format!("removing {}: {e}", marker.display()));
            }
        }
        if let Backend::Nbd { fuse, client } = &mut self.backend {
            if let Some(f) = fuse.take()
                && let Err(e) = f.unmount()
            {
                problems.push(format!("unmounting the FUSE disk file: {e}"));
            }
            let c = client.lock().take();
            if let Some(c) = c
                && let Err(e) = c.disconnect()
            {
                problems.push(format!("disconnecting NBD: {e}"));
            }
            if let Err(e) = std::fs::remove_dir(&fuse_dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                problems.push(format!("removing {}: {e}", fuse_dir.display()));
            }
        }
        problems
    }
}

impl Drop for AttachedDisk {
    fn drop(&mut self) {
        for p in self.teardown() {
            tracing::warn!("detaching {}: {p}", self.disk_path.display());
        }
    }
}

/// True where [`NbdClientKind::Auto`] picks the kernel's NBD client (the appliance).
pub fn kernel_nbd_available() -> bool {
    kernel_nbd::available()
}

fn prepare_work_dir(work_dir: &Path) -> Result<PathBuf, AttachError> {
    std::fs::create_dir_all(work_dir)
        .and_then(|()| work_dir.canonicalize())
        .map_err(io_err(format!(
            "creating work directory {}",
            work_dir.display()
        )))
}

fn list_or_none(v: Vec<String>) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Attached disks move between threads (a plan script runs on the blocking pool).
const _: () = {
    const fn send<T: Send>() {}
    send::<AttachedDisk>();
};

/// Detects the filesystem in `len` bytes at `offset` of the disk.
fn probe(disk: &File, offset: u64, len: u64) -> Result<FsType, AttachError> {
    let n = (fstype::PROBE_LEN as u64).min(len) as usize;
    let mut b = vec![0; n];
    disk.read_exact_at(&mut b, offset).map_err(io_err(format!(
        "reading bytes {offset}+{n} to detect a filesystem"
    )))?;
    Ok(fstype::detect(&b))
}

/// Every visible logical volume of the groups on the disk, with where it lies or why it
/// cannot be attached.
fn lvs_of(vgs: &[Vg]) -> Vec<Lv> {
    let mut out = Vec::new();
    for vg in vgs {
        let Some(meta) = vg
            .pvs
            .iter()
            .filter_map(|(_, s)| s.vg.as_ref())
            .max_by_key(|g| g.seqno)
        else {
            continue;
        };
        for lv in meta.lvs.iter().filter(|l| l.visible) {
            let mut range = Err(String::from("it lies on no physical volume of this disk"));
            for (base, scan) in &vg.pvs {
                match meta.linear_range(&lv.name, &scan.label.uuid) {
                    Ok((off, len)) => {
                        range = Ok((base + off, len));
                        break;
                    }
                    Err(LvmError::Unsupported { why, .. }) if why.contains("not on this disk") => {}
                    Err(e) => {
                        range = Err(match e {
                            LvmError::Unsupported { why, .. } => why,
                            other => other.to_string(),
                        });
                        break;
                    }
                }
            }
            out.push(Lv {
                vg: vg.name.clone(),
                name: lv.name.clone(),
                range,
                fs: FsType::Unknown,
                dev: None,
            });
        }
    }
    out
}
