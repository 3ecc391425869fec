//! Compute modules: VMs (OVMF) that boot their OS volume in one of two ways, as the
//! appliance set the module up:
//! - **through their NIC's firmware over iSCSI**, as a real server does: when the NIC's
//!   `BootMode` (written by the appliance through Redfish) is iSCSI, the VM has no disk at
//!   all; its virtio NIC's iPXE ROM gets its address and the boot target from the
//!   enclosure's [`BootDhcp`] (answering with those same settings), logs in with CHAP, and
//!   boots the volume; the OS finds its root through the firmware's iBFT.
//! - **over NBD** (QEMU's nbd block driver, reconnecting if the connection drops: a
//!   virtio disk to the firmware), the QEMU process started in the module's own network
//!   namespace so the connection comes from its deployment address; the boot target
//!   (which export of which server) is what the appliance's server profile says.
//!
//! The Redfish double powers them on and off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::api::Api;
use crate::console::Console;
use crate::firmware::{BootDhcp, IscsiBoot, NicFirmware};
use crate::qemu::{Vm, VmSpec};

/// A user's shell prompt in the Debian guests (`user@host:~$ `).
pub const SHELL_PROMPT: &str = r"\$ $|\$ \x1b|:~\$ ";

/// How a module boots its OS volume (its server hardware's `bootProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleBoot {
    /// QEMU's NBD driver: a virtio disk to the firmware.
    Nbd,
    /// Its NIC's firmware (iPXE) over iSCSI, with no disk.
    Iscsi,
}

/// Where a module boots from over NBD: the server profile's `bootTarget`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootTarget {
    pub host: String,
    pub port: u16,
    pub export: String,
}

impl BootTarget {
    pub fn from_profile(profile: &Value) -> Result<BootTarget> {
        let t = &profile["bootTarget"];
        if t["protocol"] != "nbd" {
            bail!("the profile has no NBD boot target: {t}");
        }
        Ok(BootTarget {
            host: t["address"]
                .as_str()
                .context("bootTarget.address")?
                .to_owned(),
            port: t["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .context("bootTarget.port")?,
            export: t["exportName"]
                .as_str()
                .context("bootTarget.exportName")?
                .to_owned(),
        })
    }
}

/// One compute module (a bay of the virtual enclosure).
#[derive(Debug)]
pub struct ComputeModule {
    pub name: String,
    /// Its deployment address (without prefix).
    pub ip: String,
    /// Where QEMU runs for an NBD boot (the namespace holding the deployment address);
    /// none for a module that boots only through its firmware.
    pub netns: Option<String>,
    dir: PathBuf,
    pub memory_mib: u32,
    /// Set once the module is registered with the appliance.
    pub hardware_uri: OnceLock<String>,
    vm: Mutex<Option<Vm>>,
    boots: Mutex<u32>,
    /// A NIC on the enclosure bridge.
    nic: Option<Nic>,
    /// The DHCP server that gives the NIC's boot ROM its iSCSI settings.
    boot_dhcp: Option<Arc<BootDhcp>>,
    /// Rides through a storage failover: QEMU's NBD client waits 30 s for a server
    /// (`reconnect-delay`) with TCP keep-alive, and an I/O error would stop the VM
    /// (`werror=stop,rerror=stop`) instead of reaching the guest, so that it shows.
    ride_through: bool,
}

/// A module's NIC: a tap on the bridge of the enclosure namespace, and its firmware.
#[derive(Debug)]
struct Nic {
    enclosure_ns: String,
    tap: String,
    firmware: Arc<NicFirmware>,
}

impl ComputeModule {
    /// A module at deployment address `ip`; `netns`: the namespace holding that address
    /// for its NBD connection (none: it boots only through its NIC's firmware).
    pub fn new(name: &str, ip: &str, netns: Option<&str>, dir: &Path) -> ComputeModule {
        ComputeModule {
            name: name.to_owned(),
            ip: ip.to_owned(),
            netns: netns.map(str::to_owned),
            dir: dir.to_owned(),
            memory_mib: 2048,
            hardware_uri: OnceLock::new(),
            vm: Mutex::new(None),
            boots: Mutex::new(0),
            nic: None,
            boot_dhcp: None,
            ride_through: false,
        }
    }

