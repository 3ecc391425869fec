//! Scenario failover-management: two appliance VMs and the witness (run here, by the
//! harness) on a bridged management network. The appliances are paired through the API
//! (join tokens), restart as pair members, and the witness joins; then the active node's
//! QEMU is killed (a pulled power cord). The API answers again on the management virtual IP
//! (the time from the kill to the first acknowledged write is printed, and recorded for
//! `make bench`), with every write acknowledged before; the killed appliance boots again
//! and rejoins as the standby, and the pair's alert about it clears. Under TCG this asserts
//! correctness only: no write lost, never two active nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamer_vm::appliance::{Appliance, ImageFiles};
use streamer_vm::enclosure::Enclosure;
use streamer_vm::pair::{
    BOOT, NAMES, VIP, WITNESS, address, call, login, multicall, open_alerts, pair_up, roles,
    start_appliance, url,
};

fn start(enc: &Enclosure, work: &std::path::Path, image: &ImageFiles, i: usize) -> Appliance {
    start_appliance(enc, work, image, i, 2048)
}

fn plan_script(name: &str) -> Value {
    json!({"name": name, "type": "PlanScript", "planType": "deploy", "content": "echo hi\n",
           "description": ""})
}

#[test]
fn failover_management() {
    let image = ImageFiles::locate().unwrap();
    assert!(
        multicall().exists(),
        "{} is missing: build the image first (`make image`)",
        multicall().display()
    );
    let work = common::Workdir::new("failover-");
    let dir = work.path();
    let enc = Enclosure::new().unwrap();
    enc.host_address(&format!("{WITNESS}/24")).unwrap();

    // Two single appliances.
    let mut vms: Vec<Appliance> = (0..2).map(|i| start(&enc, &dir, &image, i)).collect();
    let passwords: Vec<String> = vms
        .iter_mut()
        .map(|vm| {
            vm.wait_ready(BOOT)
                .unwrap()
                .password
                .expect("a first-start password")
        })
        .collect();
    let a = address(0);
    let ta = login(&enc, &a, &passwords[0], BOOT);
    let (st, _) = call(
        &enc,
        "POST",
        url(&a, "/rest/plan-scripts"),
        Some(ta),
        Some(plan_script("made-before-pairing")),
    )
    .unwrap();
    assert_eq!(st, 201);

    // Pairing: tokens on A, B joins; both restart as pair members; the witness joins.
    let (_witness, active) = pair_up(&enc, &dir, &mut vms, &passwords, false);
    // The pair answers on the virtual IP, with A's administrator and artifacts.
    let token = login(&enc, VIP, &passwords[0], BOOT);
    let mut acked = vec!["made-before-pairing".to_string()];
    for n in 0..3 {
        let name = format!("before-the-kill-{n}");
        let (st, v) = call(
            &enc,
            "POST",
            url(VIP, "/rest/plan-scripts"),
            Some(token.clone()),
            Some(plan_script(&name)),
        )
        .unwrap();
        assert_eq!(st, 201, "{v}");
        acked.push(name);
    }

    // The power cord of the active node.
    let cut = Instant::now();
    vms[active].vm.kill();
    let mut tries = 0;
    let takeover = loop {
        tries += 1;
        let name = format!("after-the-kill-{tries}");
        if let Some((201, _)) = call(
            &enc,
            "POST",
            url(VIP, "/rest/plan-scripts"),
            Some(token.clone()),
            Some(plan_script(&name)),
        ) {
            acked.push(name);
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < BOOT,
            "no write acknowledged on the virtual IP after the kill"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    common::record(
        "failover-management takeover (TCG, host s)",
        takeover.as_secs_f64(),
    );
    // The survivor took the write: the nodes list says so too, and never two actives.
    let survivor = 1 - active;
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let r = roles(&enc, &token);
        assert!(
            r.iter().filter(|(_, role)| role == "Active").count() <= 1,
            "{r:?}"
        );
        if r.iter()
            .any(|(n, role)| n == NAMES[survivor] && role == "Active")
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "{} is not reported active: {r:?}",
            NAMES[survivor]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every acknowledged write is there, with the same session.
    for name in &acked {
        let (st, v) = call(
            &enc,
            "GET",
            url(
                VIP,
                &format!("/rest/plan-scripts?filter=%22name%3D%27{name}%27%22"),
            ),
            Some(token.clone()),
            None,
        )
        .unwrap();
        assert_eq!((st, v["count"].as_u64()), (200, Some(1)), "{name}: {v}");
    }

    // The dead node boots again and rejoins as the standby; the alert about it clears.
    drop(vms.remove(active));
    let mut back = start(&enc, &dir, &image, active);
    back.wait_ready(BOOT).unwrap();
    let end = Instant::now() + BOOT;
    loop {
        let r = roles(&enc, &token);
        assert!(
            r.iter().filter(|(_, role)| role == "Active").count() <= 1,
            "{r:?}"
        );
        let rejoined = r
            .iter()
            .any(|(n, role)| n == NAMES[active] && role == "Standby");
        let open = open_alerts(&enc, &token, NAMES[active]).unwrap_or(1);
        if rejoined && open == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{} did not rejoin: {r:?}, {open} alert(s) about it",
            NAMES[active]
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "failover-management: API back on the virtual IP {:.1} s after the kill (TCG)",
        takeover.as_secs_f64()
    );
}
