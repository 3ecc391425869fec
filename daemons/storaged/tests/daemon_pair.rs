//! Two `storaged serve` daemons replicating to each other (the pair's storage, started by
//! hand here as init will): a volume created on one is on both under one id, and what
//! qemu-io writes through one's NBD server reads back the same through the other's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Daemon, free_port, run, tool};

fn pair_args(listen: u16, peer: u16, node: &str) -> Vec<String> {
    [
        "--replication-listen",
        &format!("127.0.0.1:{listen}"),
        "--replicate-to",
        &format!("127.0.0.1:{peer}"),
        "--cluster-id",
        "pair-test",
        "--node",
        node,
        "--replication-without-tls",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[test]
fn two_daemons_replicate_volumes_and_writes_to_each_other() {
    let Some(qemu_io) = tool("qemu-io") else {
        return;
    };
    let (ra, rb) = (free_port(), free_port());
    let a = Daemon::start_with(free_port(), pair_args(ra, rb, "node-a"));
    let b = Daemon::start_with(free_port(), pair_args(rb, ra, "node-b"));
    let id = a.create("os1", "16M");
    assert_eq!(b.ok(&["volume", "info", &id])["id"], id.as_str());
    for d in [&a, &b] {
        d.ok(&["export", "add", &id]);
    }
    let out = run(Command::new(&qemu_io)
        .args(["-f", "raw", "-c", "write -P 0x6b 1M 2M", "-c", "flush"])
        .arg(a.uri(&id)));
    assert!(out.status.success());
    let out = run(Command::new(&qemu_io)
        .args([
            "-f",
            "raw",
            "-c",
            "read -P 0x6b 1M 2M",
            "-c",
            "read -P 0 0 1M",
        ])
        .arg(b.uri(&id)));
    assert!(out.status.success());
    let read = String::from_utf8_lossy(&out.stdout);
    assert!(!read.contains("Pattern verification failed"), "{read}");

    // Without the certificates (and without saying it is a test), no replication at all.
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(common::BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--replicate-to",
            "127.0.0.1:1",
            "--cluster-id",
            "x",
            "--node",
            "y",
        ])
        .args(["--control"])
        .arg(dir.path().join("s.sock")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pair-tls"));
}