    /// See the field: for the failover scenario.
    pub fn riding_through(mut self) -> Self {
        self.ride_through = true;
        self
    }

    /// The running VM's QMP events so far (`BLOCK_IO_ERROR`, `STOP`, ...), and its status.
    pub fn qmp_events(&self) -> Result<(Vec<Value>, Value)> {
        let mut slot = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        let vm = slot
            .as_mut()
            .with_context(|| format!("{} is powered off", self.name))?;
        let events = vm.qmp().events()?;
        let status = vm.qmp().execute("query-status", serde_json::json!({}))?;
        Ok((events, status))
    }

    /// Gives the module's VM a NIC with `mac` on the enclosure bridge of `enclosure_ns`
    /// (through tap `tap`, made at each power-on).
    pub fn with_nic(mut self, enclosure_ns: &str, tap: &str, mac: &str) -> Self {
        self.nic = Some(Nic {
            enclosure_ns: enclosure_ns.into(),
            tap: tap.into(),
            firmware: Arc::new(NicFirmware::new(mac)),
        });
        self
    }

    /// Lets the NIC boot over iSCSI: `dhcp` hands its boot ROM the settings.
    pub fn with_boot_dhcp(mut self, dhcp: Arc<BootDhcp>) -> Self {
        self.boot_dhcp = Some(dhcp);
        self
    }

    /// The NIC's firmware settings (for the module's Redfish double).
    pub fn nic_firmware(&self) -> Option<Arc<NicFirmware>> {
        self.nic.as_ref().map(|n| Arc::clone(&n.firmware))
    }

    /// The iSCSI boot the NIC's firmware is set to, if it is.
    pub fn iscsi_boot(&self) -> Result<Option<IscsiBoot>> {
        match &self.nic {
            Some(n) => n.firmware.iscsi_boot(),
            None => Ok(None),
        }
    }

    /// Powers on as a server would: through the NIC's firmware when its boot mode is
    /// iSCSI, otherwise from the profile's NBD boot target.
    pub fn power_on_as_set_up(&self, api: &Api) -> Result<()> {
        match self.iscsi_boot()? {
            Some(boot) => self.power_on_iscsi(&boot),
            None => self.power_on(&self.boot_target(api)?),
        }
    }

