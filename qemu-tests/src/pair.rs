//! Two appliance VMs paired through their API, and the witness (run by the harness), on one
//! enclosure network: the scenarios `failover-management` and `failover`.
//!
//! Each appliance has one NIC on the enclosure bridge (its management address, the pair's
//! virtual IP, its storage address, etcd and replication all on it). The harness's own
//! namespace holds the witness's address; with [`host_link`](crate::enclosure::Enclosure::host_link)
//! this host reaches the network too (API clients, Redfish doubles).
//!
//! These helpers are the scenarios' own steps: they assert as they go (a failure is the
//! scenario's failure, with its message), as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::appliance::{Appliance, ApplianceSpec, Boot, ImageFiles, create_disk};
use crate::enclosure::Enclosure;

pub const VIP: &str = "10.78.0.100";
/// The witness's address: the enclosure namespace's own, on the bridge.
pub const WITNESS: &str = "10.78.0.3";
pub const NAMES: [&str; 2] = ["node-a", "node-b"];
/// How long an appliance VM may take to boot under TCG.
pub const BOOT: Duration = Duration::from_secs(600);

/// Appliance `i`'s management address.
pub fn address(i: usize) -> String {
    format!("10.78.0.{}", i + 1)
}

/// Appliance `i`'s storage address (the floating address of the volumes it creates).
pub fn storage_ip(i: usize) -> String {
    format!("10.78.0.{}", i + 11)
}

/// The appliance's multi-call binary (its `clusterd` runs the witness here).
pub fn multicall() -> PathBuf {
    std::env::var_os("STREAMER_MULTICALL").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/x86_64-unknown-linux-gnu/appliance/streamer")
        },
        PathBuf::from,
    )
}

/// Starts appliance `i` (its disk kept from an earlier start) with its NIC on the bridge,
/// `memory_mib` of memory and one vCPU: two appliance VMs with two vCPUs each on the host's
/// two cores once left a guest stuck in soft lockups under TCG; the scenarios check
/// correctness, not speed.
pub fn start_appliance(
    enc: &Enclosure,
    work: &Path,
    image: &ImageFiles,
    i: usize,
    memory_mib: u32,
) -> Appliance {
    let mut spec = ApplianceSpec::new(NAMES[i], Boot::Direct, work).unwrap();
    create_disk(image, &spec.disk, "8G").unwrap();
    spec.mgmt_tap = Some(enc.tap(&format!("mg{i}")).unwrap());
    spec.mgmt_mac = Some(format!("52:54:00:78:00:0{}", i + 1));
    spec.cpus = 1;
    spec.memory_mib = memory_mib;
    spec.append = format!(
        "streamer.mgmt=static:{}/24 streamer.hostname={}",
        address(i),
        NAMES[i]
    );
    spec.start(image).unwrap()
}

/// One API call on the enclosure network (from its namespace): (status, body); `None` if
/// nothing answered.
pub fn call(
    enc: &Enclosure,
    method: &str,
    url: String,
    token: Option<String>,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let method: reqwest::Method = method.parse().unwrap();
    enc.run_in(move || {
        let http = crate::api::insecure_client(Duration::from_secs(20)).unwrap();
        let mut r = http.request(method, &url).header("X-API-Version", "2020");
        if let Some(t) = token {
            r = r.header("auth", t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().unwrap_or(Value::Null)))
    })
    .unwrap()
}

pub fn url(host: &str, path: &str) -> String {
    format!("https://{host}{path}")
}

