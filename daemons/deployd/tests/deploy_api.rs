//! Compute modules, server profiles and deploys through the REST API, with an in-process
//! storaged and a Redfish test double.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::redfish::RedfishDouble;
use common::{Api, TestServer};
use serde_json::{Value, json};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/bundles"
);
const DEV_2017: &str = "HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip";

fn corpus_file(name: &str) -> Option<Vec<u8>> {
    let p = PathBuf::from(CORPUS).join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("skipped: {} is missing", p.display());
            None
        }
    }
}

/// Uploads and extracts a bundle.
fn import_bundle(api: &Api, name: &str, bytes: Vec<u8>) {
    let t = api.wait_task(api.upload("/rest/artifact-bundles", name, bytes, &[]));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let uri = t["associatedResource"]["resourceUri"].as_str().unwrap();
    let r = api
        .req(
            reqwest::Method::PUT,
            &format!("{uri}?extract=true&forceImport=true"),
        )
        .header("Content-Type", "text/plain;charset=UTF-8")
        .send()
        .unwrap();
    assert_eq!(api.wait_task(r)["taskState"], "Completed");
}

fn uri_named(api: &Api, collection: &str, name: &str) -> String {
    let list = api.get_json(collection);
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} in {collection}"))["uri"]
        .as_str()
        .unwrap()
        .to_string()
}

fn register(api: &Api, name: &str, ip: &str, redfish: &RedfishDouble) -> String {
    let r = api.post(
        "/rest/server-hardware",
        &json!({
            "name": name,
            "macAddresses": ["52:54:00:12:34:56", "52:54:00:12:34:57"],
            "deploymentIpv4": ip,
            "redfish": {"address": redfish.address, "username": "admin", "password": "s3cret-pw"},
        }),
    );
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string()
}

fn developer_values() -> Value {
    json!([
        {"name": "ExampleString1", "value": "first value"},
        {"name": "ExampleString2", "value": "second value"},
        {"name": "ExampleNumber1", "value": "42"},
        {"name": "ExampleIPv4Address", "value": "10.1.2.3"},
        {"name": "ExampleFQDN", "value": "host.example.com"},
        {"name": "ExamplePassword", "value": "pw12345"},
    ])
}

