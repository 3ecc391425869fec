//! Scenario deploy-linux: a real Debian golden image (mmdebstrap: systemd, a kernel, a UKI
//! on an ESP) uploaded with a plan that sets the hostname, a static address on the
//! enclosure network and a user; two compute modules boot from their OS volumes over NBD
//! to a login prompt with their own hostnames and answer ping on their addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use streamer_vm::rig::{Rig, guest_ip, module_mac};
use streamer_vm::{debian, linux};

#[test]
fn deploy_linux_two_modules_boot_to_login_and_answer_ping() {
    let golden = debian::golden_image(&common::cache_dir()).unwrap();
    let work = common::Workdir::new("deploy-linux-");
    let rig = Rig::start(&work.path(), 2).unwrap();
    let t0 = Instant::now();
    let gi = linux::upload_golden_image(&rig.api, "debian12", &golden).unwrap();
    common::record(
        "deploy-linux: golden image upload (832 MiB raw, gzip)",
        t0.elapsed().as_secs_f64(),
    );
    let plan = linux::deployment_plan(&rig.api, &gi).unwrap();

    let mut started = Vec::new();
    for i in 0..2 {
        let host = format!("node{}", i + 1);
        let values = linux::values(&host, &guest_ip(i), &module_mac(i)).unwrap();
        started.push(Instant::now());
        let t = rig.deploy(i, &host, &plan, values).unwrap();
        assert_eq!(t["taskState"], "Completed", "{t}");
        eprintln!(
            "{host}: deploy task {:.1} s",
            started[i].elapsed().as_secs_f64()
        );
    }
    for (i, m) in rig.modules.iter().enumerate() {
        let host = format!("node{}", i + 1);
        m.expect(&format!(r"\n{host} login: "), Duration::from_secs(900))
            .unwrap();
        common::record(
            &format!("deploy-linux: deploy request → login prompt ({host}, two at once)"),
            started[i].elapsed().as_secs_f64(),
        );
    }
    for i in 0..2 {
        let ip = guest_ip(i);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !rig.enclosure.ping(&ip, 2) {
            if Instant::now() > deadline {
                let m = &rig.modules[i];
                m.login(linux::USER, linux::PASSWORD).unwrap();
                let diag = m.shell(
                    "ip -br link; ip -br addr; ip route; cat /etc/network/interfaces; true",
                    Duration::from_secs(60),
                );
                panic!("{ip} does not answer ping; in the guest: {diag:?}");
            }
        }
    }
    // Each console shows only its own hostname.
    let one = rig.modules[0].console(|c| c.text()).unwrap();
    assert!(!one.contains("node2 login"), "node1's console shows node2");
}
