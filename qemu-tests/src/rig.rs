//! A whole virtual enclosure for a scenario: the deployment network, the appliance VM with
//! one NIC on it (and its API forwarded to this host), and compute modules registered with
//! the appliance, each with a Redfish double and booting over NBD or through its NIC's
//! firmware over iSCSI (then the rig runs the enclosure's boot DHCP server). Dropping the
//! rig stops every VM and removes the namespaces.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::api::Api;
use crate::appliance::{Appliance, ApplianceSpec, Boot, ImageFiles, create_disk};
use crate::compute::{ComputeModule, ModuleBoot};
use crate::enclosure::Enclosure;
use crate::firmware::BootDhcp;
use crate::linux::OsNetwork;
use crate::redfish::RedfishDouble;

/// The deployment network: the harness is .1, the appliance .2, module `i` is .(11+i).
pub const NET: &str = "10.77.0";
pub const APPLIANCE_IP: &str = "10.77.0.2";

/// The address of module `i` (0-based).
pub fn module_ip(i: usize) -> String {
    format!("{NET}.{}", 11 + i)
}

/// The MAC of module `i`'s NIC on the enclosure network.
pub fn module_mac(i: usize) -> String {
    format!("52:54:00:77:00:{:02x}", 11 + i)
}

/// The address a deployed OS gives module `i` on the enclosure network (its NIC; the
/// module's deployment address belongs to its NBD connection).
pub fn guest_ip(i: usize) -> String {
    format!("{NET}.{}", 111 + i)
}

/// The initiator name module `i` is registered with when it boots over iSCSI.
pub fn initiator_name(i: usize) -> String {
    format!("iqn.2026-12.org.streamer.test:bay{}", i + 1)
}

/// Field order is drop order: Redfish doubles, then module VMs, then the appliance, then
/// the network they were on.
#[derive(Debug)]
pub struct Rig {
    doubles: Vec<RedfishDouble>,
    pub modules: Vec<Arc<ComputeModule>>,
    /// How each module boots.
    pub boots: Vec<ModuleBoot>,
    boot_dhcp: Option<Arc<BootDhcp>>,
    pub appliance: Appliance,
    pub api: Api,
    pub enclosure: Enclosure,
    pub work: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(dhcp) = &self.boot_dhcp {
            dhcp.stop();
        }
    }
}

impl Rig {
    /// Boots the appliance on a fresh disk with one compute module registered per entry of
    /// `modules`, booting as it says.
    pub fn start(work: &Path, modules: &[ModuleBoot]) -> Result<Rig> {
        Self::start_with(work, modules, |_| {})
    }

    /// [`Rig::start`], with `adjust` changing the appliance VM's spec before it boots.
    pub fn start_with(
        work: &Path,
        modules: &[ModuleBoot],
        adjust: impl FnOnce(&mut ApplianceSpec),
    ) -> Result<Rig> {
        let image = ImageFiles::locate()?;
        let enclosure = Enclosure::new()?;
        enclosure.host_address(&format!("{NET}.1/24"))?;
        let mut spec = ApplianceSpec::new("appliance", Boot::Direct, work)?;
        create_disk(&image, &spec.disk, "8G")?;
        spec.memory_mib = 3072;
        spec.deploy_tap = Some(enclosure.tap("tapapp")?);
        spec.append = format!("streamer.deploy=static:{APPLIANCE_IP}/24");
        adjust(&mut spec);
        let mut appliance = spec.start(&image)?;
        let ready = appliance.wait_ready(Duration::from_secs(300))?;
        let password = ready
            .password
            .context("the appliance did not show its first-start password")?;
        if ready.address == "no-address" {
            // The forwarded API port reaches the guest only at QEMU's DHCP address.
            appliance.wait_for_address(Duration::from_secs(90))?;
        }
        let api = Api::login(&appliance.api_url(), "Administrator", &password)
            .with_context(|| format!("console:\n{}", appliance.vm.console.tail(4000)))?;
        let boot_dhcp = if modules.contains(&ModuleBoot::Iscsi) {
            Some(Arc::new(BootDhcp::start(
                &enclosure.netns,
                &format!("{NET}.0"),
                work,
            )?))
        } else {
            None
        };
        let mut rig = Rig {
            doubles: Vec::new(),
            modules: Vec::new(),
            boots: modules.to_vec(),
            boot_dhcp,
            appliance,
            api,
            enclosure,
            work: work.to_owned(),
        };
        for (i, boot) in modules.iter().enumerate() {
            rig.add_module(i, *boot)?;
        }
        Ok(rig)
    }

