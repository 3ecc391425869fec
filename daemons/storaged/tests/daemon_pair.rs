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
        "--serve-own-volumes",
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
    // The export is replicated with the volume: b serves it to the same clients after a
    // failover.
    a.ok(&["export", "add", &id, "--allow", "127.0.0.1"]);
    assert_eq!(b.ok(&["export", "list"])[0]["allow"][0], "127.0.0.1/32");
    let out = run(Command::new(&qemu_io)
        .args(["-f", "raw", "-c", "write -P 0x6b 1M 2M", "-c", "flush"])
        .arg(a.uri(&id)));
    assert!(out.status.success());
    let read_on = |d: &Daemon| {
        run(Command::new(&qemu_io)
            .args([
                "-f",
                "raw",
                "-c",
                "read -P 0x6b 1M 2M",
                "-c",
                "read -P 0 0 1M",
            ])
            .arg(d.uri(&id)))
    };
    // Group node-a is a's: b holds the replica but does not serve it.
    assert!(!read_on(&b).status.success(), "b must not serve a's volume");
    let status = b.ok(&["pair", "status"]);
    assert_eq!(status["groups"]["node-b"]["owned"], true, "{status}");

    // A failover by hand (clusterd does this on a pair): a stops serving group node-a,
    // b serves it at the next epoch.
    a.ok(&["pair", "disown", "node-a", "2"]);
    b.ok(&["pair", "own", "node-a", "2"]);
    let out = read_on(&b);
    assert!(out.status.success());
    let read = String::from_utf8_lossy(&out.stdout);
    assert!(!read.contains("Pattern verification failed"), "{read}");
    assert!(
        !read_on(&a).status.success(),
        "a must not serve it any more"
    );
    // b's writes now reach a under epoch 2.
    let out = run(Command::new(&qemu_io)
        .args(["-f", "raw", "-c", "write -P 0x2c 0 1M", "-c", "flush"])
        .arg(b.uri(&id)));
    assert!(out.status.success());
    let status = a.ok(&["pair", "status"]);
    assert_eq!(status["groups"]["node-a"]["epoch"], 2, "{status}");
    assert_eq!(status["groups"]["node-a"]["owned"], false, "{status}");

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
