//! Scenario failover (the design card's "failover on virtual hardware"): two appliance VMs
//! paired with a storage address each, the witness (run by the harness), and a Debian
//! compute module deployed through the pair's virtual IP, booted from its OS volume on the
//! pair's storage address with QEMU's NBD client (`reconnect-delay=30`, keep-alive,
//! `werror=stop,rerror=stop`: an I/O error would pause the VM and show). In the guest an
//! O_DIRECT write-then-verify loop runs (each 64 KiB block written with `dsync`, read back
//! with O_DIRECT, compared). The appliance serving the volume is killed (its QEMU process:
//! a pulled power cord). Asserted: the loop goes on and verifies every block, no
//! `BLOCK_IO_ERROR` and no `STOP` QMP event, the VM is running, no I/O error on the guest's
//! console, the API answers on the virtual IP; the killed appliance boots again, rejoins,
//! is resynced, and its alerts clear. Then the other appliance is killed and the same is
//! asserted. The longest gap in the guest's loop (the pause its I/O saw) is printed and
//! recorded for `make bench`; under TCG it is not asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamer_vm::api::Api;
use streamer_vm::appliance::{Appliance, ImageFiles};
use streamer_vm::compute::ComputeModule;
use streamer_vm::enclosure::Enclosure;
use streamer_vm::pair::{
    BOOT, NAMES, VIP, WITNESS, call, login, open_alerts, pair_up, roles, start_appliance,
    storage_ip, url,
};
use streamer_vm::redfish::RedfishDouble;
use streamer_vm::{debian, linux, rig};

/// This host's address on the enclosure network (its Redfish double, its API client).
const HOST: &str = "10.78.0.4";
/// The compute module's deployment address (its NBD connection's source).
const MODULE_IP: &str = "10.78.0.21";
const MODULE_MAC: &str = "52:54:00:78:00:21";
/// The deployed OS's own address on the enclosure network.
const GUEST_IP: &str = "10.78.0.121";
const MEMORY: u32 = 2560;

/// The guest's workload: until /dev/shm/stop exists, a random 64 KiB block written to one
/// of 64 slots of a file with O_DIRECT and dsync, read back with O_DIRECT and compared; a
/// timestamp per round; failures named. Its log is /dev/shm/wl.log.
const WORKLOAD: &str = "rm -f /dev/shm/stop; (i=0; while [ ! -e /dev/shm/stop ]; do \
    s=$((i%64)); head -c 65536 /dev/urandom > /dev/shm/b; \
    dd if=/dev/shm/b of=$HOME/w bs=64k count=1 seek=$s oflag=direct,dsync conv=notrunc \
    2>/dev/null || echo WFAIL $i; \
    dd if=$HOME/w of=/dev/shm/r bs=64k count=1 skip=$s iflag=direct 2>/dev/null \
    || echo RFAIL $i; cmp -s /dev/shm/b /dev/shm/r || echo MISMATCH $i; \
    date +%s.%N; i=$((i+1)); done; echo DONE $i) > /dev/shm/wl.log 2>&1 & true";

