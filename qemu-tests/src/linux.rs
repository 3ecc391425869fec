//! The Linux scenarios' artifacts on the appliance: the Debian golden image uploaded, a
//! deploy plan that sets the hostname, the network (a static address on the enclosure
//! network; over iSCSI, the firmware's address and the module's initiator name) and a
//! user (who may use sudo), and writes `/etc/motd` with a guest command (`sh`: the appliance runs it only
//! inside a plan run's cgroup, so a deploy that completes shows the appliance's cgroup v2
//! works), and a capture plan that removes what identifies a host (hostname, machine-id, SSH
//! host keys, initiator name).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::api::Api;
use crate::compute::ModuleBoot;

/// The user the deploy plan creates, and its password (its hash goes in /etc/shadow).
pub const USER: &str = "ops";
pub const PASSWORD: &str = "Pl4n-Secret-77";

/// The deploy plan script; `{network}` is replaced by the lines that configure the
/// module's network (see [`deploy_script`]).
const DEPLOY_SCRIPT: &str = r#"mount /dev/sda2 /
write /etc/hostname "@Hostname@\n"
write /etc/hosts "127.0.0.1 localhost\n127.0.1.1 @Hostname@\n"
{network}write-append /etc/passwd "@UserName@:x:1000:1000::/home/@UserName@:/bin/bash\n"
write-append /etc/group "@UserName@:x:1000:\n"
write-append /etc/shadow "@UserName@:@UserPasswordHash@:19000:0:99999:7:::\n"
mkdir-p /home/@UserName@
chmod 0777 /home/@UserName@
write /etc/sudoers.d/@UserName@ "@UserName@ ALL=(ALL) NOPASSWD: ALL\n"
chmod 0440 /etc/sudoers.d/@UserName@
mkdir-p /etc/ssh
write /etc/ssh/ssh_host_ed25519_key "host key of @Hostname@\n"
echo "host @Hostname@ with user @UserName@"
sh "echo 'Deployed by Streamer as @Hostname@.' > /etc/motd"
umount-all
"#;

/// A module booting over NBD: a static address on its NIC.
const STATIC_NETWORK: &str = r#"upload -<<END /etc/network/interfaces
auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet static
    address @ManagementNIC.ipaddress@
    netmask @ManagementNIC.netmask@
    hwaddress ether @ManagementNIC.mac@
END
"#;

/// A module booting over iSCSI: its NIC keeps the address its firmware gave it (the
/// initramfs set it up from the iBFT, and ifupdown must never take it down under the
/// root filesystem); the OS's own iSCSI initiator takes the module's initiator name.
const ISCSI_NETWORK: &str = r#"upload -<<END /etc/network/interfaces
auto lo
iface lo inet loopback
END
mkdir-p /etc/iscsi
write /etc/iscsi/initiatorname.iscsi "InitiatorName=@InitiatorName@\n"
"#;

/// The deploy script for a module booting as `boot` says.
pub fn deploy_script(boot: ModuleBoot) -> String {
    DEPLOY_SCRIPT.replace(
        "{network}",
        match boot {
            ModuleBoot::Nbd => STATIC_NETWORK,
            ModuleBoot::Iscsi => ISCSI_NETWORK,
        },
    )
}

const CAPTURE_SCRIPT: &str = r#"mount /dev/sda2 /
rm-f /etc/hostname
write /etc/machine-id ""
rm-f /var/lib/dbus/machine-id
glob rm-f /etc/ssh/ssh_host_*
rm-f /etc/iscsi/initiatorname.iscsi
echo "generalized: hostname, machine-id and SSH host keys removed"
umount-all
"#;

fn created_uri(r: reqwest::blocking::Response) -> Result<String> {
    let status = r.status();
    let body: Value = r.json()?;
    if status != 201 {
        bail!("expected 201, got {status}: {body}");
    }
    body["uri"].as_str().map(str::to_owned).context("no uri")
}

/// Uploads a raw disk image (gzip-compressed on the way) as golden image `name`.
///
/// On a pair, right after pairing and under TCG, the active node may lose its role for a
/// moment (its lease not renewed in time; seen in CI's logs) and take it again: meanwhile it
/// refuses writes (a 503; to an upload larger than what it drains, a cut connection) and an
/// upload in flight may be cut. Either is retried, as a client of a pair should, a few times.
pub fn upload_golden_image(api: &Api, name: &str, raw: &Path) -> Result<String> {
    let bytes = std::fs::read(raw).with_context(|| raw.display().to_string())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes)?;
    let gz = gz.finish()?;
    let path = format!("/rest/golden-images?name={name}");
    let mut attempt = 1;
    let accepted = loop {
        let why = match api.upload(&path, "debian.raw.gz", gz.clone()) {
            Ok(r) if r.status() == 503 => format!("503 {}", r.text().unwrap_or_default()),
            Ok(r) => break r,
            Err(e) => format!("{e:#}"),
        };
        if attempt == 4 {
            anyhow::bail!("the golden image upload failed {attempt} times, the last: {why}");
        }
        eprintln!("golden image upload refused or cut (attempt {attempt}): {why}; retrying");
        attempt += 1;
        std::thread::sleep(Duration::from_secs(3));
    };
    let t = api.wait_task(accepted, Duration::from_secs(900))?;
    t["associatedResource"]["resourceUri"]
        .as_str()
        .map(str::to_owned)
        .context("golden image task without resource")
}

