//! Compute modules: VMs (OVMF) whose only disk is their OS volume, served by the appliance
//! over NBD (QEMU's nbd block driver, reconnecting if the connection drops), started in the
//! module's own network namespace so the connection comes from its deployment address.
//! The Redfish double powers them on and off; the boot target (which export of which
//! server) is what the appliance's server profile says at power-on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::api::Api;
use crate::console::Console;
use crate::qemu::{Vm, VmSpec};

/// A user's shell prompt in the Debian guests (`user@host:~$ `).
pub const SHELL_PROMPT: &str = r"\$ $|\$ \x1b|:~\$ ";

/// Where a module boots from: the server profile's `bootTarget`.
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
    pub netns: String,
    dir: PathBuf,
    pub memory_mib: u32,
    /// Set once the module is registered with the appliance.
    pub hardware_uri: OnceLock<String>,
    vm: Mutex<Option<Vm>>,
    boots: Mutex<u32>,
    /// A NIC on the enclosure bridge: (enclosure namespace, tap name, MAC).
    nic: Option<(String, String, String)>,
    /// Rides through a storage failover: QEMU's NBD client waits 30 s for a server
    /// (`reconnect-delay`) with TCP keep-alive, and an I/O error would stop the VM
    /// (`werror=stop,rerror=stop`) instead of reaching the guest, so that it shows.
    ride_through: bool,
}

impl ComputeModule {
    pub fn new(name: &str, ip: &str, netns: &str, dir: &Path) -> ComputeModule {
        ComputeModule {
            name: name.to_owned(),
            ip: ip.to_owned(),
            netns: netns.to_owned(),
            dir: dir.to_owned(),
            memory_mib: 2048,
            hardware_uri: OnceLock::new(),
            vm: Mutex::new(None),
            boots: Mutex::new(0),
            nic: None,
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
        self.nic = Some((enclosure_ns.into(), tap.into(), mac.into()));
        self
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
        let mut boots = self.boots.lock().unwrap_or_else(|e| e.into_inner());
        *boots += 1;
        let mut spec = VmSpec::new(&format!("{}-boot{}", self.name, *boots), &self.dir);
        spec.memory_mib = self.memory_mib;
        spec.netns = Some(self.netns.clone());
        spec.uefi()?;
        let (reconnect, keep_alive, on_error) = if self.ride_through {
            (30, ",server.keep-alive=on", ",werror=stop,rerror=stop")
        } else {
            (5, "", "")
        };
        spec.arg("-blockdev").arg(format!(
            "driver=nbd,node-name=os,server.type=inet,server.host={},server.port={},\
             export={},reconnect-delay={reconnect}{keep_alive}",
            target.host, target.port, target.export
        ));
        spec.arg("-device")
            .arg(format!("virtio-blk-pci,drive=os,bootindex=1{on_error}"));
        if let Some((ns, tap, mac)) = &self.nic {
            let fd = spec.pass_fd(crate::enclosure::bridge_tap(ns, tap)?);
            spec.arg("-netdev")
                .arg(format!("tap,id=nic0,fd={fd}"))
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=nic0,mac={mac},romfile="));
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
            "On" | "ForceRestart" | "PowerCycle" => m
                .boot_target(&api)
                .and_then(|t| m.power_on(&t))
                .map_err(|e| format!("{e:#}")),
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