#[test]
fn compute_modules_hide_credentials_and_power_through_redfish() {
    let s = TestServer::start();
    let api = s.login(800);
    let redfish = RedfishDouble::start();
    let uri = register(&api, "bay1", "10.0.0.11", &redfish);
    for doc in [api.get_json(&uri), api.get_json("/rest/server-hardware")] {
        let text = doc.to_string();
        assert!(
            !text.contains("s3cret-pw") && !text.contains("\"admin\""),
            "{text}"
        );
    }
    let hw = api.get_json(&uri);
    assert_eq!(hw["powerState"], "Off");
    assert_eq!(hw["deploymentIpv4"], "10.0.0.11");
    let t = api.wait_task(api.put(
        &format!("{uri}/powerState"),
        &json!({"powerState": "On", "powerControl": "MomentaryPress"}),
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    assert_eq!(api.get_json(&uri)["powerState"], "On");
    let t = api.wait_task(api.put(
        &format!("{uri}/powerState"),
        &json!({"powerState": "Off", "powerControl": "PressAndHold"}),
    ));
    assert_eq!(t["taskState"], "Completed");
    assert_eq!(redfish.actions(), ["On", "ForceOff"]);
    // Basic authentication with the registered credentials.
    let auth = redfish.recorded.lock().unwrap().auth.clone();
    assert!(auth.iter().all(|a| a.starts_with("Basic ")) && !auth.is_empty());
    let r = api.put(
        &format!("{uri}/powerState"),
        &json!({"powerState": "Off", "powerControl": "Reset"}),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(api.delete(&uri).status(), 204);
}

#[test]
fn profile_attribute_values_are_checked_before_a_task_starts() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    import_bundle(&api, DEV_2017, dev);
    let redfish = RedfishDouble::start();
    let hw = register(&api, "bay2", "10.0.0.12", &redfish);
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24",
    );
    let volumes_before = s.volumes().len();
    let tasks_before = api.get_json("/rest/tasks")["total"].clone();
    let r = api.post(
        "/rest/server-profiles",
        &json!({
            "name": "bad", "serverHardwareUri": hw,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan, "osCustomAttributes": [
                {"name": "ExampleIPv4Address", "value": "10.1.2.300"},
                {"name": "ExampleFQDN", "value": "nodot"},
                {"name": "ExamplePassword", "value": "much-too-long-password"},
                {"name": "_Initiator1.ip", "value": "1.2.3.4"},
            ]},
        }),
    );
    assert_eq!(r.status(), 400);
    let m = r.text().unwrap();
    for name in [
        "ExampleIPv4Address",
        "ExampleFQDN",
        "ExamplePassword",
        "_Initiator1.ip",
    ] {
        assert!(m.contains(name), "{name} not named in {m}");
    }
    assert_eq!(api.get_json("/rest/tasks")["total"], tasks_before);
    assert_eq!(api.get_json("/rest/server-profiles")["total"], 0);
    assert_eq!(s.volumes().len(), volumes_before);
    let r = api.post(
        "/rest/server-profiles",
        &json!({"name": "p", "serverHardwareUri": "/rest/server-hardware/nope"}),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn a_failed_deploy_leaves_no_volume_and_no_export() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    import_bundle(&api, DEV_2017, dev);
    let redfish = RedfishDouble::start();
    let hw = register(&api, "bay3", "10.0.0.13", &redfish);
    // This plan fails on purpose: its DeploymentTesting attribute is a line of its own that
    // is not a command.
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "User - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24",
    );
    let volumes_before = s.volumes().len();
    let t = api.wait_task(api.post(
        "/rest/server-profiles",
        &json!({
            "name": "fails", "serverHardwareUri": hw, "powerOnAfterDeploy": true,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan, "osCustomAttributes": developer_values()},
        }),
    ));
    assert_eq!(t["taskState"], "Error", "{t}");
    let status = t["taskStatus"].as_str().unwrap();
    if is_root() {
        assert!(
            status.contains("line") && status.contains("Fail_OS_Deployment"),
            "{status}"
        );
    }
    assert_eq!(s.volumes().len(), volumes_before, "the clone was deleted");
    assert!(s.volumes().iter().all(|v| v.export.is_none()));
    assert_eq!(api.get_json("/rest/os-volumes")["total"], 0);
    let p = &api.get_json("/rest/server-profiles")["members"][0];
    assert_eq!(p["state"], "Error");
    assert!(p["osDeploymentSettings"]["osVolumeUri"].is_null());
    // Password values are never shown.
    assert!(!p.to_string().contains("pw12345"), "{p}");
    assert!(redfish.actions().is_empty(), "not powered on");
    // It can be deleted.
    let uri = p["uri"].as_str().unwrap().to_string();
    assert_eq!(api.wait_task(api.delete(&uri))["taskState"], "Completed");
}

#[test]
fn a_restart_deletes_os_volumes_left_deploying() {
    let s = TestServer::start_with_storage();
    let socket = s.state.config.storaged_socket.clone();
    s.block_on(async {
        let st = deployd::storage::Storage::new(&socket);
        st.create("os-volume-half", 1 << 20).await.unwrap();
        st.export_add("os-volume-half", &["127.0.0.1"])
            .await
            .unwrap();
        st.create("os-volume-done", 1 << 20).await.unwrap();
    });
    let new = |name: &str, vol: &str, deploying: Option<String>| {
        deployd::artifacts::os_volumes::create_os_volume_record(
            &s.state,
            &deployd::artifacts::os_volumes::NewOsVolume {
                name: name.into(),
                description: String::new(),
                storage_volume: vol.into(),
                deployment_plan_uri: None,
                golden_image_uri: None,
                server_profile_uri: None,
                deploying,
            },
        )
        .unwrap()
    };
    new("half", "os-volume-half", Some("t1".into()));
    let done = new("done", "os-volume-done", None);
    let dir = s.stop();
    let s = TestServer::start_with(dir, true);
    let api = s.login(800);
    let list = api.get_json("/rest/os-volumes");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["members"][0]["id"], done.as_str());
    let names: Vec<String> = s.volumes().into_iter().map(|v| v.record.name).collect();
    assert_eq!(names, ["os-volume-done"]);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: attaching OS volumes needs root");
    }
    root
}

/// The text of `path` in the first partition's FAT file system of storaged volume `volume`.
fn fat_file(s: &TestServer, volume: &str, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let out = std::fs::File::create(&raw).unwrap();
    let socket = s.state.config.storaged_socket.clone();
    let v = volume.to_string();
    s.block_on(async move {
        deployd::storage::Storage::new(&socket)
            .export_raw(&v, &out)
            .await
            .unwrap()
    });
    let table = std::process::Command::new("sfdisk")
        .arg("-J")
        .arg(&raw)
        .output()
        .unwrap();
    let t: Value = serde_json::from_slice(&table.stdout).unwrap();
    let p = &t["partitiontable"]["partitions"][0];
    let (start, size) = (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap());
    let bytes = std::fs::read(&raw).unwrap();
    let part = bytes[(start * 512) as usize..((start + size) * 512) as usize].to_vec();
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(part), fatfs::FsOptions::new()).unwrap();
    let mut f = fs
        .root_dir()
        .open_file(path.trim_start_matches('/'))
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f, &mut text).unwrap();
    text
}

