//! Compute modules, server profiles and deploys through the REST API, with an in-process
//! storaged and a Redfish test double.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::deploy::{
    created_uri, ext4_files, have_tools, is_root, linux_golden_image, partition_bytes, register,
};
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
        let st = deployd::services::storage::Storage::new(&socket);
        st.create("os-volume-half", 1 << 20).await.unwrap();
        st.export_add("os-volume-half", &["127.0.0.1"])
            .await
            .unwrap();
        st.create("os-volume-done", 1 << 20).await.unwrap();
        // One that cannot be deleted (it has a child) must not stop the others' cleanup.
        // (A frozen snapshot with a live layer over it.)
        st.create("stuck-child", 1 << 20).await.unwrap();
        st.snapshot("stuck-child", "os-volume-stuck").await.unwrap();
        st.create("os-volume-half2", 1 << 20).await.unwrap();
    });
    let new = |name: &str, vol: &str, deploying: Option<String>| {
        deployd::domain::os_volumes::create_record(
            &s.state.services,
            &deployd::domain::os_volumes::NewOsVolume {
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
    let stuck = new("stuck", "os-volume-stuck", Some("t0".into()));
    new("half", "os-volume-half", Some("t1".into()));
    let done = new("done", "os-volume-done", None);
    new("half2", "os-volume-half2", Some("t2".into()));
    let dir = s.stop();
    let s = TestServer::start_with(dir, true);
    let api = s.login(800);
    let list = api.get_json("/rest/os-volumes");
    let mut ids: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![done.as_str(), stuck.as_str()];
    want.sort();
    assert_eq!(ids, want, "{list}");
    let mut names: Vec<String> = s.volumes().into_iter().map(|v| v.record.name).collect();
    names.sort();
    assert_eq!(names, ["os-volume-done", "os-volume-stuck", "stuck-child"]);
}

/// The text of `path` in the first partition's FAT file system of storaged volume `volume`.
fn fat_file(s: &TestServer, volume: &str, path: &str) -> String {
    let part = partition_bytes(s, volume, 0);
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

const LINUX_SCRIPT: &str = r#"mount /dev/sda2 /
write /etc/hostname "@Hostname@\n"
upload -<<END /etc/network/interfaces
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address @ManagementNIC.ipaddress@
    netmask @ManagementNIC.netmask@
    gateway @ManagementNIC.gateway@
    hwaddress ether @ManagementNIC.mac@
END
write-append /etc/passwd "@UserName@:x:1000:1000::/home/@UserName@:/bin/sh\n"
write-append /etc/shadow "@UserName@:@UserPasswordHash@:19000:0:99999:7:::\n"
write /root/initial-password "@UserPassword@"
echo "user @UserName@ has initial password @UserPassword@"
unmount-all
"#;

const PASSWORD_HASH: &str = "$6$Zq8r2e1n$Hn0mQx4hL2dW7yTg9qVbZf5cR1aKs3Uo6iPj8eNl0tXw.D/yM2vB4cG7hF9kE1uJ3sA5zQ8wR6xT0pL2nY4mK.";
const USER_PASSWORD: &str = "Pl4n-Secret-77";

/// Uploads a golden image built here and makes plan script, build plan and deployment plan
/// for it through the API; returns the deployment plan's URI.
fn linux_deployment_plan(api: &Api, dir: &std::path::Path) -> String {
    let raw = linux_golden_image(dir);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let t = api.wait_task(api.upload(
        "/rest/golden-images?name=debian-ext4",
        "debian.gz",
        gz.finish().unwrap(),
        &[],
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let gi = t["associatedResource"]["resourceUri"]
        .as_str()
        .unwrap()
        .to_string();
    let ps = created_uri(api.post(
        "/rest/plan-scripts",
        &json!({"name": "linux personalize", "planType": "deploy", "content": LINUX_SCRIPT}),
    ));
    let bp = created_uri(api.post(
        "/rest/build-plans",
        &json!({"name": "linux deploy", "oeBuildPlanType": "deploy",
                "buildStep": [{"serialNumber": "1", "planScriptUri": ps, "parameters": null}],
                "customAttributes": [
            {"name": "Hostname", "type": "hostname", "value": "", "constraints": "{\"helpText\":\"\"}"},
            {"name": "ManagementNIC", "type": "nic", "value": null,
             "constraints": "{\"ipv4static\":true,\"ipv4dhcp\":false,\"ipv4disable\":false,\"parameters\":[\"ipaddress\",\"netmask\",\"gateway\",\"mac\"]}"},
            {"name": "UserName", "type": "string", "value": "ops", "constraints": "{}"},
            {"name": "UserPasswordHash", "type": "string", "value": "", "constraints": "{}"},
            {"name": "UserPassword", "type": "password", "value": "", "constraints": "{\"minlen\":\"8\",\"maxlen\":\"40\"}"},
        ]}),
    ));
    created_uri(api.post(
        "/rest/deployment-plans",
        &json!({"name": "linux dp", "oeBuildPlanURI": bp, "goldenImageURI": gi, "hpProvided": false}),
    ))
}

fn linux_values(host: &str, ip: &str) -> Value {
    json!([
        {"name": "Hostname", "value": host},
        {"name": "ManagementNIC.ipaddress", "value": ip},
        {"name": "ManagementNIC.netmask", "value": "255.255.255.0"},
        {"name": "ManagementNIC.gateway", "value": "10.20.0.1"},
        {"name": "ManagementNIC.mac", "value": "52:54:00:aa:bb:07"},
        {"name": "UserPasswordHash", "value": PASSWORD_HASH},
        {"name": "UserPassword", "value": USER_PASSWORD},
    ])
}

/// Deploys the Linux plan on compute module `hw` as profile `name` with address `ip`;
/// returns the completed task.
fn deploy_linux(api: &Api, name: &str, hw: &str, plan: &str, ip: &str) -> Value {
    let t = api.wait_task(api.post(
        "/rest/server-profiles",
        &json!({
            "name": name, "serverHardwareUri": hw,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan,
                                     "osCustomAttributes": linux_values(name, ip)},
        }),
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    t
}

#[test]
fn linux_ext4_image_gets_hostname_network_and_user() {
    if !is_root() || !have_tools(&["sfdisk", "mkfs.vfat", "mkfs.ext4", "debugfs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let plan = linux_deployment_plan(&api, dir.path());
    let redfish = RedfishDouble::start();
    let hw = register(&api, "bay5", "10.0.0.15", &redfish);
    let t = deploy_linux(&api, "web07", &hw, &plan, "10.20.0.7");
    assert!(!t.to_string().contains(USER_PASSWORD), "{t}");
    let profile = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    assert!(!profile.to_string().contains(USER_PASSWORD), "{profile}");
    let volume = profile["bootTarget"]["exportName"].as_str().unwrap();
    let os_uri = profile["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .unwrap();
    assert_eq!(
        api.get_json(os_uri)["export"]["allow"],
        json!(["10.0.0.15/32"])
    );
    let files = ext4_files(
        &s,
        volume,
        1,
        &[
            "/etc/hostname",
            "/etc/network/interfaces",
            "/etc/shadow",
            "/etc/passwd",
            "/root/initial-password",
        ],
    );
    assert_eq!(files[0], "web07\n");
    let interfaces = &files[1];
    for want in [
        "iface eth0 inet static",
        "address 10.20.0.7",
        "netmask 255.255.255.0",
        "gateway 10.20.0.1",
        "hwaddress ether 52:54:00:aa:bb:07",
    ] {
        assert!(interfaces.contains(want), "{want:?} not in {interfaces}");
    }
    assert_eq!(
        files[2],
        format!("root:*:19000:0:99999:7:::\nops:{PASSWORD_HASH}:19000:0:99999:7:::\n")
    );
    assert!(
        files[3].ends_with("ops:x:1000:1000::/home/ops:/bin/sh\n"),
        "{}",
        files[3]
    );
    // The password reached the volume, but not the logs.
    assert_eq!(files[4], USER_PASSWORD);
    let id = os_uri.rsplit('/').next().unwrap();
    let log = api
        .get(&format!("/rest/os-volumes/archive/{id}"))
        .text()
        .unwrap();
    assert!(log.contains("user ops has initial password"), "{log}");
    assert!(!log.contains(USER_PASSWORD), "{log}");
    let t = api.get_json(t["uri"].as_str().unwrap());
    assert!(!t.to_string().contains(USER_PASSWORD), "{t}");
}

/// The Developer plan's values for deploy number `i`.
fn developer_values_for(i: usize) -> Value {
    json!([
        {"name": "ExampleString1", "value": format!("profile {i}")},
        {"name": "ExampleNumber1", "value": format!("{}", 100 + i)},
        {"name": "ExampleIPv4Address", "value": format!("10.1.2.{}", 10 + i)},
        {"name": "ExampleFQDN", "value": format!("host{i}.example.com")},
        {"name": "ExamplePassword", "value": "pw12345"},
    ])
}

#[test]
fn twenty_deploys_at_once_keep_their_own_values() {
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
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24",
    );
    let hws: Vec<String> = (0..20)
        .map(|i| {
            register(
                &api,
                &format!("c{i}"),
                &format!("10.0.1.{}", 10 + i),
                &redfish,
            )
        })
        .collect();
    let start = std::time::Instant::now();
    let tasks: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = hws
            .iter()
            .enumerate()
            .map(|(i, hw)| {
                let api = &api;
                let plan = &plan;
                scope.spawn(move || {
                    api.wait_task(api.post(
                        "/rest/server-profiles",
                        &json!({
                            "name": format!("many{i}"), "serverHardwareUri": hw,
                            "osDeploymentSettings": {"osDeploymentPlanUri": plan,
                                                     "osCustomAttributes": developer_values_for(i)},
                        }),
                    ))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("twenty deploys took {:?}", start.elapsed());
    for t in &tasks {
        assert_eq!(t["taskState"], "Completed", "{t}");
    }
    for (i, t) in tasks.iter().enumerate() {
        let p = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
        assert_eq!(p["name"], format!("many{i}"));
        let volume = p["bootTarget"]["exportName"].as_str().unwrap();
        let text = fat_file(&s, volume, "/EFI/BOOT/message.txt");
        for want in [
            format!("ExampleString1: profile {i}\n"),
            format!("ExampleNumber1: {}\n", 100 + i),
            format!("ExampleIPv4Address: 10.1.2.{}\n", 10 + i),
            format!("ExampleFQDN: host{i}.example.com\n"),
        ] {
            assert!(text.contains(&want), "{want:?} not in {text}");
        }
        let os = api.get_json(p["osDeploymentSettings"]["osVolumeUri"].as_str().unwrap());
        assert_eq!(
            os["export"]["allow"],
            json!([format!("10.0.1.{}/32", 10 + i)])
        );
    }
    // storaged agrees: twenty exports, each to its own module, and a consistent store.
    let socket = s.state.config.storaged_socket.clone();
    let (report, exports) = s.block_on(async move {
        let c = storaged::control::client::StorageClient::connect(&socket)
            .await
            .unwrap();
        (
            c.verify(true).await.unwrap(),
            c.export_list().await.unwrap(),
        )
    });
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(exports.len(), 20);
    let mut allowed: Vec<String> = exports
        .iter()
        .map(|e| {
            assert_eq!(e.allow.len(), 1);
            e.allow[0].to_string()
        })
        .collect();
    allowed.sort();
    allowed.dedup();
    assert_eq!(allowed.len(), 20);
    assert_eq!(api.get_json("/rest/os-volumes")["total"], 20);
}

#[test]
fn a_restart_in_the_middle_of_deploys_completes_or_cleans_up_each() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    if !is_root() {
        return;
    }
    let storaged = common::Storaged::start();
    let s = TestServer::start_with_storaged(tempfile::tempdir().unwrap(), &storaged);
    let api = s.login(800);
    import_bundle(&api, DEV_2017, dev);
    let redfish = RedfishDouble::start();
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24",
    );
    let mut locations = Vec::new();
    for i in 0..10 {
        let hw = register(
            &api,
            &format!("r{i}"),
            &format!("10.0.2.{}", 10 + i),
            &redfish,
        );
        let r = api.post(
            "/rest/server-profiles",
            &json!({
                "name": format!("restart{i}"), "serverHardwareUri": hw,
                "osDeploymentSettings": {"osDeploymentPlanUri": plan,
                                         "osCustomAttributes": developer_values_for(i)},
            }),
        );
        assert_eq!(r.status(), 202);
        locations.push(r.headers()["location"].to_str().unwrap().to_string());
    }
    // Stop while deploys run (some may have finished, most have not).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let states: Vec<Value> = locations
            .iter()
            .map(|l| api.get_json(l)["taskState"].clone())
            .collect();
        // Best: some finished and some still running; the plan-run slots make that likely.
        let done = states.iter().filter(|s| *s == "Completed").count();
        let running = states.iter().filter(|s| *s == "Running").count();
        if (done > 0 && running > 0) || done == states.len() || std::time::Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(api);
    let dir = s.stop();
    let s = TestServer::start_with_storaged(dir, &storaged);
    let api = s.login(800);
    let (mut completed, mut interrupted) = (0, 0);
    let mut kept_volumes = Vec::new();
    for l in &locations {
        let t = api.get_json(l);
        let profile = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
        match t["taskState"].as_str().unwrap() {
            "Completed" => {
                completed += 1;
                let volume = profile["bootTarget"]["exportName"].as_str().unwrap();
                kept_volumes.push(volume.to_string());
            }
            "Error" => {
                interrupted += 1;
                let status = t["taskStatus"].as_str().unwrap();
                assert!(status.contains("Interrupted"), "{t}");
                assert_eq!(profile["state"], "Error", "{profile}");
                assert!(profile["osDeploymentSettings"]["osVolumeUri"].is_null());
            }
            other => panic!("task left {other}: {t}"),
        }
    }
    eprintln!("after the restart: {completed} completed, {interrupted} interrupted");
    assert!(interrupted > 0, "the stop came after every deploy finished");
    // Nothing half-made: the OS volume records, storaged's OS volumes and its exports are
    // exactly those of the completed deploys.
    kept_volumes.sort();
    let os = api.get_json("/rest/os-volumes");
    let mut recorded: Vec<String> = os["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["storageVolume"].as_str().unwrap().to_string())
        .collect();
    recorded.sort();
    assert_eq!(recorded, kept_volumes, "{os}");
    let mut stored: Vec<String> = s
        .volumes()
        .into_iter()
        .filter(|v| v.record.name.starts_with("os-volume-"))
        .map(|v| v.record.name)
        .collect();
    stored.sort();
    assert_eq!(stored, kept_volumes);
    let mut exported: Vec<String> = s
        .volumes()
        .into_iter()
        .filter(|v| v.export.is_some())
        .map(|v| v.record.name)
        .collect();
    exported.sort();
    assert_eq!(exported, kept_volumes);
    assert!(storaged.store.verify(true).unwrap().problems.is_empty());
}

#[test]
fn foundation_empty_volume_has_the_requested_size() {
    let Some(bundle) = corpus_file("HPE_Foundation_Artifacts-5_00.zip") else {
        return;
    };
    if !is_root() {
        return;
    }
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    import_bundle(&api, "HPE_Foundation_Artifacts-5_00.zip", bundle);
    let redfish = RedfishDouble::start();
    let hw = register(&api, "bay6", "10.0.0.16", &redfish);
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "HPE - Foundation 1.0 - create empty OS Volume-2017-10-13",
    );
    let t = api.wait_task(api.post(
        "/rest/server-profiles",
        &json!({
            "name": "empty", "serverHardwareUri": hw,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan,
                                     "osCustomAttributes": [{"name": "VolumeSize", "value": "300"}]},
        }),
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let p = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    let os = api.get_json(p["osDeploymentSettings"]["osVolumeUri"].as_str().unwrap());
    assert_eq!(os["size"], 300u64 << 20, "{os}");
    assert!(
        os["goldenImageUri"].is_null() || os["goldenImageURI"].is_null(),
        "{os}"
    );
    let volume = p["bootTarget"]["exportName"].as_str().unwrap();
    let info = s
        .volumes()
        .into_iter()
        .find(|v| v.record.name == volume)
        .unwrap();
    assert_eq!(info.record.size, 300 << 20);
    assert_eq!(info.export.unwrap().allow.len(), 1);
    // A size out of range is refused before a task starts.
    let hw2 = register(&api, "bay7", "10.0.0.17", &redfish);
    let r = api.post(
        "/rest/server-profiles",
        &json!({
            "name": "too-big", "serverHardwareUri": hw2,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan,
                                     "osCustomAttributes": [{"name": "VolumeSize", "value": "60000"}]},
        }),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("VolumeSize"));
}

/// Password values and Redfish credentials are sealed in the metadata store (its file never
/// holds them), the state is private, and after a restart the sealed values still deploy and
/// still reach the compute module.
#[test]
fn secrets_are_sealed_at_rest_and_still_work_after_a_restart() {
    if !is_root() || !have_tools(&["sfdisk", "mkfs.vfat", "mkfs.ext4", "debugfs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let plan = linux_deployment_plan(&api, dir.path());
    let redfish = RedfishDouble::start();
    let hw = register(&api, "bay9", "10.0.0.19", &redfish);
    let t = deploy_linux(&api, "sealed", &hw, &plan, "10.20.0.9");
    let profile_uri = t["associatedResource"]["resourceUri"]
        .as_str()
        .unwrap()
        .to_string();
    let state = s.state_dir.path().to_path_buf();
    let dir_mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(dir_mode(&state), 0o700);
    assert_eq!(dir_mode(&state.join("meta.redb")), 0o600);
    assert_eq!(dir_mode(&state.join("secrets.key")), 0o600);
    let state_dir = s.stop();
    let file = std::fs::read(state_dir.path().join("meta.redb")).unwrap();
    for secret in [USER_PASSWORD, "s3cret-pw"] {
        assert!(
            !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in meta.redb in the clear"
        );
    }
    // A restart opens them with the key beside the store.
    let s = TestServer::start_with(state_dir, true);
    let api = s.login(800);
    // The password goes back as the API showed it (masked): the sealed value is kept.
    let shown = api.get_json(&profile_uri)["osDeploymentSettings"]["osCustomAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "UserPassword")
        .unwrap()["value"]
        .clone();
    assert_ne!(shown, json!(USER_PASSWORD));
    let mut values = linux_values("sealed2", "10.20.0.9");
    for v in values.as_array_mut().unwrap() {
        if v["name"] == "UserPassword" {
            v["value"] = shown.clone();
        }
    }
    let mut profile = api.get_json(&profile_uri);
    profile["osDeploymentSettings"]["osCustomAttributes"] = values;
    let t = api.wait_task(api.put(&profile_uri, &profile));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let profile = api.get_json(&profile_uri);
    let volume = profile["bootTarget"]["exportName"].as_str().unwrap();
    let files = ext4_files(&s, volume, 1, &["/etc/hostname", "/root/initial-password"]);
    let os = profile["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .unwrap();
    let id = os.rsplit('/').next().unwrap();
    let log = api
        .get(&format!("/rest/os-volumes/archive/{id}"))
        .text()
        .unwrap();
    assert_eq!(files, ["sealed2\n", USER_PASSWORD], "{volume}: {log}");
    let t = api.wait_task(api.put(
        &format!("{hw}/powerState"),
        &json!({"powerState": "On", "powerControl": "MomentaryPress"}),
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let auth = redfish.recorded.lock().unwrap().auth.clone();
    let expected = format!(
        "Basic {}",
        base64::engine::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "admin:s3cret-pw"
        )
    );
    assert_eq!(auth.last(), Some(&expected));
}

/// A module that boots over iSCSI: its NIC gets the target, LUN, initiator name and a CHAP
/// secret through Redfish `iSCSIBoot` (on the function with its deployment MAC); the
/// profile's boot target names the same target without the secret, which no API answer
/// shows; the volume is exported to that initiator with CHAP.
#[test]
fn iscsi_modules_get_their_boot_settings_through_redfish() {
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
    // A bad initiator name is refused, naming what to give.
    let bad = api.post(
        "/rest/server-hardware",
        &json!({"name": "bay7", "deploymentIpv4": "10.0.0.17", "bootProtocol": "iscsi",
                "iscsiInitiatorName": "bay7 initiator",
                "redfish": {"address": redfish.address, "username": "u", "password": "p"}}),
    );
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("iqn."));
    let initiator = "iqn.2026-12.org.example:bay6";
    let r = api.post(
        "/rest/server-hardware",
        &json!({
            "name": "bay6",
            "macAddresses": ["52:54:00:12:34:56"],
            "deploymentIpv4": "10.0.0.16",
            "bootProtocol": "iscsi",
            "iscsiInitiatorName": initiator,
            "redfish": {"address": redfish.address, "username": "admin", "password": "s3cret-pw"},
        }),
    );
    assert_eq!(r.status(), 201);
    let hw = r.json::<Value>().unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let plan = uri_named(
        &api,
        "/rest/deployment-plans",
        "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24",
    );
    let t = api.wait_task(api.post(
        "/rest/server-profiles",
        &json!({
            "name": "iscsi1", "serverHardwareUri": hw,
            "osDeploymentSettings": {"osDeploymentPlanUri": plan, "osCustomAttributes": developer_values()},
        }),
    ));
    assert_eq!(t["taskState"], "Completed", "{t}");
    let patches = redfish.recorded.lock().unwrap().patches.clone();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let (path, body) = &patches[0];
    assert!(
        path.ends_with("/NetworkDeviceFunctions/2"),
        "the deployment MAC's: {path}"
    );
    assert_eq!(body["BootMode"], "iSCSI");
    let boot = &body["iSCSIBoot"];
    assert_eq!(boot["InitiatorName"], initiator);
    assert_eq!(boot["InitiatorIPAddress"], "10.0.0.16");
    assert_eq!(boot["PrimaryTargetTCPPort"], 3260);
    assert_eq!(boot["PrimaryLUN"], 0);
    assert_eq!(boot["AuthenticationMethod"], "CHAP");
    assert_eq!(boot["CHAPUsername"], initiator);
    let secret = boot["CHAPSecret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 12, "{secret}");
    let target_name = boot["PrimaryTargetName"].as_str().unwrap();
    assert!(
        target_name.starts_with("iqn.2026-12.org.streamer:"),
        "{target_name}"
    );

    let profile = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    let target = &profile["bootTarget"];
    assert_eq!(target["protocol"], "iscsi");
    assert_eq!(target["targetName"], target_name);
    assert_eq!(target["address"], boot["PrimaryTargetIPAddress"]);
    assert_eq!(target["port"], 3260);
    assert_eq!(target["lun"], 0);
    assert_eq!(target["initiatorName"], initiator);
    let os_uri = profile["osDeploymentSettings"]["osVolumeUri"]
        .as_str()
        .unwrap();
    let os = api.get_json(os_uri);
    assert_eq!(os["export"]["allow"], json!(["10.0.0.16/32"]));
    assert_eq!(os["export"]["iscsiInitiators"], json!([initiator]));
    assert_eq!(os["export"]["chap"], true);
    // The secret is the module's NIC's and storaged's only.
    for doc in [
        profile.clone(),
        os,
        api.get_json(&hw),
        api.get_json("/rest/server-profiles"),
        api.get_json("/rest/os-volumes"),
    ] {
        assert!(
            !doc.to_string().contains(&secret),
            "the CHAP secret shown: {doc}"
        );
    }
}
