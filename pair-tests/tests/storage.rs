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

use pair_harness::storage::{
    content_hash, differences, finish, finish_within, in_sync, keep_alive, make_volume, qemu_io,
    throttle_replication, verify, wait_until, workload,
};
use pair_harness::{Enclosure, Node, STORAGE_IPS, unusable};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pair-node"))
}

/// The storage pair running, and the compute module's namespace (TCP keep-alive on); None
/// after saying why the test is skipped.
fn storage_pair() -> Option<(Enclosure, String)> {
    if let Some(why) = unusable().or_else(|| which("qemu-io")) {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let enc = Enclosure::start_storage(bin()).unwrap();
    let client = enc.client_ns();
    keep_alive(&client).unwrap();
    Some((enc, client))
}

/// Waits for a qemu-io run, asserting it saw no error; its longest request (seconds).
fn check_run(what: &str, child: std::process::Child) -> f64 {
    let run = finish(child).unwrap();
    assert!(
        run.ok && run.errors.is_empty(),
        "{what}: qemu-io saw errors: {:?}\n{}",
        run.errors,
        run.stderr
    );
    run.longest
}

fn same_content(enc: &Enclosure, name: &str) {
    let (a, b) = (&enc.nodes[0], &enc.nodes[1]);
    if content_hash(a, name).unwrap() != content_hash(b, name).unwrap() {
        panic!(
            "{name}: the two copies differ after the resync: {:?}\nA: {}\nB: {}",
            differences(a, b, name, 10),
            status(a),
            status(b)
        );
    }
}

#[test]
fn the_owner_dies_and_its_compute_module_rides_through() {
    let Some((mut enc, client)) = storage_pair() else {
        return;
    };
    make_volume(&enc.nodes[0], "os-a", "32M").unwrap();
    // Replicated with its export: the other node knows both.
    assert!(
        enc.nodes[1]
            .storaged(&["export", "list", "--json"])
            .unwrap()
            .contains("10.77.0.3")
    );

    let (cmds, written) = workload(300, 15);
    let run = qemu_io(&client, STORAGE_IPS[0], "os-a", &cmds).unwrap();
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
    verify(&client, STORAGE_IPS[0], "os-a", &written).unwrap();
    eprintln!("failover and verify took {:?}", cut.elapsed());

    // A comes back: it serves nothing (its copy is outdated), B resyncs it.
    enc.power_on(0);
    wait_until("B resyncs A", Duration::from_secs(90), || {
        in_sync(&enc.nodes[1])
    })
    .unwrap();
    let a = &enc.nodes[0];
    let st = a.pair_status().unwrap();
    assert_eq!(st["groups"]["node-a"]["owned"], false, "{st}");
    assert!(!a.holds(STORAGE_IPS[0]));
    same_content(&enc, "os-a");
}

#[test]
fn a_cut_between_the_nodes_leaves_each_serving_its_own() {
    let Some((enc, client)) = storage_pair() else {
        return;
    };
    make_volume(&enc.nodes[0], "os-a", "32M").unwrap();
    make_volume(&enc.nodes[1], "os-b", "32M").unwrap();
    let (cmds, written) = workload(200, 15);
    let runs = [
        qemu_io(&client, STORAGE_IPS[0], "os-a", &cmds).unwrap(),
        qemu_io(&client, STORAGE_IPS[1], "os-b", &cmds).unwrap(),
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
    verify(&client, STORAGE_IPS[0], "os-a", &written).unwrap();
    verify(&client, STORAGE_IPS[1], "os-b", &written).unwrap();
    // An alert says the volumes are not redundant.
    wait_until("node A's storage alert", Duration::from_secs(5), || {
        alerts_of(&enc.nodes[0]).contains("Storage.NodeUnavailable")
    })
    .unwrap();

    enc.nodes[0].cut_from(&enc.nodes[1], false);
    enc.nodes[1].cut_from(&enc.nodes[0], false);
    for n in &enc.nodes[..2] {
        wait_until("the resync", Duration::from_secs(90), || in_sync(n)).unwrap();
    }
    for name in ["os-a", "os-b"] {
        same_content(&enc, name);
    }
    wait_until("the storage alerts clear", Duration::from_secs(10), || {
        active_storage_alerts(&enc.nodes[0]) == 0
    })
    .unwrap();
}

#[test]
fn a_peer_lost_again_during_its_resync_is_outdated_and_writes_go_on() {
    let Some((enc, client)) = storage_pair() else {
        return;
    };
    let (a, b) = (&enc.nodes[0], &enc.nodes[1]);
    make_volume(a, "os-a", "256M").unwrap();
    enc.make_etcd_leader(2).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let cut = |on: bool| {
        a.cut_from(b, on);
        b.cut_from(a, on);
    };

    // While B is away, 160 MiB written on A: all of it is B's resync.
    cut(true);
    let fill = qemu_io(
        &client,
        STORAGE_IPS[0],
        "os-a",
        &["write -P 0x11 0 160M".to_string()],
    )
    .unwrap();
    check_run("filling os-a while B is away", fill);
    assert_eq!(status(a)["peerOutdated"], true);

    // B is back, its resync slowed to 40 Mbit/s (half a minute), and lost again meanwhile.
    throttle_replication(a, Some("40mbit")).unwrap();
    cut(false);
    wait_until("B's resync starts", Duration::from_secs(30), || {
        status(a)["resync"]["running"] == true
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cut(true);
    // A's writes wait for B a moment, then go on without it (its copies outdated again):
    // they never hang behind the resync.
    let (cmds, written) = workload(50, 0);
    let run = qemu_io(&client, STORAGE_IPS[0], "os-a", &cmds).unwrap();
    let run = finish_within(run, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("A's writes after B was lost mid-resync: {e}: {}", status(a)));
    assert!(
        run.ok && run.errors.is_empty(),
        "A's writes after B was lost mid-resync: {:?}\n{}",
        run.errors,
        run.stderr
    );
    eprintln!(
        "os-a: zero errors with B lost mid-resync; longest request {:.2} s",
        run.longest
    );
    wait_until(
        "the resync ends, B outdated",
        Duration::from_secs(60),
        || {
            let st = status(a);
            st["peerOutdated"] == true && st["resync"]["running"] == false
        },
    )
    .unwrap();
    verify(&client, STORAGE_IPS[0], "os-a", &written).unwrap();

    // Back for good: resynced, identical.
    throttle_replication(a, None).unwrap();
    cut(false);
    wait_until("the resync", Duration::from_secs(90), || in_sync(a)).unwrap();
    same_content(&enc, "os-a");
}

/// Node `n`'s storaged pair status (JSON null if it does not answer).
fn status(n: &Node) -> serde_json::Value {
    n.pair_status().unwrap_or_default()
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

#[test]
fn the_seeds_volumes_from_before_the_pair_reach_the_other_node() {
    if let Some(why) = unusable().or_else(|| which("qemu-io")) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let made = |a: &Node| -> anyhow::Result<()> {
        make_volume(a, "old-os", "16M")?;
        a.storaged(&[
            "export",
            "add",
            "old-os",
            "--allow",
            "10.77.0.3",
            "--allow",
            "127.0.0.1",
        ])?;
        let client = Command::new("ip")
            .args(["netns", "exec", &a.ns, "qemu-io", "-f", "raw"])
            .args(["-c", "write -P 0x3c 1M 2M"])
            .arg("nbd://127.0.0.1:10809/old-os")
            .output()?;
        anyhow::ensure!(client.status.success(), "{client:?}");
        Ok(())
    };
    let enc = Enclosure::start_storage_seeded(bin(), Some(&made)).unwrap();
    // The seed's group starts with B's copy outdated: the first resync sends the volume.
    wait_until("the first sync", Duration::from_secs(60), || {
        enc.nodes[1].storaged(&["volume", "info", "old-os"]).is_ok() && in_sync(&enc.nodes[0])
    })
    .unwrap();
    same_content(&enc, "old-os");
}