    fn add_module(&mut self, i: usize, boot: ModuleBoot) -> Result<()> {
        let name = format!("bay{}", i + 1);
        let ip = module_ip(i);
        // An NBD module's QEMU connects from a namespace holding its deployment address; an
        // iSCSI module's own NIC takes that address (from the boot DHCP server).
        let (ns, protocol) = match boot {
            ModuleBoot::Nbd => (
                Some(
                    self.enclosure
                        .module_namespace(i as u32 + 1, &format!("{ip}/24"))?,
                ),
                "nbd",
            ),
            ModuleBoot::Iscsi => (None, "iscsi"),
        };
        let mut module = ComputeModule::new(&name, &ip, ns.as_deref(), &self.work).with_nic(
            &self.enclosure.netns,
            &format!("tapm{}", i + 1),
            &module_mac(i),
        );
        if let Some(dhcp) = &self.boot_dhcp {
            module = module.with_boot_dhcp(Arc::clone(dhcp));
        }
        let module = Arc::new(module);
        let double = RedfishDouble::start(
            module.reset_handler(self.api.clone()),
            module.nic_firmware(),
        )?;
        let r = self.api.post(
            "/rest/server-hardware",
            &json!({
                "name": name,
                "macAddresses": [module_mac(i)],
                "deploymentIpv4": ip,
                "bootProtocol": protocol,
                "iscsiInitiatorName": initiator_name(i),
                "redfish": {"address": double.address_from_guest(), "username": "admin",
                            "password": "redfish-pw"},
            }),
        )?;
        let status = r.status();
        let v: Value = r.json()?;
        if status != 201 {
            anyhow::bail!("registering {name}: {status} {v}");
        }
        let uri = v["uri"].as_str().context("server hardware uri")?.to_owned();
        let _ = module.hardware_uri.set(uri);
        self.doubles.push(double);
        self.modules.push(module);
        Ok(())
    }

    /// How module `i`'s deployed OS sets its network (the deploy plan's values).
    pub fn os_network(&self, i: usize) -> OsNetwork {
        match self.boots[i] {
            ModuleBoot::Nbd => OsNetwork::Static {
                ip: guest_ip(i),
                mac: module_mac(i),
            },
            ModuleBoot::Iscsi => OsNetwork::Firmware {
                initiator: initiator_name(i),
            },
        }
    }

    /// The address module `i`'s deployed OS answers at.
    pub fn os_address(&self, i: usize) -> String {
        match self.boots[i] {
            ModuleBoot::Nbd => guest_ip(i),
            ModuleBoot::Iscsi => module_ip(i),
        }
    }

    /// Creates a server profile deploying `plan_uri` with `attributes` on module `i` and
    /// powering it on; returns the completed task.
    pub fn deploy(
        &self,
        i: usize,
        profile: &str,
        plan_uri: &str,
        attributes: Value,
    ) -> Result<Value> {
        let hw = self.modules[i]
            .hardware_uri
            .get()
            .context("module not registered")?;
        deploy_profile(&self.api, hw, profile, plan_uri, attributes)
    }
}

/// Creates a server profile deploying `plan_uri` with `attributes` on the server hardware
/// `hw` and powering it on; returns the completed task.
pub fn deploy_profile(
    api: &Api,
    hw: &str,
    profile: &str,
    plan_uri: &str,
    attributes: Value,
) -> Result<Value> {
    api.wait_task(
        api.post(
            "/rest/server-profiles",
            &json!({
                "name": profile, "serverHardwareUri": hw, "powerOnAfterDeploy": true,
                "osDeploymentSettings": {"osDeploymentPlanUri": plan_uri,
                                         "osCustomAttributes": attributes},
            }),
        )?,
        Duration::from_secs(600),
    )
}