/// The deploy plan (plan script, build plan, deployment plan) on `golden` for modules
/// booting as `boot` says; its URI.
pub fn deployment_plan(api: &Api, golden: &str, boot: ModuleBoot) -> Result<String> {
    let tag = format!("{} {boot:?}", golden.rsplit('/').next().unwrap_or(golden));
    let ps = created_uri(api.post(
        "/rest/plan-scripts",
        &json!({"name": format!("debian personalize {tag}"), "planType": "deploy",
                "content": deploy_script(boot)}),
    )?)?;
    let mut attributes = vec![
        json!({"name": "Hostname", "type": "hostname", "value": "", "constraints": "{\"helpText\":\"\"}"}),
        json!({"name": "UserName", "type": "string", "value": USER, "constraints": "{}"}),
        json!({"name": "UserPasswordHash", "type": "string", "value": "", "constraints": "{}"}),
    ];
    attributes.push(match boot {
        ModuleBoot::Nbd => json!({"name": "ManagementNIC", "type": "nic", "value": null,
             "constraints": "{\"ipv4static\":true,\"ipv4dhcp\":false,\"ipv4disable\":false,\"parameters\":[\"ipaddress\",\"netmask\",\"mac\"]}"}),
        ModuleBoot::Iscsi => json!({"name": "InitiatorName", "type": "string", "value": "",
             "constraints": "{}"}),
    });
    let bp = created_uri(api.post(
        "/rest/build-plans",
        &json!({"name": format!("debian deploy {tag}"), "oeBuildPlanType": "deploy",
                "buildStep": [{"serialNumber": "1", "planScriptUri": ps, "parameters": null}],
                "customAttributes": attributes}),
    )?)?;
    created_uri(api.post(
        "/rest/deployment-plans",
        &json!({"name": format!("debian on {tag}"), "oeBuildPlanURI": bp,
                "goldenImageURI": golden, "hpProvided": false}),
    )?)
}

/// The capture build plan; its URI.
pub fn capture_plan(api: &Api) -> Result<String> {
    let ps = created_uri(api.post(
        "/rest/plan-scripts",
        &json!({"name": "debian generalize", "planType": "capture", "content": CAPTURE_SCRIPT}),
    )?)?;
    created_uri(api.post(
        "/rest/build-plans",
        &json!({"name": "debian capture", "oeBuildPlanType": "capture",
                "buildStep": [{"serialNumber": "1", "planScriptUri": ps, "parameters": null}],
                "customAttributes": []}),
    )?)
}

/// A SHA-512 crypt hash of `password` (openssl), for /etc/shadow.
pub fn password_hash(password: &str) -> Result<String> {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "streamerqemu", password])
        .output()
        .context("openssl")?;
    if !out.status.success() {
        bail!("openssl passwd failed");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// How a deployed OS's network is set: a static address on its NIC (a module booting over
/// NBD), or the address its NIC's firmware gave it, with the module's initiator name (a
/// module booting over iSCSI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsNetwork {
    Static { ip: String, mac: String },
    Firmware { initiator: String },
}

impl OsNetwork {
    /// How a module whose OS is set up this way boots.
    pub fn boot(&self) -> ModuleBoot {
        match self {
            OsNetwork::Static { .. } => ModuleBoot::Nbd,
            OsNetwork::Firmware { .. } => ModuleBoot::Iscsi,
        }
    }
}

/// The values of [`deployment_plan`]`(.., network.boot())` for host `hostname`.
pub fn values(hostname: &str, network: &OsNetwork) -> Result<Value> {
    let mut v = vec![
        json!({"name": "Hostname", "value": hostname}),
        json!({"name": "UserPasswordHash", "value": password_hash(PASSWORD)?}),
    ];
    match network {
        OsNetwork::Static { ip, mac } => v.extend([
            json!({"name": "ManagementNIC.ipaddress", "value": ip}),
            json!({"name": "ManagementNIC.netmask", "value": "255.255.255.0"}),
            json!({"name": "ManagementNIC.mac", "value": mac}),
        ]),
        OsNetwork::Firmware { initiator } => {
            v.push(json!({"name": "InitiatorName", "value": initiator}));
        }
    }
    Ok(Value::Array(v))
}
