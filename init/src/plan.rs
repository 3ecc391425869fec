//! What init will do on this boot, decided before doing any of it: the mounts, the module
//! files in load order, and the services in start order. PID 1 executes a plan;
//! `streamer-init --dry-run` prints one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, Mgmt};
use crate::modules::{DepError, ModuleDb};
use crate::services::{GraphError, ServiceSpec, appliance_services, dhcp_service, start_order};

/// The modules init asks for; whatever is built in or absent from this kernel is skipped.
pub const WANTED_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_rng",
    "virtio_scsi",
    "nvme",
    "ahci",
    "sd_mod",
    "e1000e",
    "igb",
    "ixgbe",
    "crc32c_generic",
    "ext4",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "nls_ascii",
    "button",
    "evdev",
    "i6300esb",
    "loop",
    "nbd",
];

/// One filesystem to mount early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: libc::c_ulong,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// The early mounts, in order: /proc, /sys and /dev first, since reading the command line
/// and finding devices depend on them.
pub fn early_mounts() -> Vec<Mount> {
    vec![
        Mount {
            source: "proc",
            target: "/proc",
            fstype: "proc",
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        },
        Mount {
            source: "sysfs",
            target: "/sys",
            fstype: "sysfs",
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        },
        Mount {
            source: "devtmpfs",
            target: "/dev",
            fstype: "devtmpfs",
            flags: libc::MS_NOSUID,
            data: Some("mode=0755"),
        },
        Mount {
            source: "devpts",
            target: "/dev/pts",
            fstype: "devpts",
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            data: Some("gid=5,mode=0620,ptmxmode=0666"),
        },
        Mount {
            source: "tmpfs",
            target: "/run",
            fstype: "tmpfs",
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some("mode=0755"),
        },
        Mount {
            source: "tmpfs",
            target: "/tmp",
            fstype: "tmpfs",
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some("mode=1777"),
        },
        Mount {
            source: "cgroup2",
            target: "/sys/fs/cgroup",
            fstype: "cgroup2",
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        },
    ]
}

/// The module part of a plan: files in load order, and what was skipped and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulePlan {
    pub files: Vec<PathBuf>,
    /// For each file, the indices in `files` of those it needs loaded first (all lower).
    pub deps: Vec<Vec<usize>>,
    pub skipped: Vec<String>,
}

/// Resolves `wanted` against a module tree. Modules this kernel does not have are skipped
/// (a note each), since hardware drivers differ between kernels; a cycle is an error.
pub fn module_plan(db: &ModuleDb, wanted: &[&str]) -> Result<ModulePlan, DepError> {
    let mut plan = ModulePlan::default();
    for w in wanted {
        match db.load_order(&[*w]) {
            Ok(files) => {
                for f in files {
                    if !plan.files.contains(&f) {
                        plan.files.push(f);
                    }
                }
            }
            Err(DepError::Unknown(name)) => plan.skipped.push(name),
            Err(e) => return Err(e),
        }
    }
    plan.deps = plan
        .files
        .iter()
        .map(|f| {
            db.deps_of(f)
                .iter()
                .filter_map(|d| plan.files.iter().position(|p| p == d))
                .collect()
        })
        .collect();
    Ok(plan)
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mounts: Vec<Mount>,
    pub config: Config,
    pub modules: ModulePlan,
    pub services: Vec<ServiceSpec>,
}

impl Plan {
    /// `mgmt_if` is the management interface found at boot; with DHCP configured a
    /// `dhcp` service runs on it.
    pub fn new(
        config: Config,
        modules: ModulePlan,
        bin_dir: &Path,
        mgmt_if: Option<&str>,
    ) -> Result<Plan, GraphError> {
        let deploy_ip = match &config.deploy {
            Some(Mgmt::Static { address, .. }) => Some(*address),
            _ => None,
        };
        let mut services = appliance_services(bin_dir, deploy_ip);
        if let (Mgmt::Dhcp, Some(interface)) = (&config.mgmt, mgmt_if) {
            services.insert(0, dhcp_service(interface, crate::net::UDHCPC_SCRIPT));
        }
        Ok(Plan {
            mounts: early_mounts(),
            config,
            modules,
            services: start_order(&services)?,
        })
    }
}

