//! The Linux scenarios' artifacts on the appliance: the Debian golden image uploaded, a
//! deploy plan that sets the hostname, a static address on the enclosure network and a
//! user, and writes `/etc/motd` with a guest command (`sh`: the appliance runs it only
//! inside a plan run's cgroup, so a deploy that completes shows the appliance's cgroup v2
//! works), and a capture plan that removes what identifies a host (hostname, machine-id, SSH
//! host keys).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::api::Api;

/// The user the deploy plan creates, and its password (its hash goes in /etc/shadow).
pub const USER: &str = "ops";
pub const PASSWORD: &str = "Pl4n-Secret-77";

const DEPLOY_SCRIPT: &str = r#"mount /dev/sda2 /
write /etc/hostname "@Hostname@\n"
write /etc/hosts "127.0.0.1 localhost\n127.0.1.1 @Hostname@\n"
upload -<<END /etc/network/interfaces
auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet static
    address @ManagementNIC.ipaddress@
    netmask @ManagementNIC.netmask@
    hwaddress ether @ManagementNIC.mac@
END
write-append /etc/passwd "@UserName@:x:1000:1000::/home/@UserName@:/bin/bash\n"
write-append /etc/group "@UserName@:x:1000:\n"
write-append /etc/shadow "@UserName@:@UserPasswordHash@:19000:0:99999:7:::\n"
mkdir-p /home/@UserName@
chmod 0777 /home/@UserName@
mkdir-p /etc/ssh
write /etc/ssh/ssh_host_ed25519_key "host key of @Hostname@\n"
echo "host @Hostname@ with user @UserName@"
sh "echo 'Deployed by Streamer as @Hostname@.' > /etc/motd"
umount-all
"#;

const CAPTURE_SCRIPT: &str = r#"mount /dev/sda2 /
rm-f /etc/hostname
write /etc/machine-id ""
rm-f /var/lib/dbus/machine-id
glob rm-f /etc/ssh/ssh_host_*
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
pub fn upload_golden_image(api: &Api, name: &str, raw: &Path) -> Result<String> {
    let bytes = std::fs::read(raw).with_context(|| raw.display().to_string())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes)?;
    let t = api.wait_task(
        api.upload(
            &format!("/rest/golden-images?name={name}"),
            "debian.raw.gz",
            gz.finish()?,
        )?,
        Duration::from_secs(900),
    )?;
    t["associatedResource"]["resourceUri"]
        .as_str()
        .map(str::to_owned)
        .context("golden image task without resource")
}

/// The deploy plan (plan script, build plan, deployment plan) on `golden`; its URI.
pub fn deployment_plan(api: &Api, golden: &str) -> Result<String> {
    let tag = golden.rsplit('/').next().unwrap_or(golden);
    let ps = created_uri(api.post(
        "/rest/plan-scripts",
        &json!({"name": format!("debian personalize {tag}"), "planType": "deploy",
                "content": DEPLOY_SCRIPT}),
    )?)?;
    let bp = created_uri(api.post(
        "/rest/build-plans",
        &json!({"name": format!("debian deploy {tag}"), "oeBuildPlanType": "deploy",
                "buildStep": [{"serialNumber": "1", "planScriptUri": ps, "parameters": null}],
                "customAttributes": [
            {"name": "Hostname", "type": "hostname", "value": "", "constraints": "{\"helpText\":\"\"}"},
            {"name": "ManagementNIC", "type": "nic", "value": null,
             "constraints": "{\"ipv4static\":true,\"ipv4dhcp\":false,\"ipv4disable\":false,\"parameters\":[\"ipaddress\",\"netmask\",\"mac\"]}"},
            {"name": "UserName", "type": "string", "value": USER, "constraints": "{}"},
            {"name": "UserPasswordHash", "type": "string", "value": "", "constraints": "{}"},
        ]}),
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

/// The deploy plan's values for a host.
pub fn values(hostname: &str, ip: &str, mac: &str) -> Result<Value> {
    Ok(json!([
        {"name": "Hostname", "value": hostname},
        {"name": "ManagementNIC.ipaddress", "value": ip},
        {"name": "ManagementNIC.netmask", "value": "255.255.255.0"},
        {"name": "ManagementNIC.mac", "value": mac},
        {"name": "UserPasswordHash", "value": password_hash(PASSWORD)?},
    ]))
}