#[test]
fn developer_bundle_deploys_captures_redeploys_and_deletes() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    if !is_root() {
        return;
    }
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    import_bundle(&api, DEV_2017, dev);
    let redfish = RedfishDouble::start();
    let hw = register(&api, "bay4", "10.0.0.14", &redfish);
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24",
    );
    let start = std::time::Instant::now();
    let t = api.wait_task(api.post(
        "/rest/server-profiles",
        &json!({
            "name": "dev1", "serverHardwareUri": hw, "powerOnAfterDeploy": true,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan, "osCustomAttributes": developer_values()},
        }),
    ));
    eprintln!("deploy took {:?}", start.elapsed());
    assert_eq!(t["taskState"], "Completed", "{t}");
    let profile = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    let os_uri = profile["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .unwrap()
        .to_string();
    let os = api.get_json(&os_uri);
    assert_eq!(os["exportState"], "Exported");
    assert_eq!(os["export"]["allow"], json!(["10.0.0.14/32"]));
    let target = &profile["bootTarget"];
    assert_eq!(target["protocol"], "nbd");
    let volume = target["exportName"].as_str().unwrap().to_string();
    let text = fat_file(&s, &volume, "/EFI/BOOT/message.txt");
    for want in [
        "ExampleString1: first value",
        "ExampleString3: Script Default",
        "ExampleNumber1: 42",
        "ExampleNumber2: 9999",
        "ExampleIPv4Address: 10.1.2.3",
        "ExampleFQDN: host.example.com",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert_eq!(redfish.actions(), ["On"]);
    let log = api.get(&format!(
        "/rest/os-volumes/archive/{}",
        os["id"].as_str().unwrap()
    ));
    assert!(log.text().unwrap().contains("build plan"));
    // In use: cannot be deleted directly.
    assert_eq!(api.delete(&os_uri).status(), 409);

    // Capture with the developer capture plan: the source is unchanged.
    let before = fat_file(&s, &volume, "/EFI/BOOT/message.txt");
    let capture = uri_named(
        &api,
        "/rest/build-plans",
        "HPE - Developer 1.0 - example UEFI capture - 2017-03-24",
    );
    let t = api.wait_task(api.post(
        "/rest/golden-images",
        &json!({"name": "captured", "imageCapture": true, "osVolumeURI": os_uri, "buildPlanUri": capture}),
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let gi = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    let generalized = fat_file(
        &s,
        gi["storageVolume"].as_str().unwrap(),
        "/EFI/BOOT/message.txt",
    );
    assert!(
        generalized.contains("has been generalized"),
        "{generalized}"
    );
    assert_eq!(fat_file(&s, &volume, "/EFI/BOOT/message.txt"), before);
    assert!(
        s.volumes()
            .iter()
            .all(|v| !v.record.name.starts_with("capture-clone-"))
    );

    // Re-deploy with new values: a new OS volume; the old one is deleted.
    let mut p = profile.clone();
    p["osDeploymentSettings"]["osCustomAttributes"][0]["value"] = json!("changed value");
    let t = api.wait_task(api.put(p["uri"].as_str().unwrap(), &p));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let p2 = api.get_json(p["uri"].as_str().unwrap());
    let new_volume = p2["bootTarget"]["exportName"].as_str().unwrap().to_string();
    assert_ne!(new_volume, volume);
    assert!(
        fat_file(&s, &new_volume, "/EFI/BOOT/message.txt")
            .contains("ExampleString1: changed value")
    );
    assert!(s.volumes().iter().all(|v| v.record.name != volume));
    assert_eq!(api.get_json("/rest/os-volumes")["total"], 1);

    // Delete: export and volume go.
    assert_eq!(
        api.wait_task(api.delete(p["uri"].as_str().unwrap()))["taskState"],
        "Completed"
    );
    assert_eq!(api.get_json("/rest/os-volumes")["total"], 0);
    assert!(
        s.volumes()
            .iter()
            .all(|v| v.record.name != new_volume && v.export.is_none())
    );
}
