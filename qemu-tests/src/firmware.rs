//! What stands in for a compute module's NIC firmware: the iSCSI boot settings the
//! appliance put into the module's network device function through Redfish
//! ([`NicFirmware`], shared with the module's Redfish double), and how the VM's firmware
//! receives them ([`BootDhcp`]). A real NIC keeps `iSCSIBoot` in its own flash; the VM's
//! NIC is QEMU's virtio-net with its iPXE boot ROM (Debian's `ipxe-qemu`), which takes its
//! iSCSI boot target from DHCP: a `root-path` (RFC 4173), the initiator name (option 203)
//! and the CHAP credentials (iPXE's encapsulated options 175.190-193). So the harness runs
//! a DHCP server (dnsmasq) on the enclosure network that answers each iSCSI module's MAC
//! with exactly what its Redfish double was given, and nothing else: test code, the NIC
//! firmware's part. iPXE then logs in, boots the volume's EFI loader, and leaves the
//! session in an iSCSI Boot Firmware Table for the operating system.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One network device function of a module: its MAC and the settings last PATCHed into it
/// (Redfish `NetworkDeviceFunction`: `BootMode`, `iSCSIBoot`).
#[derive(Debug)]
pub struct NicFirmware {
    pub mac: String,
    settings: Mutex<Value>,
}

/// The iSCSI boot settings the firmware acts on (from `iSCSIBoot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiBoot {
    pub initiator_name: String,
    pub initiator_ip: String,
    pub target_name: String,
    pub target_ip: String,
    pub target_port: u16,
    pub lun: u64,
    pub chap_user: Option<String>,
    pub chap_secret: Option<String>,
}

impl NicFirmware {
    pub fn new(mac: &str) -> NicFirmware {
        NicFirmware {
            mac: mac.to_owned(),
            settings: Mutex::new(serde_json::json!({"BootMode": "Disabled"})),
        }
    }

    /// The function as Redfish shows it: the CHAP secret never comes back.
    pub fn redfish(&self, id: &str) -> Value {
        let mut v = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v["@odata.id"] = Value::from(id);
        v["Id"] = Value::from("1");
        v["Ethernet"] = serde_json::json!({"MACAddress": self.mac});
        if let Some(boot) = v.get_mut("iSCSIBoot").and_then(Value::as_object_mut) {
            for secret in ["CHAPSecret", "MutualCHAPSecret"] {
                if boot.contains_key(secret) {
                    boot.insert(secret.into(), Value::Null);
                }
            }
        }
        v
    }

    /// A PATCH: `BootMode` and the `iSCSIBoot` properties given replace those held.
    pub fn patch(&self, body: &Value) -> Result<()> {
        let Some(body) = body.as_object() else {
            bail!("the body is not a JSON object");
        };
        let mut held = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in body {
            match k.as_str() {
                "BootMode" => {
                    if !matches!(v.as_str(), Some("Disabled" | "PXE" | "iSCSI")) {
                        bail!("BootMode {v} is not one this NIC supports");
                    }
                    held[k] = v.clone();
                }
                "iSCSIBoot" => {
                    let Some(props) = v.as_object() else {
                        bail!("iSCSIBoot is not an object");
                    };
                    if !held["iSCSIBoot"].is_object() {
                        held["iSCSIBoot"] = serde_json::json!({});
                    }
                    for (p, pv) in props {
                        held["iSCSIBoot"][p] = pv.clone();
                    }
                }
                other => bail!("property {other} cannot be written"),
            }
        }
        Ok(())
    }

