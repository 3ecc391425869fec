//! Deploys whose plan scripts are written to hurt the appliance, through the REST API with an
//! in-process storaged: each ends (never blocks deployd), says what happened, keeps its
//! activity log with its task, leaves nothing behind, and the next normal deploy succeeds.
//! Cancel of running and queued deploys, and of a deploy by deleting its profile.
//! Needs root (plan runs attach volumes); skips with a reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::deploy::{created_uri, have_tools, is_root, linux_golden_image_with, register};
use common::redfish::RedfishDouble;
use common::{Api, TestServer};
use serde_json::{Value, json};

/// A golden image (ext4 root on `/dev/sda2`) whose root holds a FIFO at `/pipe`, and a
/// build plan per script in `scripts`; returns the deployment plans' URIs, in order.
fn plans(api: &Api, dir: &std::path::Path, scripts: &[(&str, &str)]) -> Vec<String> {
    let raw = linux_golden_image_with(dir, |tree| {
        nix::unistd::mkfifo(
            &tree.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
    });
    let t = api.wait_task(api.upload("/rest/golden-images?name=hostile", "hostile.raw", raw, &[]));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let gi = t["associatedResource"]["resourceUri"]
        .as_str()
        .unwrap()
        .to_string();
    scripts
        .iter()
        .map(|(name, content)| {
            let ps = created_uri(api.post(
                "/rest/plan-scripts",
                &json!({"name": name, "planType": "deploy", "content": content}),
            ));
            let bp = created_uri(api.post(
                "/rest/build-plans",
                &json!({"name": name, "oeBuildPlanType": "deploy",
                        "buildStep": [{"serialNumber": "1", "planScriptUri": ps, "parameters": null}],
                        "customAttributes": []}),
            ));
            created_uri(api.post(
                "/rest/deployment-plans",
                &json!({"name": name, "oeBuildPlanURI": bp, "goldenImageURI": gi, "hpProvided": false}),
            ))
        })
        .collect()
}

const NORMAL: &str = "mount /dev/sda2 /\nwrite /etc/hostname \"ok\\n\"\n";

fn can_run() -> bool {
    is_root() && have_tools(&["sfdisk", "mkfs.vfat", "mkfs.ext4"])
}

/// Starts a deploy of `plan` on a new compute module; returns the task's location.
fn deploy(api: &Api, redfish: &RedfishDouble, name: &str, bay: u8, plan: &str) -> String {
    let hw = register(api, name, &format!("10.0.1.{bay}"), redfish);
    let r = api.post(
        "/rest/server-profiles",
        &json!({"name": name, "serverHardwareUri": hw,
                "osDeploymentSettings": {"osDeploymentPlanUri": plan, "osCustomAttributes": []}}),
    );
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Waits until the task at `location` says `what` in its status.
fn wait_for_status(api: &Api, location: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = api.get_json(location);
        if t["taskStatus"].as_str().unwrap_or_default().contains(what) {
            return t;
        }
        assert!(Instant::now() < deadline, "never {what:?}: {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The API answers while a run misbehaves.
fn assert_responsive(api: &Api) {
    let start = Instant::now();
    assert_eq!(api.get("/rest/version").status(), 200);
    assert_eq!(api.get("/rest/server-profiles").status(), 200);
    eprintln!("API answered in {:?} during a hostile run", start.elapsed());
}

fn cancel(api: &Api, location: &str) -> reqwest::blocking::Response {
    api.put(location, &json!({"taskState": "Cancelling"}))
}

/// No OS volume, record or storaged volume is left of failed deploys.
fn assert_nothing_left(s: &TestServer, api: &Api, volumes_before: usize) {
    assert_eq!(
        s.volumes().len(),
        volumes_before,
        "volumes left: {:?}",
        s.volumes()
    );
    assert_eq!(api.get_json("/rest/os-volumes")["total"], 0);
}

fn assert_next_deploy_works(api: &Api, redfish: &RedfishDouble, plan: &str, bay: u8) {
    let loc = deploy(api, redfish, &format!("normal{bay}"), bay, plan);
    let t = api.wait_task_at(&loc);
    assert_eq!(t["taskState"], "Completed", "{t}");
}

#[test]
fn a_fifo_fails_the_deploy_by_name_and_its_log_stays_with_the_task() {
    if !can_run() {
        return;
    }
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    let hostile = "mount /dev/sda2 /\n!mkfifo ./f\n-upload ./f /etc/x\ncat /pipe\n";
    let [bad, normal] = plans(&api, dir.path(), &[("fifo", hostile), ("normal", NORMAL)])
        .try_into()
        .unwrap();
    let redfish = RedfishDouble::start();
    let volumes_before = s.volumes().len();
    let start = Instant::now();
    let t = api.wait_task_at(&deploy(&api, &redfish, "fifo", 1, &bad));
    eprintln!("the FIFO deploy failed in {:?}", start.elapsed());
    assert_eq!(t["taskState"], "Error", "{t}");
    let status = t["taskStatus"].as_str().unwrap();
    assert!(
        status.contains("/pipe: is a FIFO (named pipe), not a regular file"),
        "{status}"
    );
    // The run's log: its end in taskOutput, all of it at /rest/tasks/{id}/log.
    let output = t["taskOutput"].to_string();
    assert!(output.contains("f: is a FIFO (named pipe)"), "{output}");
    let id = t["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    let action = t["taskErrors"][0]["recommendedActions"][0]
        .as_str()
        .unwrap();
    assert!(
        action.contains(&format!("/rest/tasks/{id}/log")),
        "{action}"
    );
    let log = api.get(&format!("/rest/tasks/{id}/log"));
    assert_eq!(log.status(), 200);
    let log = log.text().unwrap();
    assert!(
        log.contains("!mkfifo ./f") && log.contains("cat /pipe"),
        "{log}"
    );
    assert_nothing_left(&s, &api, volumes_before);
    // The profile can be deleted, and the next deploy works.
    let p = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    assert_eq!(p["state"], "Error");
    let uri = p["uri"].as_str().unwrap();
    assert_eq!(api.wait_task(api.delete(uri))["taskState"], "Completed");
    assert_next_deploy_works(&api, &redfish, &normal, 2);
}

#[test]
fn a_running_deploy_is_cancelled_within_seconds() {
    if !can_run() {
        return;
    }
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    let stuck = "mount /dev/sda2 /\n!echo started; sleep 100000\nwrite /etc/never \"x\"\n";
    let [stuck, normal] = plans(&api, dir.path(), &[("stuck", stuck), ("normal", NORMAL)])
        .try_into()
        .unwrap();
    let redfish = RedfishDouble::start();
    let volumes_before = s.volumes().len();
    let loc = deploy(&api, &redfish, "stuck", 3, &stuck);
    wait_for_status(&api, &loc, "Running build plan");
    std::thread::sleep(Duration::from_millis(500));
    assert_responsive(&api);
    let start = Instant::now();
    let r = cancel(&api, &loc);
    assert_eq!(r.status(), 200);
    let t: Value = r.json().unwrap();
    assert!(
        matches!(t["taskState"].as_str(), Some("Stopping" | "Terminated")),
        "{t}"
    );
    let t = api.wait_task_at(&loc);
    eprintln!("cancel took {:?}", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t["taskState"], "Terminated", "{t}");
    assert_eq!(t["stateReason"], "Cancelled by Administrator");
    assert_eq!(t["isCancellable"], false);
    assert_eq!(t["taskErrors"][0]["errorCode"], "TASK_CANCELLED");
    assert!(t["taskOutput"].to_string().contains("started"), "{t}");
    assert_nothing_left(&s, &api, volumes_before);
    let p = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    assert_eq!(p["state"], "Error");
    // Cancelling again, or an ended task, is refused and said why.
    let r = cancel(&api, &loc);
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("TASK_ENDED"));
    assert_next_deploy_works(&api, &redfish, &normal, 4);
    // A task that is not a deploy or capture cannot be cancelled; bad requests are named.
    let tasks = api.get_json("/rest/tasks");
    let done = tasks["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskState"] == "Completed")
        .unwrap();
    let r = cancel(&api, done["uri"].as_str().unwrap());
    assert_eq!(r.status(), 409);
    let r = api.put(&loc, &json!({"taskState": "Completed"}));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Cancelling"));
}

#[test]
fn a_queued_deploy_shows_its_place_and_is_cancelled_at_once() {
    if !can_run() {
        return;
    }
    let s = TestServer::start_configured(|c| c.max_concurrent_runs = 1);
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    let stuck = "mount /dev/sda2 /\n!sleep 100000\n";
    let [stuck, normal] = plans(&api, dir.path(), &[("stuck", stuck), ("normal", NORMAL)])
        .try_into()
        .unwrap();
    let redfish = RedfishDouble::start();
    let volumes_before = s.volumes().len();
    let running = deploy(&api, &redfish, "holder", 5, &stuck);
    wait_for_status(&api, &running, "Running build plan");
    let queued = deploy(&api, &redfish, "queued", 6, &normal);
    let t = wait_for_status(&api, &queued, "in the queue");
    assert!(
        t["taskStatus"]
            .as_str()
            .unwrap()
            .contains("1st in the queue (1 plan runs going)"),
        "{t}"
    );
    let start = Instant::now();
    assert_eq!(cancel(&api, &queued).status(), 200);
    let t = api.wait_task_at(&queued);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t["taskState"], "Terminated", "{t}");
    // The running one was not touched; cancelling it frees the slot for the next deploy.
    assert_eq!(api.get_json(&running)["taskState"], "Running");
    assert_eq!(cancel(&api, &running).status(), 200);
    assert_eq!(api.wait_task_at(&running)["taskState"], "Terminated");
    assert_nothing_left(&s, &api, volumes_before);
    assert_next_deploy_works(&api, &redfish, &normal, 7);
}

#[test]
fn deleting_a_profile_cancels_its_deploy() {
    if !can_run() {
        return;
    }
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    let [stuck] = plans(
        &api,
        dir.path(),
        &[("stuck", "mount /dev/sda2 /\n!sleep 100000\n")],
    )
    .try_into()
    .unwrap();
    let redfish = RedfishDouble::start();
    let volumes_before = s.volumes().len();
    let loc = deploy(&api, &redfish, "doomed", 8, &stuck);
    let t = wait_for_status(&api, &loc, "Running build plan");
    let profile = t["associatedResource"]["resourceUri"]
        .as_str()
        .unwrap()
        .to_string();
    // Changing it is refused, saying how to cancel.
    let r = api.put(&profile, &json!({"name": "renamed"}));
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("cancel"));
    let start = Instant::now();
    let d = api.wait_task(api.delete(&profile));
    assert_eq!(d["taskState"], "Completed", "{d}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(api.get(&profile).status(), 404);
    let t = api.get_json(&loc);
    assert_eq!(t["taskState"], "Terminated", "{t}");
    assert_nothing_left(&s, &api, volumes_before);
}

#[test]
fn a_run_over_its_wall_clock_fails_and_the_next_deploy_works() {
    if !can_run() {
        return;
    }
    let s = TestServer::start_configured(|c| c.run_limits.timeout = Duration::from_secs(3));
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    let slow = "mount /dev/sda2 /\n-!sleep 100000\n-!sleep 100000\n";
    let [slow, normal] = plans(&api, dir.path(), &[("slow", slow), ("normal", NORMAL)])
        .try_into()
        .unwrap();
    let redfish = RedfishDouble::start();
    let start = Instant::now();
    let t = api.wait_task_at(&deploy(&api, &redfish, "slow", 9, &slow));
    assert_eq!(t["taskState"], "Error", "{t}");
    assert!(
        t["taskStatus"]
            .as_str()
            .unwrap()
            .contains("wall-clock limit of 3 s"),
        "{t}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert_next_deploy_works(&api, &redfish, &normal, 10);
}

/// Deploys that run side by side, each starting sandboxed programs while the others finish,
/// all have every write on their volume when their task completes (a sandbox starting at the
/// moment another run unmounts once kept that run's filesystem alive past its unmount, and the
/// run's last writes never reached its volume).
#[test]
fn side_by_side_deploys_keep_every_write() {
    if !can_run() || !have_tools(&["debugfs"]) {
        return;
    }
    let s = TestServer::start_configured(|c| c.max_concurrent_runs = 6);
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    // Runs of different lengths, so that each one's unmount falls among the others' sandboxes.
    let scripts: Vec<(String, String)> = (0..6)
        .map(|i| {
            let busy = "!true\n".repeat(8 + 3 * i);
            (
                format!("busy{i}"),
                format!("mount /dev/sda2 /\n{busy}write /etc/hostname \"written {i}\\n\"\n"),
            )
        })
        .collect();
    let named: Vec<(&str, &str)> = scripts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let plans = plans(&api, dir.path(), &named);
    let redfish = RedfishDouble::start();
    for round in 0..3u8 {
        let tasks: Vec<String> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let bay = 20 + round * 6 + i as u8;
                deploy(&api, &redfish, &format!("r{round}n{i}"), bay, plan)
            })
            .collect();
        for (i, loc) in tasks.iter().enumerate() {
            let t = api.wait_task_at(loc);
            assert_eq!(t["taskState"], "Completed", "{t}");
            let p = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
            let volume = p["bootTarget"]["exportName"].as_str().unwrap();
            let files = common::deploy::ext4_files(&s, volume, 1, &["/etc/hostname"]);
            assert_eq!(
                files,
                [format!("written {i}\n")],
                "{volume} of round {round}"
            );
        }
    }
}

/// A capture is cancelled as a deploy is: its clone and golden volume removed, no golden image
/// recorded, the OS volume it captured from untouched, the task `Terminated`.
#[test]
fn a_running_capture_is_cancelled_and_leaves_no_golden_image() {
    if !can_run() {
        return;
    }
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let dir = tempfile::tempdir().unwrap();
    let [normal] = plans(&api, dir.path(), &[("normal", NORMAL)])
        .try_into()
        .unwrap();
    let redfish = RedfishDouble::start();
    let t = api.wait_task_at(&deploy(&api, &redfish, "source", 40, &normal));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let p = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    let os_uri = p["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .unwrap()
        .to_string();
    let ps = created_uri(api.post(
        "/rest/plan-scripts",
        &json!({"name": "slow capture", "planType": "capture",
                "content": "mount /dev/sda2 /\n!sleep 100000\n"}),
    ));
    let bp = created_uri(api.post(
        "/rest/build-plans",
        &json!({"name": "slow capture", "oeBuildPlanType": "capture",
                "buildStep": [{"serialNumber": "1", "planScriptUri": ps, "parameters": null}],
                "customAttributes": []}),
    ));
    let golden_before = api.get_json("/rest/golden-images")["total"].clone();
    let volumes_before = s.volumes().len();
    let r = api.post(
        "/rest/golden-images",
        &json!({"name": "never", "imageCapture": true, "osVolumeURI": os_uri, "buildPlanUri": bp}),
    );
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let running = wait_for_status(&api, &loc, "Running capture build plan");
    assert_eq!(running["isCancellable"], true);
    assert_eq!(cancel(&api, &loc).status(), 200);
    let t = api.wait_task_at(&loc);
    assert_eq!(t["taskState"], "Terminated", "{t}");
    assert_eq!(api.get_json("/rest/golden-images")["total"], golden_before);
    // The snapshot under the OS volume stays (it is the volume's content); nothing else does.
    let names: Vec<String> = s.volumes().into_iter().map(|v| v.record.name).collect();
    assert!(
        names.iter().all(|n| !n.starts_with("capture-clone-")),
        "{names:?}"
    );
    assert!(s.volumes().len() <= volumes_before + 1, "{names:?}");
    assert_eq!(api.get_json(&os_uri)["exportState"], "Exported");
}
