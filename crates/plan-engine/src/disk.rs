//! The interpreter's [`Disk`] over an attached OS volume: kernel mounts for what this kernel
//! can mount, user-space FAT for UEFI system partitions where it cannot (developer machines).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::exec::Disk;
use super::guest::GuestFs;
use super::guest::dir::DirFs;
use super::guest::fat::{FatFs, Partition};
use volume_attach::{AttachedDisk, FsType};

/// Filesystems the running kernel can mount (`/proc/filesystems`).
pub fn kernel_filesystems() -> HashSet<String> {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// An attached OS volume as plan scripts see it.
#[derive(Debug)]
pub struct AttachedGuest<'a> {
    disk: &'a mut AttachedDisk,
    kernel: HashSet<String>,
    kernel_mounts: Vec<PathBuf>,
}

impl<'a> AttachedGuest<'a> {
    pub fn new(disk: &'a mut AttachedDisk) -> Self {
        Self {
            disk,
            kernel: kernel_filesystems(),
            kernel_mounts: Vec::new(),
        }
    }

    /// The kernel driver for `fs`, if this kernel has it.
    fn driver(&self, fs: FsType) -> Option<&'static str> {
        let name = match fs {
            FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat(_) => "vfat",
            FsType::Ntfs => "ntfs3",
            FsType::Iso9660 => "iso9660",
            _ => return None,
        };
        self.kernel.contains(name).then_some(name)
    }
}

fn fs_name(fs: FsType) -> String {
    match fs {
        FsType::LvmPv => "LVM2_member".into(),
        other => other.to_string(),
    }
}

impl Disk for AttachedGuest<'_> {
    fn devices(&self) -> Vec<String> {
        self.disk.devices()
    }

    fn partitions(&self) -> Vec<String> {
        self.disk.partitions()
    }

    fn filesystems(&mut self) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .disk
            .filesystems()
            .into_iter()
            .map(|(d, f)| (d, fs_name(f)))
            .collect())
    }

    fn vgs(&mut self) -> Result<Vec<String>, String> {
        Ok(self.disk.vgs())
    }

    fn lvs(&mut self) -> Result<Vec<String>, String> {
        Ok(self.disk.lvs())
    }

    fn vgrename(&mut self, old: &str, new: &str) -> Result<(), String> {
        self.disk.vgrename(old, new).map_err(|e| e.to_string())
    }

    fn mount(
        &mut self,
        device: &str,
        host_dir: &Path,
        read_only: bool,
    ) -> Result<Box<dyn GuestFs>, String> {
        let target = self.disk.resolve(device).map_err(|e| e.to_string())?;
        if let Some(driver) = self.driver(target.fs) {
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(
                Some(&target.node),
                host_dir,
                Some(driver),
                flags,
                None::<&str>,
            )
            .map_err(|e| format!("mount {device} ({}): {e}", target.fs))?;
            self.kernel_mounts.push(host_dir.to_path_buf());
            return DirFs::open(host_dir)
                .map(|d| Box::new(d) as Box<dyn GuestFs>)
                .map_err(|e| e.to_string());
        }
        match target.fs {
            FsType::Vfat(_) => {
                let file = File::options()
                    .read(true)
                    .write(!read_only)
                    .open(self.disk.disk_path())
                    .map_err(|e| format!("{device}: {e}"))?;
                let fs = FatFs::open(Partition::new(file, target.offset, target.len))
                    .map_err(|e| format!("{device}: {e}"))?;
                Ok(Box::new(fs))
            }
            FsType::Unknown | FsType::Swap | FsType::LvmPv => Err(format!(
                "{device}: no mountable filesystem ({})",
                fs_name(target.fs)
            )),
            other => Err(format!(
                "{device}: this appliance's kernel cannot mount {other}"
            )),
        }
    }

    fn unmount(&mut self, host_dir: &Path) -> Result<(), String> {
        let Some(i) = self.kernel_mounts.iter().position(|d| d == host_dir) else {
            return Ok(());
        };
        self.kernel_mounts.remove(i);
        // Write everything the run changed to the volume now. An unmount alone does not when
        // the filesystem outlives it (another mount namespace made at that moment, a sandbox
        // starting for another run, still refers to it): its dirty data would reach the
        // volume only later, after the volume is detached — never.
        let synced = nix::fcntl::open(
            host_dir,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .and_then(|fd| nix::unistd::syncfs(&fd))
        .map_err(|e| format!("writing {} to the volume: {e}", host_dir.display()));
        let mut unmounted = umount2(host_dir, MntFlags::empty());
        for _ in 0..25 {
            if unmounted != Err(nix::errno::Errno::EBUSY) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(40));
            unmounted = umount2(host_dir, MntFlags::empty());
        }
        let unmounted = match unmounted {
            Ok(()) => Ok(()),
            // Something still holds it: detach it lazily so the volume can be detached; its
            // data was written above.
            Err(nix::errno::Errno::EBUSY) => umount2(host_dir, MntFlags::MNT_DETACH)
                .map_err(|e| format!("{}: {e}", host_dir.display())),
            Err(e) => Err(format!("unmount {}: {e}", host_dir.display())),
        };
        synced.and(unmounted)
    }
}

impl Drop for AttachedGuest<'_> {
    /// Nothing stays mounted, whatever happened.
    fn drop(&mut self) {
        while let Some(d) = self.kernel_mounts.pop() {
            if umount2(&d, MntFlags::empty()).is_err() {
                let _ = umount2(&d, MntFlags::MNT_DETACH);
            }
        }
    }
}
