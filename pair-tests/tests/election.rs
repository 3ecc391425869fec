//! The election alone: network namespaces A, B and W on a bridge, Debian's etcd in each
//! (`clusterd etcd` / `clusterd witness`), clusterd on A and B, no storaged or deployd. The
//! harness's observer polls both nodes every 100 ms for the whole test and fails it if it ever
//! sees two active nodes, or one node's term overlapping the other's. Needs root, `ip` and
//! etcd; skips with the reason otherwise (CI has all three).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use clusterd::control::ClusterClient;
use clusterd::status::Role;
use nix::sys::signal::Signal;
use pair_harness::{Enclosure, Observer, VIP, sh};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn the_pair_elects_one_active_and_hands_over_on_stop_partition_and_kill() {
    if let Some(why) = pair_harness::unusable() {
        eprintln!("skipping: {why}");
        return;
    }
    let mut enc = Enclosure::start_elections(Path::new(env!("CARGO_BIN_EXE_pair-node"))).unwrap();
    let bin = enc.bin.clone();
    let observer = Observer::start(&enc);

    // One active, one standby; the virtual IP on the active only.
    observer.wait_for("an election", LIMIT, |s| {
        s.active().is_some()
            && (0..2).all(|i| matches!(s.role(i), Some(Role::Active | Role::Standby)))
    });
    let first = observer.active().unwrap();
    let other = 1 - first;
    assert!(enc.nodes[first].has_vip());
    assert!(!enc.nodes[other].has_vip());
    // The witness learns the virtual IP's MAC (the active's).
    let witness = enc.nodes[2].ns.clone();
    sh(&["ip", "netns", "exec", &witness, "ping", "-c1", "-W2", VIP]).unwrap();

    // 1. Freeze the active's clusterd beyond its lease, then let it run again.
    enc.nodes[first].signal("clusterd", Signal::SIGSTOP);
    observer.wait_for("a takeover after SIGSTOP", LIMIT, |s| {
        s.role(other) == Some(Role::Active)
    });
    assert!(enc.nodes[other].has_vip());
    enc.nodes[first].signal("clusterd", Signal::SIGCONT);
    observer.wait_for("the resumed node to stand by", LIMIT, |s| {
        s.role(first) == Some(Role::Standby)
    });
    assert!(
        !enc.nodes[first].has_vip(),
        "the resumed node dropped the virtual IP"
    );
    // The neighbours were told: the witness's entry for the virtual IP is the new MAC.
    let new_mac = enc.nodes[other].mac();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let neigh = sh(&["ip", "-n", &witness, "neigh", "show", VIP]).unwrap();
        if neigh.contains(&new_mac) {
            break;
        }
        assert!(
            Instant::now() < end,
            "gratuitous ARP not applied: {neigh} (want {new_mac})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 2. Partition the active from the rest: it steps down, the other takes over; healed,
    //    it stands by.
    let (active, standby) = (other, first);
    enc.nodes[active].link(false);
    observer.wait_for("a takeover after a partition", LIMIT, |s| {
        s.role(standby) == Some(Role::Active) && s.role(active) != Some(Role::Active)
    });
    enc.nodes[active].link(true);
    observer.wait_for("the healed node to stand by", LIMIT, |s| {
        s.role(active) == Some(Role::Standby)
    });
    assert!(!enc.nodes[active].has_vip());

    // 3. Cut the active's link, then kill its etcd and clusterd (no FIN, no RST reaches
    //    anyone); the other takes over with an alert; the dead node restarts, rejoins as
    //    standby, and the alert clears.
    let (active, standby) = (standby, active);
    enc.pull_the_plug(active);
    observer.wait_for("a takeover after a kill", LIMIT, |s| {
        s.role(standby) == Some(Role::Active)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = enc.nodes[standby].control();
    let alerts = || {
        rt.block_on(async {
            let c = ClusterClient::connect(&socket).await.unwrap();
            c.alerts().await.unwrap()
        })
    };
    let dead = enc.nodes[active].name;
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = alerts();
        let raised = |type_id: &str, about: &str| {
            a.iter().any(|x| {
                x.alert_state == "Active"
                    && x.alert_type_id == type_id
                    && x.description.contains(about)
            })
        };
        if raised("Cluster.NodeUnavailable", dead) {
            assert!(raised("Cluster.NotHighlyAvailable", ""), "{a:?}");
            // The serial console's summary says the same (written every second).
            std::thread::sleep(Duration::from_millis(1500));
            let summary =
                std::fs::read_to_string(enc.nodes[standby].dir.join("summary.txt")).unwrap();
            assert!(
                summary.starts_with(&format!("{}: active node", enc.nodes[standby].name)),
                "{summary}"
            );
            assert!(
                summary.contains(&format!("Critical: Appliance node {dead} is unavailable")),
                "{summary}"
            );
            break;
        }
        assert!(Instant::now() < end, "no node-unavailable alert: {a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    enc.nodes[active].link(true);
    enc.nodes[active].start_etcd(&bin);
    enc.nodes[active].start_clusterd(&bin);
    observer.wait_for("the restarted node to rejoin as standby", LIMIT, |s| {
        s.role(active) == Some(Role::Standby) && s.role(standby) == Some(Role::Active)
    });
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = alerts();
        if !a.is_empty() && a.iter().all(|x| x.alert_state == "Cleared") {
            break;
        }
        assert!(Instant::now() < end, "alerts did not clear: {a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let terms = observer.never_two_actives();
    assert!(terms >= 4, "four terms of office expected, saw {terms}");
}
