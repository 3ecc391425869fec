//! What init will do on this boot, decided before doing any of it: the mounts, the module
//! files in load order, and the services in start order. PID 1 executes a plan;
//! `streamer-init --dry-run` prints one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, Mgmt};
use crate::modules::alias::{Aliases, with_virtio_children};
use crate::modules::{DepError, ModuleDb, module_name};
use crate::services::{GraphError, ServiceSpec, appliance_services, dhcp_service, start_order};

/// Drivers of the virtio disks the config and data partitions are on in a VM. Hardware
/// drivers are loaded only for devices that are present (see [`present_hardware`]).
pub const BOOT_DISK_DRIVERS: &[&str] = &["virtio_pci", "virtio_blk"];
/// Drivers of the other disk controllers the appliance's disk may be on (a server's NVMe or
/// SATA). Loaded before the services when the partitions are not on a disk of the boot set,
/// else after `ready`: a VM's SATA controller with no disk on it would cost 0.35 s of module
/// loading under TCG, on the way to nothing.
pub const OTHER_DISK_DRIVERS: &[&str] = &["virtio_scsi", "nvme", "ahci", "sd_mod"];
/// Drivers of the network interfaces.
pub const NIC_DRIVERS: &[&str] = &["virtio_pci", "virtio_net", "e1000e", "igb", "ixgbe"];
/// The config partition's filesystem (FAT) and the character sets it may be mounted with.
pub const CONFIG_FS: &[&str] = &[
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "nls_ascii",
];
/// The data partition's filesystem.
pub const DATA_FS: &[&str] = &["crc32c_generic", "ext4"];
/// The hardware random number generator, which seeds the kernel's.
pub const RNG_DRIVERS: &[&str] = &["virtio_rng"];
/// The ACPI power button as an input device: watched before the services start, so that a
/// press once `ready` shows is never lost.
pub const POWER_BUTTON: &[&str] = &["button", "evdev"];
/// Loaded once the appliance is ready: nothing before needs them (the watchdog, the block
/// devices plan scripts and deploys attach).
pub const LATER_MODULES: &[&str] = &["i6300esb", "loop", "nbd"];

/// Drivers without device patterns of their own that serve the devices of others: SCSI disks
/// appear only once a SCSI host driver has found them.
const COMPANIONS: &[(&str, &[&str])] = &[("sd_mod", &["ahci", "virtio_scsi"])];

