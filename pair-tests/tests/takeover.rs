//! The pair under a writer: an API client on the enclosure network writes a plan script
//! through the management virtual IP every 20 ms, with one session, while the active node
//! loses its power cord (link cut, then SIGKILL) — once while its etcd member leads the etcd
//! cluster and once while it does not —, is frozen beyond its lease (SIGSTOP, then SIGCONT),
//! and is cut off from the others. After each, the other node answers on the virtual IP, and
//! the old one comes back as standby. At the end every acknowledged write is there at its
//! eTag or later, the session is still valid, and an observer that polled both nodes every
//! 100 ms never saw two active nodes, nor overlapping terms of office.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clusterd::status::Role;
use pair_harness::{
    API_PORT, Enclosure, Observer, VIP, client, in_ns, login, takeover, wait_acked_after,
    writer_loop,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Waits until clusterd on `standby` is standby and its API answers.
fn wait_rejoined(enc: &Enclosure, standby: usize) {
    let end = Instant::now() + LIMIT;
    while enc.nodes[standby].status().map(|s| s.role) != Some(Role::Standby) {
        assert!(
            Instant::now() < end,
            "{} did not rejoin",
            enc.nodes[standby].name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    enc.wait_api(standby, LIMIT).unwrap();
}

#[test]
fn the_api_survives_the_loss_of_the_active_node() {
    if let Some(why) = pair_harness::unusable() {
        eprintln!("skipping: {why}");
        return;
    }
    let mut enc = Enclosure::start(std::path::Path::new(env!("CARGO_BIN_EXE_pair-node"))).unwrap();
    let observer = Observer::start(&enc);
    let token = {
        let base = format!("https://{VIP}:{API_PORT}");
        in_ns(&enc.client_ns(), move || login(&client(), &base)).unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, writer) = writer_loop(
        &enc.client_ns(),
        token.clone(),
        Duration::from_millis(20),
        Arc::clone(&stop),
    );
    let mut cuts = Vec::new();

    // Power cord, twice: once with the active's etcd member leading etcd, once not.
    for leader in [false, true] {
        std::thread::sleep(Duration::from_millis(500));
        let active = enc.wait_for_active(None, LIMIT).unwrap();
        if leader {
            enc.make_etcd_leader(active).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                enc.is_etcd_leader(active),
                "could not make the active lead etcd"
            );
        } else {
            assert!(
                !enc.is_etcd_leader(active),
                "the active node should not lead etcd"
            );
        }
        let cut = Instant::now();
        enc.pull_the_plug(active);
        let new = enc.wait_for_active(Some(active), LIMIT).unwrap();
        wait_acked_after(&writes, cut, LIMIT).unwrap();
        assert!(enc.nodes[new].has_vip());
        cuts.push((format!("power cord (etcd leader: {leader})"), cut));
        enc.power_on(active);
        wait_rejoined(&enc, active);
        assert!(!enc.nodes[active].has_vip());
    }

    // Frozen beyond its lease: the other takes over; thawed, the old one stands by and its
    // own address refuses changes.
    std::thread::sleep(Duration::from_millis(500));
    let active = enc.wait_for_active(None, LIMIT).unwrap();
    let cut = Instant::now();
    enc.nodes[active].signal_all(nix::sys::signal::Signal::SIGSTOP);
    enc.wait_for_active(Some(active), LIMIT).unwrap();
    wait_acked_after(&writes, cut, LIMIT).unwrap();
    cuts.push(("SIGSTOP".into(), cut));
    enc.nodes[active].signal_all(nix::sys::signal::Signal::SIGCONT);
    wait_rejoined(&enc, active);
    assert!(!enc.nodes[active].has_vip());
    let old = format!("https://{}:{API_PORT}", enc.nodes[active].address);
    let t = token.clone();
    let status = in_ns(&enc.client_ns(), move || {
        client()
            .post(format!("{old}/rest/plan-scripts"))
            .header("X-API-Version", "1000")
            .header("auth", &t)
            .json(
                &serde_json::json!({"name": "to-the-standby", "type": "PlanScript",
                "planType": "deploy", "content": "echo\n", "description": ""}),
            )
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(
        status, 503,
        "the old active took a change after it was thawed"
    );

    // Cut off from the others (no kill): it steps down, the other takes over; healed, it
    // stands by.
    std::thread::sleep(Duration::from_millis(500));
    let active = enc.wait_for_active(None, LIMIT).unwrap();
    let cut = Instant::now();
    enc.nodes[active].link(false);
    enc.wait_for_active(Some(active), LIMIT).unwrap();
    wait_acked_after(&writes, cut, LIMIT).unwrap();
    cuts.push(("partition".into(), cut));
    enc.nodes[active].link(true);
    wait_rejoined(&enc, active);

    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let writes = writes.lock().unwrap().clone();

    for (what, cut) in &cuts {
        let t = takeover(&writes, *cut);
        if t.is_none() {
            let after: Vec<_> = writes
                .iter()
                .filter(|w| w.sent > *cut)
                .map(|w| (w.sent.duration_since(*cut).as_millis(), w.status))
                .collect();
            eprintln!("writes after {what}: {after:?}");
        }
        eprintln!("takeover after {what}: {t:?} (last acknowledged write → first acknowledged)");
        assert!(t.is_some(), "no acknowledged write on both sides of {what}");
    }
    // Every acknowledged write is there, at its eTag or later; the session still works.
    let acked: Vec<_> = writes
        .iter()
        .filter(|w| w.status.is_some_and(|s| (200..300).contains(&s)))
        .cloned()
        .collect();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );
    let t = token.clone();
    let listed = in_ns(&enc.client_ns(), move || {
        let c = client();
        let end = Instant::now() + LIMIT;
        let r = loop {
            match c
                .get(format!(
                    "https://{VIP}:{API_PORT}/rest/plan-scripts?count=-1"
                ))
                .header("X-API-Version", "1000")
                .header("auth", &t)
                .send()
            {
                Ok(r) => break r,
                Err(e) if Instant::now() > end => panic!("the virtual IP does not answer: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        assert_eq!(
            r.status(),
            200,
            "the session opened before the failovers is gone"
        );
        r.json::<serde_json::Value>().unwrap()
    });
    let members = listed["members"].as_array().unwrap();
    for w in &acked {
        let m = members
            .iter()
            .find(|m| m["name"] == w.name.as_str())
            .unwrap_or_else(|| panic!("acknowledged write {} is lost", w.name));
        if let (Some(acked), Some(now)) = (&w.etag, m["eTag"].as_str()) {
            let (a, n): (u64, u64) = (acked.parse().unwrap_or(0), now.parse().unwrap_or(0));
            assert!(
                n >= a,
                "{}: eTag {now} is older than the acknowledged {acked}",
                w.name
            );
        }
    }
    eprintln!(
        "{} writes, {} acknowledged, all present; {} refused or unanswered during takeovers",
        writes.len(),
        acked.len(),
        writes.len() - acked.len()
    );
    observer.never_two_actives();
    // The pair is whole again: no active alert.
    let t = token.clone();
    let end = Instant::now() + LIMIT;
    loop {
        let t = t.clone();
        let active_alerts = in_ns(&enc.client_ns(), move || {
            let v: serde_json::Value = client()
                .get(format!(
                    "https://{VIP}:{API_PORT}/rest/alerts?filter=alertState='Active'"
                ))
                .header("X-API-Version", "1000")
                .header("auth", &t)
                .send()
                .unwrap()
                .json()
                .unwrap();
            v["count"].as_i64().unwrap_or(-1)
        });
        if active_alerts == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "alerts did not clear: {active_alerts}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
