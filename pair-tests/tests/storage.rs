//! The pair's replicated OS-volume storage on the host: etcd in three namespaces, storaged
//! replicating A ⇄ B, clusterd driving it, and QEMU's NBD client (`qemu-io`, with
//! `reconnect-delay`) as the compute module, in the witness's namespace.
//!
//! * The owner of a volume dies (its link cut, then every process SIGKILLed) during an FUA
//!   write-then-verify loop: the loop ends with zero errors, every write it acknowledged is
//!   on the survivor, which serves the volume on the dead node's storage address; the
//!   longest request (the client-visible pause) is printed. The dead node comes back, is
//!   resynced, and both copies end byte-identical.
//! * Only the A–B link is cut (the witness leading etcd, so both keep their quorum): each
//!   node keeps serving its own volumes without an error (each marks the other's copies
//!   outdated in etcd), nobody takes anything over, and an alert says so; once the link is
//!   back, both resync and end identical.
//!
//! Needs root, `ip`, etcd and qemu-io; skipped (with the reason) where they are missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pair_harness::{Enclosure, Node, STORAGE_IPS, unusable};

const SLOT: u64 = 64 << 10;
const SLOTS: u64 = 256;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pair-node"))
}

/// The byte written to `slot` by round `round` (never zero: a zero would read as a hole).
fn pattern(slot: u64, round: u64) -> u64 {
    (slot * 7 + round * 13) % 251 + 1
}

/// `qemu-io` commands: `rounds` FUA writes, each read back and checked, `pause_ms` apart;
/// the slot written by each round, in order.
fn workload(rounds: u64, pause_ms: u64) -> (Vec<String>, Vec<(u64, u64)>) {
    let mut cmds = Vec::new();
    let mut written = Vec::new();
    for round in 0..rounds {
        let slot = (round * 37) % SLOTS;
        let p = pattern(slot, round);
        let off = slot * SLOT;
        cmds.push(format!("write -f -P {p} {off} {SLOT}"));
        cmds.push(format!("read -P {p} {off} {SLOT}"));
        if pause_ms > 0 {
            cmds.push(format!("sleep {pause_ms}"));
        }
        written.push((slot, p));
    }
    (cmds, written)
}

/// Runs `qemu-io` in the witness's namespace against `export` on `server`, through QEMU's
/// NBD client with a reconnect delay: it rides through a failover, resending what was in
/// flight.
fn qemu_io(ns: &str, server: &str, export: &str, cmds: &[String]) -> std::process::Child {
    let opts = format!(
        "driver=nbd,server.type=inet,server.host={server},server.port=10809,export={export},\
         server.keep-alive=on,reconnect-delay=30"
    );
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "qemu-io", "--image-opts", &opts]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting qemu-io")
}

/// What a `qemu-io` run printed: asserts it ran to the end without an error; returns the
/// longest request (seconds).
fn check_run(what: &str, child: std::process::Child) -> f64 {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| {
            l.contains("failed") || l.contains("error") || l.contains("Pattern verification")
        })
        .collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "{what}: qemu-io saw errors (status {}): {errors:?}\n{stderr}",
        out.status
    );
    // "64 KiB, 1 ops; 00.00 sec (94.866 MiB/sec and 1517.8561 ops/sec)": one op each.
    stdout
        .lines()
        .filter_map(|l| l.split(" and ").nth(1))
        .filter_map(|t| t.trim_end_matches(" ops/sec)").parse::<f64>().ok())
        .filter(|ops| *ops > 0.0)
        .map(|ops| 1.0 / ops)
        .fold(0.0, f64::max)
}

/// Reads every slot back through `server` and checks it holds its last pattern.
fn verify(ns: &str, server: &str, export: &str, written: &[(u64, u64)]) {
    let mut last = std::collections::BTreeMap::new();
    for (slot, p) in written {
        last.insert(*slot, *p);
    }
    let cmds: Vec<String> = last
        .iter()
        .map(|(slot, p)| format!("read -P {p} {} {SLOT}", slot * SLOT))
        .collect();
    check_run(
        "verifying every acknowledged write",
        qemu_io(ns, server, export, &cmds),
    );
}

/// The compute module's TCP keep-alive (its namespace's sysctls): a connection whose server
/// died with a request in flight (acknowledged by TCP, unanswered) has nothing left to
/// retransmit, so only a keep-alive probe finds out; it reaches the node that took the
/// address over, whose kernel resets it, and QEMU reconnects. (A server's iSCSI initiator
/// has NOP-Out pings for the same purpose.)
fn keep_alive(ns: &str) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-w",
            "net.ipv4.tcp_keepalive_time=2",
            "net.ipv4.tcp_keepalive_intvl=1",
            "net.ipv4.tcp_keepalive_probes=3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The SHA-256 of volume `name` as node `n` holds it.