/// Logs in at `host`, retrying while nothing answers there.
pub fn login(enc: &Enclosure, host: &str, password: &str, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let body = json!({"userName": "Administrator", "password": password});
        if let Some((200, v)) = call(
            enc,
            "POST",
            url(host, "/rest/login-sessions"),
            None,
            Some(body),
        ) {
            return v["sessionID"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < end, "no login at {host} within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The pair's members as the virtual IP reports them: name → role.
pub fn roles(enc: &Enclosure, token: &str) -> Vec<(String, String)> {
    match call(
        enc,
        "GET",
        url(VIP, "/rest/appliance/nodes"),
        Some(token.into()),
        None,
    ) {
        Some((200, v)) => v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_owned(),
                    m["role"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Active alerts (through the virtual IP) whose description names `what`.
pub fn open_alerts(enc: &Enclosure, token: &str, what: &str) -> Option<usize> {
    let (_, alerts) = call(
        enc,
        "GET",
        url(VIP, "/rest/alerts"),
        Some(token.into()),
        None,
    )?;
    alerts["members"].as_array().map(|m| {
        m.iter()
            .filter(|a| {
                a["alertState"] == "Active"
                    && a["description"].as_str().unwrap_or("").contains(what)
            })
            .count()
    })
}

/// The witness: joins with its token, then runs its etcd member, in the enclosure namespace.
pub fn witness(enc: &Enclosure, dir: &Path, token: &str) -> Killed {
    let state = dir.join("witness");
    let out = Command::new("ip")
        .args(["netns", "exec", &enc.netns])
        .arg(multicall())
        .args([
            "clusterd",
            "--state-dir",
            state.to_str().unwrap(),
            "witness",
            "join",
        ])
        .args([
            "--api",
            &format!("https://{}", address(0)),
            "--token",
            token,
        ])
        .args(["--address", WITNESS])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "witness join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::File::create(dir.join("witness.log")).unwrap();
    Killed(
        Command::new("ip")
            .args(["netns", "exec", &enc.netns])
            .arg(multicall())
            .args([
                "clusterd",
                "--state-dir",
                state.to_str().unwrap(),
                "witness",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pairs appliances A and B (both booted, single): tokens on A, B joins (with a storage
/// address each when `storage`), both restart as members, the witness joins and runs.
/// Returns A's first-start password (the pair's Administrator), the witness and the index
/// of the active node once the pair has formed.
pub fn pair_up(
    enc: &Enclosure,
    dir: &Path,
    vms: &mut [Appliance],
    passwords: &[String],
    storage: bool,
) -> (Killed, usize) {
    let (a, b) = (address(0), address(1));
    let ta = login(enc, &a, &passwords[0], BOOT);
    let tb = login(enc, &b, &passwords[1], BOOT);
    let mut offer_body = json!({
        "address": a, "virtualIp": format!("{VIP}/24"), "witnessAddress": WITNESS,
    });
    let mut join_body = json!({"pairWith": a, "address": b});
    if storage {
        offer_body["storageIp"] = json!(format!("{}/24", storage_ip(0)));
        join_body["storageIp"] = json!(format!("{}/24", storage_ip(1)));
    }
    let (st, offer) = call(
        enc,
        "POST",
        url(&a, "/rest/appliance/pair"),
        Some(ta),
        Some(offer_body),
    )
    .unwrap();
    assert_eq!(st, 201, "{offer}");
    join_body["token"] = offer["joinToken"].clone();
    let (st, joined) = call(
        enc,
        "POST",
        url(&b, "/rest/appliance/pair/join"),
        Some(tb),
        Some(join_body),
    )
    .unwrap();
    assert_eq!(st, 200, "{joined}");
    for vm in vms.iter_mut() {
        vm.wait_ready(BOOT).unwrap();
    }
    let w = witness(enc, dir, offer["witnessToken"].as_str().unwrap());
    let token = login(enc, VIP, &passwords[0], BOOT);
    let end = Instant::now() + BOOT;
    let active = loop {
        let r = roles(enc, &token);
        let actives: Vec<_> = r.iter().filter(|(_, role)| role == "Active").collect();
        assert!(actives.len() <= 1, "two active nodes: {r:?}");
        if actives.len() == 1 && r.iter().any(|(_, role)| role == "Standby") {
            break NAMES.iter().position(|n| *n == actives[0].0).unwrap();
        }
        assert!(Instant::now() < end, "the pair did not form: {r:?}");
        std::thread::sleep(Duration::from_secs(1));
    };
    (w, active)
}

/// The last lines of an appliance's daemons' logs (from its console's root shell), for a
/// failed scenario's message.
pub fn daemon_logs(vm: &mut Appliance) -> String {
    let mut out = String::new();
    if vm.open_shell().is_err() {
        return "(no root shell on the console)".into();
    }
    for d in ["clusterd", "deployd", "storaged"] {
        // init keeps every daemon's output in /run/log (init/src/services.rs).
        let cmd = format!("tail -n 25 /run/log/{d}.log");
        out.push_str(&format!("--- {d}\n"));
        out.push_str(&vm.shell(&cmd, Duration::from_secs(30)).unwrap_or_default());
    }
    let _ = vm.close_shell();
    out
}