fn rounds(m: &ComputeModule) -> u64 {
    m.shell("grep -c '^[0-9]' /dev/shm/wl.log", Duration::from_secs(120))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn wait_rounds(m: &ComputeModule, at_least: u64, limit: Duration) -> u64 {
    let end = Instant::now() + limit;
    loop {
        let n = rounds(m);
        if n >= at_least {
            return n;
        }
        assert!(
            Instant::now() < end,
            "the guest's I/O loop is stuck at {n} rounds (wanted {at_least})"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Stops the loop; returns the longest gap between two rounds (s), asserting no failure.
fn stop_workload(m: &ComputeModule) -> f64 {
    m.shell("touch /dev/shm/stop", Duration::from_secs(60))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(300);
    while !m
        .shell("grep -c DONE /dev/shm/wl.log", Duration::from_secs(60))
        .unwrap_or_default()
        .contains('1')
    {
        assert!(Instant::now() < end, "the guest's loop did not stop");
        std::thread::sleep(Duration::from_secs(1));
    }
    let failures = m
        .shell(
            "grep -E 'FAIL|MISMATCH' /dev/shm/wl.log | head -5; echo END",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        !failures.contains("FAIL") && !failures.contains("MISMATCH"),
        "the guest's write-then-verify loop failed: {failures}"
    );
    let gap = m
        .shell(
            "awk '/^[0-9]/{ if (p) { d=$1-p; if (d>m) m=d }; p=$1 } \
             END { printf \"MAXGAP %.2f\\n\", m }' /dev/shm/wl.log",
            Duration::from_secs(60),
        )
        .unwrap();
    gap.lines()
        .find_map(|l| {
            l.strip_prefix("MAXGAP ")
                .and_then(|v| v.trim().parse().ok())
        })
        .expect("the loop's longest gap")
}

/// No sign of an I/O error anywhere: QMP events, the VM's status, the guest's console.
fn assert_no_io_error(m: &ComputeModule) {
    let (events, status) = m.qmp_events().unwrap();
    let bad: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "BLOCK_IO_ERROR" || e["event"] == "STOP")
        .collect();
    assert!(bad.is_empty(), "QMP events: {bad:?}");
    assert_eq!(status["status"], "running", "{status}");
    let console = m.console(|c| c.tail(200_000)).unwrap();
    assert!(
        !console.contains("I/O error") && !console.contains("blk_update_request"),
        "the guest's kernel saw an I/O error:\n{}",
        &console[console.len().saturating_sub(3000)..]
    );
}

/// GET of `path` on the virtual IP: the answer, or null if there was none.
fn vip_get(enc: &Enclosure, token: &str, path: &str) -> Value {
    call(enc, "GET", url(VIP, path), Some(token.into()), None)
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

/// Waits until the pair is whole again after `back` rejoined: both nodes listed, its
/// copies resynced (the storage redundant) and no active alert naming it.
fn wait_whole(enc: &Enclosure, token: &str, back: usize) {
    let end = Instant::now() + BOOT;
    loop {
        let r = roles(enc, token);
        assert!(
            r.iter().filter(|(_, role)| role == "Active").count() <= 1,
            "{r:?}"
        );
        let listed = r
            .iter()
            .any(|(n, role)| n == NAMES[back] && (role == "Standby" || role == "Active"));
        let storage = vip_get(enc, token, "/rest/appliance/storage");
        let open = open_alerts(enc, token, NAMES[back]).unwrap_or(1);
        if listed && storage["redundant"] == true && open == 0 {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} did not rejoin and resync: {r:?} {storage} ({open} alert(s))",
            NAMES[back]
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Waits (a few seconds: deployd looks every second) until the golden image at `uri` shows
/// `redundant` as `want`; else fails with the pair's storage status and the daemons' logs.
fn wait_image_redundant(
    enc: &Enclosure,
    token: &str,
    uri: &str,
    want: bool,
    within: Duration,
    vms: &mut [Option<Appliance>],
) {
    let end = Instant::now() + within;
    loop {
        let image = vip_get(enc, token, uri);
        if image["redundant"] == want {
            return;
        }
        if Instant::now() >= end {
            let storage = vip_get(enc, token, "/rest/appliance/storage");
            let logs: Vec<String> = vms
                .iter_mut()
                .flatten()
                .map(streamer_vm::pair::daemon_logs)
                .collect();
            panic!(
                "the golden image's redundant is not {want}: {image}\nstorage: {storage}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn failover() {
    let image = ImageFiles::locate().unwrap();
    let golden = debian::golden_image(&common::cache_dir()).unwrap();
    let work = common::Workdir::new("failover-storage-");
    let dir = work.path();
    let mut enc = Enclosure::new().unwrap();
    enc.host_address(&format!("{WITNESS}/24")).unwrap();
    enc.host_link(&format!("{HOST}/24")).unwrap();

    // Two single appliances, paired with a storage address each.
    let mut vms: Vec<Appliance> = (0..2)
        .map(|i| start_appliance(&enc, &dir, &image, i, MEMORY))
        .collect();

    let passwords: Vec<String> = vms
        .iter_mut()
        .map(|vm| vm.wait_ready(BOOT).unwrap().password.expect("a password"))
        .collect();
    let (_witness, _active) = pair_up(&enc, &dir, &mut vms, &passwords, true);
    // A killed appliance's slot empties (its tap goes with it) before it boots again.
    let mut vms: Vec<Option<Appliance>> = vms.into_iter().map(Some).collect();
    let api = Api::login(&format!("https://{VIP}"), "Administrator", &passwords[0]).unwrap();

    // The compute module, its Redfish double on this host, registered with the pair.
    let ns = enc.module_namespace(1, &format!("{MODULE_IP}/24")).unwrap();
    // Its TCP keep-alive: a request in flight when the server died has nothing left to
    // retransmit; a probe reaches the node that took the address over, which resets it.
    let sysctl = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "sysctl", "-w"])
        .args([
            "net.ipv4.tcp_keepalive_time=2",
            "net.ipv4.tcp_keepalive_intvl=1",
            "net.ipv4.tcp_keepalive_probes=3",
        ])
        .status()
        .unwrap();
    assert!(sysctl.success());
    let module = Arc::new(
        ComputeModule::new("bay1", MODULE_IP, Some(&ns), &dir)
            .with_nic(&enc.netns, "tapm1", MODULE_MAC)
            .riding_through(),
    );
    let double = RedfishDouble::start_on(
        "0.0.0.0",
        module.reset_handler(api.clone()),
        module.nic_firmware(),
    )
    .unwrap();
    let r = api
        .post(
            "/rest/server-hardware",
            &json!({
                "name": "bay1", "macAddresses": [MODULE_MAC], "deploymentIpv4": MODULE_IP,
                "redfish": {"address": double.address_at(HOST), "username": "admin",
                            "password": "redfish-pw"},
            }),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    let hw: Value = r.json().unwrap();
    let hw = hw["uri"].as_str().unwrap().to_owned();
    module.hardware_uri.set(hw.clone()).unwrap();

    // Deployed through the virtual IP: the golden image is ready only once both nodes hold
    // it; the OS volume boots from the active node's storage address.
    let gi = match linux::upload_golden_image(&api, "debian12", &golden) {
        Ok(gi) => gi,
        Err(e) => {
            let logs: Vec<String> = vms
                .iter_mut()
                .flatten()
                .map(streamer_vm::pair::daemon_logs)
                .collect();
            panic!("golden image upload: {e:#}\n{}", logs.join("\n"));
        }
    };
    let network = linux::OsNetwork::Static {
        ip: GUEST_IP.into(),
        mac: MODULE_MAC.into(),
    };
    let plan = linux::deployment_plan(&api, &gi, network.boot()).unwrap();
    let values = linux::values("failover1", &network).unwrap();
    let t = rig::deploy_profile(&api, &hw, "bay1-os", &plan, values).unwrap();
    assert_eq!(t["taskState"], "Completed", "{t}");
    let target = module.boot_target(&api).unwrap();
    let mut owner = (0..2)
        .find(|i| storage_ip(*i) == target.host)
        .unwrap_or_else(|| panic!("the boot target {} is no storage address", target.host));
    module
        .expect(r"\nfailover1 login: ", Duration::from_secs(900))
        .unwrap();
    module.login(linux::USER, linux::PASSWORD).unwrap();

    // Only a pair holding two current copies survives the loss of a node: under TCG the
    // golden image's import may have outrun the peer (then it and the OS volume made from
    // it are sent at the resync, which must end before the power cord is pulled, as an
    // operator would wait for the pair to show redundant).
    let token = login(&enc, VIP, &passwords[0], BOOT);
    wait_image_redundant(&enc, &token, &gi, true, BOOT, &mut vms);
    for kill in 0..2 {
        module.shell(WORKLOAD, Duration::from_secs(60)).unwrap();
        let before = wait_rounds(&module, 10, Duration::from_secs(300));
        // The power cord of the appliance serving the volume.
        let cut = Instant::now();
        vms[owner].as_mut().unwrap().vm.kill();
        wait_rounds(&module, before + 20, BOOT);
        let gap = stop_workload(&module);
        assert_no_io_error(&module);
        common::record(
            &format!(
                "failover: longest pause of the guest's O_DIRECT loop across kill {} (TCG)",
                kill + 1
            ),
            gap,
        );
        eprintln!(
            "failover: kill {}: {} killed; the guest's loop went on (longest gap {gap:.1} s, \
             {:.0} s after the kill)",
            kill + 1,
            NAMES[owner],
            cut.elapsed().as_secs_f64()
        );
        // The API answers on the virtual IP; the golden image has no current copy on the
        // killed node.
        let token = login(&enc, VIP, &passwords[0], BOOT);
        wait_image_redundant(&enc, &token, &gi, false, Duration::from_secs(30), &mut vms);
        // The killed appliance boots again, rejoins and is resynced; its alerts clear.
        let back = owner;
        drop(vms[back].take());
        let mut vm = start_appliance(&enc, &dir, &image, back, MEMORY);
        vm.wait_ready(BOOT).unwrap();
        vms[back] = Some(vm);
        wait_whole(&enc, &token, back);
        wait_image_redundant(&enc, &token, &gi, true, Duration::from_secs(30), &mut vms);
        // The survivor serves the volume now.
        owner = 1 - owner;
    }
}