fn content_hash(n: &Node, name: &str) -> String {
    let file = n.dir.join(format!("{name}.raw"));
    n.storaged(&["volume", "export", name, file.to_str().unwrap()])
        .unwrap();
    let out = Command::new("sha256sum").arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Waits until `n` has its peer's copies up to date again (no group outdated, no resync).
fn wait_in_sync(n: &Node, limit: Duration) {
    wait_until(&format!("{} resyncs its peer", n.name), limit, || {
        n.pair_status().is_some_and(|s| {
            s["peerOutdated"] == false
                && s["resync"]["running"] == false
                && s["outOfSync"].as_array().is_some_and(|a| a.is_empty())
        })
    });
}

fn make_volume(n: &Node, name: &str) {
    n.storaged(&["volume", "create", "--size", "32M", "--name", name])
        .unwrap();
    n.storaged(&["export", "add", name, "--allow", "10.77.0.3"])
        .unwrap();
}

#[test]
fn the_owner_dies_and_its_compute_module_rides_through() {
    if let Some(why) = unusable().or_else(|| which("qemu-io")) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut enc = Enclosure::start_storage(bin()).unwrap();
    let client = enc.client_ns();
    keep_alive(&client);
    make_volume(&enc.nodes[0], "os-a");
    // Replicated with its export: the other node knows both.
    assert!(
        enc.nodes[1]
            .storaged(&["export", "list", "--json"])
            .unwrap()
            .contains("10.77.0.3")
    );

    let (cmds, written) = workload(300, 15);
    let run = qemu_io(&client, STORAGE_IPS[0], "os-a", &cmds);
    std::thread::sleep(Duration::from_millis(1500));
    let cut = Instant::now();
    enc.pull_the_plug(0);
    let longest = check_run("the write-then-verify loop across the owner's death", run);
    eprintln!(
        "owner killed {:.1} s into the run: zero errors; longest request {longest:.2} s",
        1.5
    );
    // The survivor serves A's group on A's storage address, at the next epoch.
    let b = &enc.nodes[1];
    assert!(
        b.holds(STORAGE_IPS[0]),
        "node B took the storage address over"
    );
    let st = b.pair_status().unwrap();
    assert_eq!(st["groups"]["node-a"]["owned"], true, "{st}");
    assert!(
        st["groups"]["node-a"]["epoch"].as_u64().unwrap() >= 2,
        "{st}"
    );
    assert_eq!(st["peerOutdated"], true, "{st}");
    verify(&client, STORAGE_IPS[0], "os-a", &written);
    eprintln!("failover and verify took {:?}", cut.elapsed());

    // A comes back: it serves nothing (its copy is outdated), B resyncs it.
    enc.power_on(0);
    wait_in_sync(&enc.nodes[1], Duration::from_secs(90));
    let a = &enc.nodes[0];
    let st = a.pair_status().unwrap();
    assert_eq!(st["groups"]["node-a"]["owned"], false, "{st}");
    assert!(!a.holds(STORAGE_IPS[0]));
    assert_eq!(
        content_hash(&enc.nodes[0], "os-a"),
        content_hash(&enc.nodes[1], "os-a"),
        "both copies identical after the resync"
    );
}

#[test]
fn a_cut_between_the_nodes_leaves_each_serving_its_own() {
    if let Some(why) = unusable().or_else(|| which("qemu-io")) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let enc = Enclosure::start_storage(bin()).unwrap();
    let client = enc.client_ns();
    keep_alive(&client);
    make_volume(&enc.nodes[0], "os-a");
    make_volume(&enc.nodes[1], "os-b");
    let (cmds, written) = workload(200, 15);
    let runs = [
        qemu_io(&client, STORAGE_IPS[0], "os-a", &cmds),
        qemu_io(&client, STORAGE_IPS[1], "os-b", &cmds),
    ];
    // The witness leads etcd (as the active node arranges): both nodes keep their quorum
    // through it while they cannot reach each other.
    enc.make_etcd_leader(2).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    enc.nodes[0].cut_from(&enc.nodes[1], true);
    enc.nodes[1].cut_from(&enc.nodes[0], true);
    for (run, name) in runs.into_iter().zip(["os-a", "os-b"]) {
        let longest = check_run(&format!("{name} across the cut"), run);
        eprintln!("{name}: zero errors across the A-B cut; longest request {longest:.2} s");
    }
    // Each node went on without the other (its copies marked outdated), nobody took over.
    for (i, n) in enc.nodes[..2].iter().enumerate() {
        let st = n.pair_status().unwrap();
        assert_eq!(st["peerOutdated"], true, "{}: {st}", n.name);
        assert!(n.holds(STORAGE_IPS[i]));
        let home = ["node-a", "node-b"][i];
        assert_eq!(st["groups"][home]["owned"], true, "{st}");
        assert_eq!(st["groups"][home]["epoch"], 1, "{st}");
    }
    verify(&client, STORAGE_IPS[0], "os-a", &written);
    verify(&client, STORAGE_IPS[1], "os-b", &written);
    // An alert says the volumes are not redundant.
    wait_until("node A's storage alert", Duration::from_secs(5), || {
        alerts_of(&enc.nodes[0]).contains("Storage.NodeUnavailable")
    });

    enc.nodes[0].cut_from(&enc.nodes[1], false);
    enc.nodes[1].cut_from(&enc.nodes[0], false);
    for n in &enc.nodes[..2] {
        wait_in_sync(n, Duration::from_secs(90));
    }
    for name in ["os-a", "os-b"] {
        assert_eq!(
            content_hash(&enc.nodes[0], name),
            content_hash(&enc.nodes[1], name),
            "{name}: both copies identical after the resync"
        );
    }
    wait_until("the storage alerts clear", Duration::from_secs(10), || {
        active_storage_alerts(&enc.nodes[0]) == 0
    });
}

fn alerts_of(n: &Node) -> String {
    let sock = n.control();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = clusterd::control::ClusterClient::connect(&sock)
            .await
            .unwrap();
        serde_json::to_string(&c.alerts().await.unwrap()).unwrap()
    })
}

fn active_storage_alerts(n: &Node) -> usize {
    let v: serde_json::Value = serde_json::from_str(&alerts_of(n)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["alertState"] == "Active"
                && a["alertTypeId"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Storage."))
        })
        .count()
}

fn which(tool: &str) -> Option<String> {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then(|| format!("`{tool}` is not installed (Debian: qemu-utils)"))
}