/// What boot loads before the services start, in this order: virtio disks, network, the
/// random generator, the filesystems, the power button.
pub fn boot_modules() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for m in [
        BOOT_DISK_DRIVERS,
        NIC_DRIVERS,
        RNG_DRIVERS,
        CONFIG_FS,
        DATA_FS,
        POWER_BUTTON,
    ]
    .concat()
    {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Of `wanted`, those this machine needs: a PCI driver only when a present device (`devices`,
/// modalias strings) matches one of its patterns; a virtio driver only when a virtio device
/// of its kind is present or will be once `virtio_pci` is in; a companion (`sd_mod`)
/// only with a driver it serves; modules that claim no devices (filesystems, nbd) always.
/// The second list is what was left out for want of a device.
pub fn present_hardware<'a>(
    wanted: &[&'a str],
    aliases: &Aliases,
    devices: &[String],
) -> (Vec<&'a str>, Vec<String>) {
    let devices = with_virtio_children(devices);
    let is_driver = |m: &str| aliases.claims_bus(m, "pci") || aliases.claims_bus(m, "virtio");
    let present = |m: &str| !is_driver(m) || aliases.matches_any(m, &devices);
    let (mut keep, mut absent) = (Vec::new(), Vec::new());
    for &m in wanted {
        let needed = match COMPANIONS.iter().find(|(c, _)| *c == m) {
            Some((_, served)) => served.iter().any(|s| is_driver(s) && present(s)),
            None => present(m),
        };
        if needed {
            keep.push(m);
        } else {
            absent.push(m.to_owned());
        }
    }
    (keep, absent)
}

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
    /// Modules this kernel does not have.
    pub skipped: Vec<String>,
    /// Hardware drivers left out because no device of theirs is present.
    pub no_device: Vec<String>,
}

impl ModulePlan {
    /// The indices in `files` of the modules `names` and of everything they need first.
    pub fn needed_for(&self, names: &[&str]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack: Vec<usize> = (0..self.files.len())
            .filter(|&i| {
                let name = module_name(&self.files[i].to_string_lossy());
                names.iter().any(|n| module_name(n) == name)
            })
            .collect();
        while let Some(i) = stack.pop() {
            if !out.contains(&i) {
                out.push(i);
                stack.extend(&self.deps[i]);
            }
        }
        out.sort_unstable();
        out
    }
}

/// Resolves `wanted` against a module tree, leaving out the files an earlier stage loads
/// (`earlier`). Modules this kernel does not have are skipped (a note each), since hardware
/// drivers differ between kernels; a cycle is an error.
pub fn module_plan(
    db: &ModuleDb,
    wanted: &[&str],
    earlier: &[PathBuf],
) -> Result<ModulePlan, DepError> {
    let mut plan = ModulePlan::default();
    for w in wanted {
        match db.load_order(&[*w]) {
            Ok(files) => {
                for f in files {
                    if !plan.files.contains(&f) && !earlier.contains(&f) {
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

/// The modules of a boot, in three stages (each leaves out what an earlier one loads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modules {
    /// Before the services start.
    pub boot: ModulePlan,
    /// [`OTHER_DISK_DRIVERS`]: before the services when the partitions were not found after
    /// the boot stage, else after `ready`.
    pub disks: ModulePlan,
    /// [`LATER_MODULES`], after `ready`.
    pub later: ModulePlan,
}

/// This machine's modules: [`boot_modules`], [`OTHER_DISK_DRIVERS`], [`LATER_MODULES`];
/// hardware drivers only for the devices present when `hardware` (the tree's `modules.alias`
/// and the devices' modalias strings) is known; without it, every driver.
pub fn modules_for(
    db: &ModuleDb,
    hardware: Option<(&Aliases, &[String])>,
) -> Result<Modules, DepError> {
    let select = |wanted: &[&'static str]| match hardware {
        Some((aliases, devices)) => present_hardware(wanted, aliases, devices),
        None => (wanted.to_vec(), Vec::new()),
    };
    let stage = |wanted: &[&'static str], earlier: &[PathBuf]| {
        let (wanted, no_device) = select(wanted);
        let mut p = module_plan(db, &wanted, earlier)?;
        p.no_device = no_device;
        Ok::<_, DepError>(p)
    };
    let boot = stage(&boot_modules(), &[])?;
    let disks = stage(OTHER_DISK_DRIVERS, &boot.files)?;
    let later = stage(LATER_MODULES, &[&boot.files[..], &disks.files[..]].concat())?;
    Ok(Modules { boot, disks, later })
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mounts: Vec<Mount>,
    pub config: Config,
    pub modules: Modules,
    pub services: Vec<ServiceSpec>,
}

/// Whether this appliance is a pair member (clusterd's description is on the data partition,
/// mounted by now).
pub fn paired() -> bool {
    Path::new(appliance_layout::CLUSTERD_DATA)
        .join("cluster.json")
        .exists()
}

impl Plan {
    /// `mgmt_if` is the management interface found at boot; with DHCP configured a
    /// `dhcp` service runs on it.
    pub fn new(
        config: Config,
        modules: Modules,
        bin_dir: &Path,
        mgmt_if: Option<&str>,
    ) -> Result<Plan, GraphError> {
        let deploy_ip = match &config.deploy {
            Some(Mgmt::Static { address, .. }) => Some(*address),
            _ => None,
        };
        // The data partition is mounted by now: the pair's description is on it.
        let paired = paired();
        let mut services = appliance_services(bin_dir, deploy_ip, config.plan_run_minutes, paired);
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
        writeln!(f, "  aslr {}", c.aslr)?;
        if let Some(m) = c.plan_run_minutes {
            writeln!(f, "  plan_run_minutes {m}")?;
        }
        for (title, m) in [
            ("modules:", &self.modules.boot),
            (
                "disk controller drivers (before the services if the partitions are not found \
                 on the disks above, else once ready):",
                &self.modules.disks,
            ),
            ("modules once ready:", &self.modules.later),
        ] {
            writeln!(f, "{title}")?;
            for file in &m.files {
                writeln!(f, "  load {}", file.display())?;
            }
            for s in &m.skipped {
                writeln!(f, "  skip {s} (not in this kernel's modules.dep)")?;
            }
            for s in &m.no_device {
                writeln!(f, "  skip {s} (no device of it here)")?;
            }
        }
        writeln!(f, "services:")?;
        for s in &self.services {
            write!(f, "  start {}: {}", s.name, s.command_line())?;
            let waits: Vec<String> = (s.after.iter().map(|d| format!("{d} is ready")))
                .chain(s.after_started.iter().map(|d| format!("{d} has started")))
                .collect();
            if !waits.is_empty() {
                write!(f, " (once {})", waits.join(", "))?;
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
        let plan = module_plan(&db, &["virtio_blk", "nbd", "virtio_net"], &[]).unwrap();
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

    /// A module tree shaped like Debian 12's for the drivers init asks for.
    const DEP: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko
kernel/drivers/nvme/host/nvme-core.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/drivers/block/nbd.ko:
kernel/drivers/watchdog/i6300esb.ko:
";
    const ALIAS: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias virtio:d00000001v* virtio_net
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias scsi:t-0x00* sd_mod
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias pci:v00008086d000025ABsv*sd*bc*sc*i* i6300esb
alias fs-ext4 ext4
";
    fn names(p: &ModulePlan) -> Vec<String> {
        p.files
            .iter()
            .map(|f| module_name(&f.to_string_lossy()))
            .collect()
    }

    #[test]
    fn hardware_drivers_are_loaded_for_present_devices_only() {
        let db = ModuleDb::parse(Path::new("/m"), DEP).unwrap();
        let aliases = Aliases::parse(ALIAS);
        // A server with an AHCI controller and an Intel NIC, no virtio, no NVMe, no i6300esb.
        let server = vec![
            "pci:v00008086d00002922sv00008086sd00000000bc01sc06i01".to_owned(),
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00".to_owned(),
        ];
        let m = modules_for(&db, Some((&aliases, &server))).unwrap();
        let boot = names(&m.boot);
        for n in ["e1000e", "ext4", "vfat"] {
            assert!(boot.contains(&n.to_owned()), "{n} missing: {boot:?}");
        }
        assert_eq!(
            names(&m.disks),
            ["scsi_mod", "libata", "libahci", "ahci", "sd_mod"]
        );
        for n in ["virtio_pci", "virtio_blk", "virtio_net", "nvme"] {
            let all = [boot.clone(), names(&m.disks)].concat();
            assert!(!all.contains(&n.to_owned()), "{n} loaded: {all:?}");
            let absent = [&m.boot.no_device[..], &m.disks.no_device[..]].concat();
            assert!(absent.contains(&n.to_owned()), "{absent:?}");
        }
        // Not in this tree at all, whatever the devices: noted as absent from the kernel.
        assert!(m.boot.skipped.contains(&"igb".to_owned()));
        assert_eq!(names(&m.later), ["nbd"]);
        assert_eq!(m.later.no_device, ["i6300esb"]);
        assert!(m.later.skipped.contains(&"loop".to_owned()));

        // QEMU: virtio devices and the i6300esb watchdog; the q35 SATA controller too, whose
        // driver is in the disk stage.
        let vm = vec![
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00".to_owned(),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_owned(),
            "pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00".to_owned(),
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_owned(),
        ];
        let m = modules_for(&db, Some((&aliases, &vm))).unwrap();
        let boot = names(&m.boot);
        for n in ["virtio_pci", "virtio_blk", "virtio_net"] {
            assert!(boot.contains(&n.to_owned()), "{n} missing: {boot:?}");
        }
        assert!(!boot.contains(&"ahci".to_owned()) && !boot.contains(&"e1000e".to_owned()));
        assert!(names(&m.disks).contains(&"ahci".to_owned()));
        assert_eq!(names(&m.later), ["i6300esb", "nbd"]);

        // Without modules.alias, every driver the tree has.
        let all = modules_for(&db, None).unwrap();
        assert!(all.boot.no_device.is_empty());
        assert!(names(&all.disks).contains(&"nvme".to_owned()));
    }

    #[test]
    fn what_a_step_waits_for_includes_the_dependencies_and_nothing_else() {
        let db = ModuleDb::parse(Path::new("/m"), DEP).unwrap();
        let m = modules_for(&db, None).unwrap().boot;
        let needed: Vec<String> = m
            .needed_for(DATA_FS)
            .into_iter()
            .map(|i| module_name(&m.files[i].to_string_lossy()))
            .collect();
        assert_eq!(needed.len(), 2, "{needed:?}");
        assert!(needed.contains(&"jbd2".to_owned()) && needed.contains(&"ext4".to_owned()));
        let net = m.needed_for(NIC_DRIVERS);
        assert!(
            net.iter()
                .all(|&i| m.deps[i].iter().all(|d| net.contains(d)))
        );
        assert!(m.needed_for(&["not_here"]).is_empty());
        // A later stage does not load again what an earlier one loaded.
        let all = modules_for(&db, None).unwrap();
        for f in all.disks.files.iter().chain(&all.later.files) {
            assert!(!m.files.contains(f), "{f:?} twice");
        }
        assert!(all.later.files.iter().all(|f| !all.disks.files.contains(f)));
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