    /// The boot target of the profile assigned to this module.
    pub fn boot_target(&self, api: &Api) -> Result<BootTarget> {
        let hw = self.hardware_uri.get().context("module not registered")?;
        let profiles = api.get_json("/rest/server-profiles?count=500")?;
        let profile = profiles["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["serverHardwareUri"] == hw.as_str())
            .with_context(|| format!("no server profile on {hw}"))?;
        BootTarget::from_profile(profile)
    }

    /// Starts the VM on `target` (a running VM is killed first: a cold power-on).
    pub fn power_on(&self, target: &BootTarget) -> Result<()> {
        let netns = self
            .netns
            .clone()
            .with_context(|| format!("{} has no namespace for an NBD connection", self.name))?;
        let (reconnect, keep_alive, on_error) = if self.ride_through {
            (30, ",server.keep-alive=on", ",werror=stop,rerror=stop")
        } else {
            (5, "", "")
        };
        self.start_vm(Some(netns), false, |spec| {
            spec.arg("-blockdev").arg(format!(
                "driver=nbd,node-name=os,server.type=inet,server.host={},server.port={},\
                 export={},reconnect-delay={reconnect}{keep_alive}",
                target.host, target.port, target.export
            ));
            spec.arg("-device")
                .arg(format!("virtio-blk-pci,drive=os,bootindex=1{on_error}"));
        })
    }

    /// Starts the VM with no disk, booting from its NIC over iSCSI with `boot`.
    pub fn power_on_iscsi(&self, boot: &IscsiBoot) -> Result<()> {
        let (Some(nic), Some(dhcp)) = (&self.nic, &self.boot_dhcp) else {
            bail!(
                "{} has no NIC on an enclosure network with a boot DHCP server",
                self.name
            );
        };
        dhcp.offer(&nic.firmware.mac, boot)?;
        self.start_vm(None, true, |_| {})
    }

    /// Starts the VM (killing a running one): OVMF, `disk` adding its disk, the NIC (the
    /// first boot device when `nic_boot`, with QEMU's iPXE ROM; otherwise without a ROM).
    fn start_vm(
        &self,
        netns: Option<String>,
        nic_boot: bool,
        disk: impl FnOnce(&mut VmSpec),
    ) -> Result<()> {
        let mut boots = self.boots.lock().unwrap_or_else(|e| e.into_inner());
        *boots += 1;
        let mut spec = VmSpec::new(&format!("{}-boot{}", self.name, *boots), &self.dir);
        spec.memory_mib = self.memory_mib;
        // One vCPU: several VMs share the host's two cores under TCG, and a two-vCPU guest
        // kernel has been seen to stall for good early in boot there (CI, capture scenario).
        spec.cpus = 1;
        spec.netns = netns;
        spec.uefi()?;
        disk(&mut spec);
        if let Some(nic) = &self.nic {
            let fd = spec.pass_fd(crate::enclosure::bridge_tap(&nic.enclosure_ns, &nic.tap)?);
            let rom = if nic_boot {
                ",bootindex=1"
            } else {
                ",romfile="
            };
            spec.arg("-netdev")
                .arg(format!("tap,id=nic0,fd={fd}"))
                .arg("-device")
                .arg(format!(
                    "virtio-net-pci,netdev=nic0,mac={}{rom}",
                    nic.firmware.mac
                ));
        }
        let vm = spec.start()?;
        let mut slot = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(vm);
        Ok(())
    }

    /// Pulls the power cord.
    pub fn power_off(&self) {
        if let Some(mut vm) = self.vm.lock().unwrap_or_else(|e| e.into_inner()).take() {
            vm.kill();
        }
    }

    /// Presses the power button and waits for the guest to power off.
    pub fn shut_down(&self, timeout: Duration) -> Result<()> {
        let mut slot = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(vm) = slot.as_mut() {
            vm.power_down(timeout)?;
        }
        *slot = None;
        Ok(())
    }

    /// Runs `f` on the running VM's console.
    pub fn console<R>(&self, f: impl FnOnce(&mut Console) -> R) -> Result<R> {
        let mut slot = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        let vm = slot
            .as_mut()
            .with_context(|| format!("{} is powered off", self.name))?;
        Ok(f(&mut vm.console))
    }

    /// Waits for `pattern` on the console of the running VM.
    pub fn expect(&self, pattern: &str, timeout: Duration) -> Result<Vec<String>> {
        self.console(|c| c.expect(pattern, timeout))?
    }

    /// Logs in on the serial console (at its login prompt) and waits for the shell prompt.
    pub fn login(&self, user: &str, password: &str) -> Result<()> {
        self.console(|c| -> Result<()> {
            c.send("\n")?;
            c.expect(r"login: ", Duration::from_secs(60))?;
            c.send(&format!("{user}\n"))?;
            c.expect(r"Password: ", Duration::from_secs(60))?;
            c.send(&format!("{password}\n"))?;
            c.expect(SHELL_PROMPT, Duration::from_secs(120))?;
            Ok(())
        })?
    }

    /// Runs `command` in the logged-in shell on the console; its output.
    pub fn shell(&self, command: &str, timeout: Duration) -> Result<String> {
        self.console(|c| c.shell(command, SHELL_PROMPT, timeout))?
    }

    /// A Redfish reset callback that powers this module.
    pub fn reset_handler(self: &Arc<Self>, api: Api) -> crate::redfish::OnReset {
        let m = Arc::clone(self);
        Arc::new(move |kind: &str| match kind {
            "On" | "ForceRestart" | "PowerCycle" => {
                m.power_on_as_set_up(&api).map_err(|e| format!("{e:#}"))
            }
            "GracefulShutdown" => m
                .shut_down(Duration::from_secs(120))
                .map_err(|e| format!("{e:#}")),
            "ForceOff" => {
                m.power_off();
                Ok(())
            }
            other => Err(format!("unsupported ResetType {other}")),
        })
    }
}