/// The line the console shows once the API answers.
/// `address` is the management address once known (the static one, or the DHCP lease).
pub fn ready_line(config: &Config, address: Option<&str>) -> String {
    let address = match (&config.mgmt, address) {
        (_, Some(a)) => a.to_owned(),
        (Mgmt::Static { address, .. }, None) => address.to_string(),
        (Mgmt::Dhcp, None) => "no-address".to_owned(),
    };
    format!("streamer: {} {address} ready", config.hostname)
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mounts:")?;
        for m in &self.mounts {
            write!(f, "  {} on {} type {}", m.source, m.target, m.fstype)?;
            if let Some(d) = m.data {
                write!(f, " ({d})")?;
            }
            writeln!(f)?;
        }
        let c = &self.config;
        writeln!(f, "config:")?;
        writeln!(f, "  hostname {}", c.hostname)?;
        writeln!(f, "  mgmt {}", c.mgmt)?;
        if let Some(i) = &c.mgmt_if {
            writeln!(f, "  mgmt_if {i}")?;
        }
        if let Some(d) = &c.deploy {
            writeln!(f, "  deploy {d}")?;
        }
        if let Some(i) = &c.deploy_if {
            writeln!(f, "  deploy_if {i}")?;
        }
        writeln!(f, "  data {}", c.data)?;
        writeln!(f, "  console {}", c.console)?;
        writeln!(f, "  debug {}", c.debug)?;
        writeln!(f, "modules:")?;
        for m in &self.modules.files {
            writeln!(f, "  load {}", m.display())?;
        }
        for s in &self.modules.skipped {
            writeln!(f, "  skip {s} (not in this kernel's modules.dep)")?;
        }
        writeln!(f, "services:")?;
        for s in &self.services {
            write!(f, "  start {}: {}", s.name, s.command_line())?;
            if !s.after.is_empty() {
                write!(f, " (after {})", s.after.join(", "))?;
            }
            writeln!(f)?;
        }
        writeln!(f, "then: {}", ready_line(c, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;

    #[test]
    fn proc_sys_dev_are_mounted_first() {
        let targets: Vec<&str> = early_mounts().iter().map(|m| m.target).collect();
        assert_eq!(
            targets,
            [
                "/proc",
                "/sys",
                "/dev",
                "/dev/pts",
                "/run",
                "/tmp",
                "/sys/fs/cgroup"
            ]
        );
    }

    #[test]
    fn absent_modules_are_skipped_and_shared_deps_loaded_once() {
        let db = ModuleDb::parse(
            Path::new("/m"),
            "virtio_blk.ko.xz: virtio_ring.ko.xz\nvirtio_net.ko.xz: virtio_ring.ko.xz\nvirtio_ring.ko.xz:\n",
        )
        .unwrap();
        let plan = module_plan(&db, &["virtio_blk", "nbd", "virtio_net"]).unwrap();
        let files: Vec<String> = plan.files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            files,
            [
                "/m/virtio_ring.ko.xz",
                "/m/virtio_blk.ko.xz",
                "/m/virtio_net.ko.xz"
            ]
        );
        assert_eq!(plan.skipped, ["nbd"]);
        // Both drivers wait for virtio_ring, not for each other: they may load together.
        assert_eq!(plan.deps, [vec![], vec![0], vec![0]]);
    }

    #[test]
    fn ready_line_names_host_and_address() {
        let c = load(
            "streamer.hostname=sis1 streamer.mgmt=static:10.0.0.2/24",
            Default::default(),
        )
        .unwrap();
        assert_eq!(ready_line(&c, None), "streamer: sis1 10.0.0.2 ready");
        assert_eq!(
            ready_line(&Config::default(), None),
            "streamer: streamer no-address ready"
        );
        assert_eq!(
            ready_line(&Config::default(), Some("10.0.2.15")),
            "streamer: streamer 10.0.2.15 ready"
        );
    }
}
