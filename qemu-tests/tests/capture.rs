//! Scenario capture: on deployed node 1, which boots through its NIC's firmware over
//! iSCSI, the test writes a marker file and shuts the node down with its power button; a
//! capture plan removes the hostname, machine-id, SSH host keys and initiator name into a
//! new golden image; node 3, deployed from it over NBD, boots with the marker, a new
//! machine-id, its own hostname and its own host key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use streamer_vm::compute::ModuleBoot;
use streamer_vm::linux::{PASSWORD, USER};
use streamer_vm::rig::Rig;
use streamer_vm::{debian, linux};

const MARKER: &str = "captured-from-node1";

#[test]
fn capture_generalizes_and_node3_boots_with_the_marker() {
    let golden = debian::golden_image(&common::cache_dir()).unwrap();
    let work = common::Workdir::new("capture-");
    let boots = [ModuleBoot::Iscsi, ModuleBoot::Nbd];
    let rig = Rig::start(&work.path(), &boots).unwrap();
    let gi = linux::upload_golden_image(&rig.api, "debian12", &golden).unwrap();
    let plan = linux::deployment_plan(&rig.api, &gi, boots[0]).unwrap();
    let long = Duration::from_secs(900);
    let t = Duration::from_secs(60);

    // Node 1: deploy, log in, leave a marker, power off with the power button.
    let values = linux::values("node1", &rig.os_network(0)).unwrap();
    let task = rig.deploy(0, "node1", &plan, values).unwrap();
    let profile_uri = task["associatedResource"]["resourceUri"].as_str().unwrap();
    let n1 = &rig.modules[0];
    n1.expect(r"\nnode1 login: ", long).unwrap();
    n1.login(USER, PASSWORD).unwrap();
    let id1 = n1
        .shell("cat /etc/machine-id", t)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(id1.len(), 32, "{id1:?}");
    n1.shell(&format!("echo {MARKER} > ~/marker && sync"), t)
        .unwrap();
    n1.shut_down(Duration::from_secs(300)).unwrap();

    // Capture node 1's OS volume with the generalizing plan.
    let profile = rig.api.get_json(profile_uri).unwrap();
    let os_volume = profile["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .unwrap();
    let capture = linux::capture_plan(&rig.api).unwrap();
    let started = Instant::now();
    let task = rig
        .api
        .wait_task(
            rig.api
                .post(
                    "/rest/golden-images",
                    &json!({"name": "node1-captured", "imageCapture": true,
                            "osVolumeURI": os_volume, "buildPlanUri": capture}),
                )
                .unwrap(),
            long,
        )
        .unwrap();
    common::record(
        "capture: capture request → golden image ready",
        started.elapsed().as_secs_f64(),
    );
    let captured = task["associatedResource"]["resourceUri"].as_str().unwrap();

    // Node 3 (in bay 2) from the captured image.
    let plan3 = linux::deployment_plan(&rig.api, captured, boots[1]).unwrap();
    let values = linux::values("node3", &rig.os_network(1)).unwrap();
    let started = Instant::now();
    rig.deploy(1, "node3", &plan3, values).unwrap();
    let n3 = &rig.modules[1];
    n3.expect(r"\nnode3 login: ", long).unwrap();
    common::record(
        "capture: deploy request → login prompt (node3, from the captured image)",
        started.elapsed().as_secs_f64(),
    );
    n3.login(USER, PASSWORD).unwrap();
    assert_eq!(n3.shell("cat ~/marker", t).unwrap().trim(), MARKER);
    assert_eq!(n3.shell("hostname", t).unwrap().trim(), "node3");
    let id3 = n3
        .shell("cat /etc/machine-id", t)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(id3.len(), 32, "{id3:?}");
    assert_ne!(id3, id1, "node3 kept node1's machine-id");
    assert_eq!(
        n3.shell("cat /etc/ssh/ssh_host_ed25519_key", t)
            .unwrap()
            .trim(),
        "host key of node3"
    );
    assert!(rig.enclosure.ping(&rig.os_address(1), 5));
}
