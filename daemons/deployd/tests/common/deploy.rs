//! What the deploy tests share: compute modules, golden images built with the system's tools,
//! and the plan records that use them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::redfish::RedfishDouble;
use super::{Api, TestServer};

pub fn register(api: &Api, name: &str, ip: &str, redfish: &RedfishDouble) -> String {
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

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: attaching OS volumes needs root");
    }
    root
}

/// Runs `cmd`, asserting it succeeds.
pub fn run(cmd: &mut std::process::Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn have_tools(tools: &[&str]) -> bool {
    for tool in tools {
        let found = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: {tool} is not installed");
            return false;
        }
    }
    true
}

/// A raw GPT disk with an ESP (FAT32) and an ext4 root holding a small Debian-like tree.
pub fn linux_golden_image(dir: &std::path::Path) -> Vec<u8> {
    linux_golden_image_with(dir, |_| {})
}

/// As [`linux_golden_image`], with `customize` adding to the root tree before it is made.
pub fn linux_golden_image_with(
    dir: &std::path::Path,
    customize: impl FnOnce(&std::path::Path),
) -> Vec<u8> {
    let tree = dir.join("tree");
    for d in ["etc/network", "root", "tmp", "boot/efi", "bin"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/hostname"), "golden\n").unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(tree.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(
        tree.join("etc/network/interfaces"),
        "auto lo\niface lo inet loopback\n",
    )
    .unwrap();
    customize(&tree);
    let img = dir.join("linux.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(192 << 20)
        .unwrap();
    let mut child = std::process::Command::new("sfdisk")
        .arg("--quiet")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"label: gpt\nstart=2048, size=131072, type=U\nstart=133120, type=L\n",
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    // One sector per cluster: FAT32 needs at least 65525 clusters to be read as FAT32.
    run(std::process::Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "--offset=2048"])
        .arg(&img)
        .arg("65536"));
    run(std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", &format!("offset={}", 133120 * 512), "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("60M"));
    std::fs::read(&img).unwrap()
}

pub fn created_uri(r: reqwest::blocking::Response) -> String {
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 201, "{body}");
    body["uri"].as_str().unwrap().to_string()
}

/// The bytes of partition `index` (0-based) of storaged volume `volume`, exported to a raw
/// file and located with `sfdisk -J`.
pub fn partition_bytes(s: &TestServer, volume: &str, index: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let out = std::fs::File::create(&raw).unwrap();
    let socket = s.state.config.storaged_socket.clone();
    let v = volume.to_string();
    s.block_on(async move {
        deployd::services::storage::Storage::new(&socket)
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
    let p = &t["partitiontable"]["partitions"][index];
    let (start, size) = (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap());
    let bytes = std::fs::read(&raw).unwrap();
    bytes[(start * 512) as usize..((start + size) * 512) as usize].to_vec()
}

/// Files of partition `index` (0-based, ext4) of storaged volume `volume`, read with debugfs.
pub fn ext4_files(s: &TestServer, volume: &str, index: usize, paths: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.raw");
    std::fs::write(&part, partition_bytes(s, volume, index)).unwrap();
    paths
        .iter()
        .map(|path| {
            let o = std::process::Command::new("debugfs")
                .args(["-R", &format!("cat {path}")])
                .arg(&part)
                .output()
                .unwrap();
            String::from_utf8(o.stdout).unwrap()
        })
        .collect()
}