    /// The iSCSI boot this NIC would perform at power-on; `None` when its boot mode is not
    /// iSCSI. An error when the settings are incomplete (a real NIC would fail to boot).
    pub fn iscsi_boot(&self) -> Result<Option<IscsiBoot>> {
        let v = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if v["BootMode"] != "iSCSI" {
            return Ok(None);
        }
        let b = &v["iSCSIBoot"];
        let text = |k: &str| -> Result<String> {
            b[k].as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .with_context(|| format!("iSCSIBoot.{k} is not set: {b}"))
        };
        let chap = b["AuthenticationMethod"] == "CHAP" || b["AuthenticationMethod"] == "MutualCHAP";
        Ok(Some(IscsiBoot {
            initiator_name: text("InitiatorName")?,
            initiator_ip: text("InitiatorIPAddress")?,
            target_name: text("PrimaryTargetName")?,
            target_ip: text("PrimaryTargetIPAddress")?,
            target_port: b["PrimaryTargetTCPPort"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(3260),
            lun: b["PrimaryLUN"].as_u64().unwrap_or(0),
            chap_user: chap.then(|| text("CHAPUsername")).transpose()?,
            chap_secret: chap.then(|| text("CHAPSecret")).transpose()?,
        }))
    }
}

impl IscsiBoot {
    /// RFC 4173's root path, as iPXE reads it: `iscsi:<server>::<port>:<lun>:<target>`.
    pub fn root_path(&self) -> String {
        format!(
            "iscsi:{}::{}:{}:{}",
            self.target_ip, self.target_port, self.lun, self.target_name
        )
    }
}

/// dnsmasq answering DHCP on the enclosure bridge for the iSCSI modules only (each by its
/// MAC; every other client is ignored). Stopped when dropped.
#[derive(Debug)]
pub struct BootDhcp {
    dir: PathBuf,
    child: Mutex<Child>,
}

impl BootDhcp {
    /// Starts dnsmasq in namespace `netns` on its `br0` (which must have an address in
    /// `network`, e.g. `10.77.0.0`), with its files and log under `dir`.
    pub fn start(netns: &str, network: &str, dir: &Path) -> Result<BootDhcp> {
        let dir = dir.join("boot-dhcp");
        for d in ["hosts", "options"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let conf = dir.join("dnsmasq.conf");
        std::fs::write(
            &conf,
            format!(
                "interface=br0\nbind-interfaces\nport=0\n\
                 dhcp-range={network},static,255.255.255.0,1h\n\
                 dhcp-ignore=tag:!known\n\
                 dhcp-hostsdir={hosts}\ndhcp-optsdir={options}\n\
                 dhcp-leasefile={leases}\nlog-dhcp\nlog-facility={log}\n",
                hosts = dir.join("hosts").display(),
                options = dir.join("options").display(),
                leases = dir.join("leases").display(),
                log = dir.join("dnsmasq.log").display(),
            ),
        )?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "dnsmasq", "--keep-in-foreground"])
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start dnsmasq (apt-get install dnsmasq-base)")?;
        Ok(BootDhcp {
            dir,
            child: Mutex::new(child),
        })
    }

    /// Answers `mac` with `boot`: its address and its iSCSI boot target (dnsmasq reads the
    /// directories again when a file in them changes).
    pub fn offer(&self, mac: &str, boot: &IscsiBoot) -> Result<()> {
        let tag = format!("m{}", mac.replace(':', ""));
        let mut options = vec![
            format!("tag:{tag},17,\"{}\"", boot.root_path()),
            format!("tag:{tag},203,\"{}\"", boot.initiator_name),
        ];
        if let (Some(user), Some(secret)) = (&boot.chap_user, &boot.chap_secret) {
            options.push(format!("tag:{tag},encap:175,190,\"{user}\""));
            options.push(format!("tag:{tag},encap:175,191,\"{secret}\""));
        }
        std::fs::write(
            self.dir.join("options").join(&tag),
            options.join("\n") + "\n",
        )?;
        std::fs::write(
            self.dir.join("hosts").join(&tag),
            format!("{mac},set:{tag},{}\n", boot.initiator_ip),
        )?;
        Ok(())
    }

    /// dnsmasq's log (what it offered to whom), for a failed test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }
}

impl BootDhcp {
    /// Stops dnsmasq (again: nothing). The rig calls it when it goes, whoever still holds
    /// this server (a Redfish double's handler may outlive the rig for a moment).
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // `ip netns exec` execs dnsmasq: the child is dnsmasq itself.
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for BootDhcp {
    fn drop(&mut self) {
        self.stop();
    }
}
