//! Real NBD clients (qemu-img, qemu-io, nbdinfo, a raw client) against the real daemon:
//! copy-on-write clones, allocation maps, allow-lists, read-only golden images, snapshots
//! under load and many clients at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use nbd_wire::{EPERM, REP_ERR_POLICY, TFLAG_READ_ONLY};

/// A daemon holding the golden image `golden` (exported, read-only by nature).
fn with_golden() -> (Daemon, std::path::PathBuf, Vec<u8>) {
    let d = Daemon::start();
    let src = d.dir.join("golden.raw");
    let content = write_golden(&src);
    d.import(&src, "golden");
    d.export("golden");
    (d, src, content)
}

fn qemu_io(d: &Daemon, export: &str, cmds: &[String]) -> String {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    cmd.arg(d.uri(export));
    let out = run(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu-io failed: {text}");
    assert!(!text.contains("failed"), "qemu-io: {text}");
    text
}

#[test]
fn qemu_img_convert_into_a_writable_volume_and_compare_back() {
    let Some(qemu_img) = tool("qemu-img") else {
        return;
    };
    let d = Daemon::start();
    let src = d.dir.join("src.raw");
    let content = write_golden(&src);
    d.create("target", "16M");
    d.export("target");
    run_ok(
        Command::new(&qemu_img)
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(d.uri("target")),
    );
    run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(d.uri("target")),
    );
    // The same bytes through the store's own export, after the client has gone.
    let out = d.dir.join("target.raw");
    d.ok(&["volume", "export", "target", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), content);
    // A different image must not compare equal (the comparison can fail).
    let mut other = content.clone();
    other[5 * MIB as usize + 7] ^= 1;
    let other_path = d.dir.join("other.raw");
    std::fs::write(&other_path, &other).unwrap();
    let diff = run(Command::new(&qemu_img)
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&other_path)
        .arg(d.uri("target")));
    assert_eq!(diff.status.code(), Some(1));
}

#[test]
fn qemu_io_on_a_clone_leaves_the_golden_image_unchanged_and_maps_show_own_blocks() {
    let (Some(_), Some(nbdinfo), Some(qemu_img)) =
        (tool("qemu-io"), tool("nbdinfo"), tool("qemu-img"))
    else {
        return;
    };
    let (d, src, _) = with_golden();
    d.clone_of("golden", "os1");
    d.export("os1");
    // Data into a hole of the golden image, zeroes (with unmap) over inherited data, and a
    // partial write into an inherited block.
    qemu_io(
        &d,
        "os1",
        &[
            "write -P 0x5a 8M 64k".into(),
            "write -z -u 4M 1M".into(),
            "write -P 0xa5 1000 3000".into(),
            "flush".into(),
        ],
    );
    qemu_io(
        &d,
        "os1",
        &[
            "read -P 0x5a 8M 64k".into(),
            "read -P 0 4M 1M".into(),
            "read -P 0xa5 1000 3000".into(),
        ],
    );
    // The rest of the block partly written still reads as the golden image.
    let golden = golden_content();
    let mut c = d.nbd("os1");
    assert_eq!(c.read(0, 1000).unwrap(), golden[..1000]);
    assert_eq!(c.read(4000, 60000).unwrap(), golden[4000..64000]);
    assert_eq!(
        c.read(9 * MIB, 64 * 1024).unwrap(),
        golden[9 * MIB as usize..(9 * MIB + 64 * KIB) as usize]
    );
    c.disconnect();
    run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(d.uri("golden")),
    );

    let map = |export: &str| -> Vec<(u64, u64, u32)> {
        let text = run_ok(Command::new(&nbdinfo).args(["--map", &d.uri(export)]));
        let mut rows: Vec<(u64, u64, u32)> = Vec::new();
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (off, len, t) = (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            );
            match rows.last_mut() {
                Some(last) if last.2 == t && last.0 + last.1 == off => last.1 += len,
                _ => rows.push((off, len, t)),
            }
        }
        rows
    };
    // The golden image: its three data extents, holes between them.
    assert_eq!(
        map("golden"),
        [
            (0, MIB, 0),
            (MIB, 3 * MIB, 3),
            (4 * MIB, MIB, 0),
            (5 * MIB, 4 * MIB, 3),
            (9 * MIB, 64 * KIB, 0),
            (9 * MIB + 64 * KIB, 7 * MIB - 64 * KIB, 3)
        ]
    );
    // The clone: inherited data where it did not write, its own hole over [4M, 5M), its own
    // data at 8M.
    assert_eq!(
        map("os1"),
        [
            (0, MIB, 0),
            (MIB, 7 * MIB, 3),
            (8 * MIB, 64 * KIB, 0),
            (8 * MIB + 64 * KIB, MIB - 64 * KIB, 3),
            (9 * MIB, 64 * KIB, 0),
            (9 * MIB + 64 * KIB, 7 * MIB - 64 * KIB, 3)
        ]
    );
    // Only the clone's own blocks take space in its layer: 8M and the one at 0.
    let info = d.ok(&["volume", "info", "os1"]);
    let own = info["allocated_bytes"].as_u64().unwrap();
    assert!(
        (128 * KIB..MIB).contains(&own),
        "clone allocates {own} bytes"
    );
    d.verify_clean();
}

#[test]
fn allow_list_refuses_other_clients_and_logs_it() {
    let d = Daemon::start();
    d.create("private", "1M");
    d.ok(&["export", "add", "private", "--allow", "127.0.0.2"]);
    match Nbd::connect(d.port, "private") {
        Err(NbdError::Option(REP_ERR_POLICY)) => {}
        other => panic!("a client from 127.0.0.1 got {other:?}"),
    }
    if let Some(nbdinfo) = tool("nbdinfo") {
        let out = run(Command::new(nbdinfo).arg(d.uri("private")));
        assert!(!out.status.success(), "nbdinfo opened a refused export");
    }
    let log = d.log_text();
    assert!(
        log.contains("not on allow-list") && log.contains("127.0.0.1") && log.contains("private"),
        "refusal not logged:\n{log}"
    );
    // The allowed address gets in and can write.
    let mut c =
        Nbd::connect_from(Ipv4Addr::new(127, 0, 0, 2), d.port, "private").expect("allowed client");
    c.write(0, &[7; 4096]).unwrap();
    assert_eq!(c.read(0, 4096).unwrap(), vec![7; 4096]);
    c.disconnect();
    // A network allow-list admits the whole network.
    d.ok(&["export", "add", "private", "--allow", "127.0.0.0/8"]);
    let mut c = d.nbd("private");
    assert_eq!(c.read(0, 4096).unwrap(), vec![7; 4096]);
    c.disconnect();
}

#[test]
fn golden_image_export_is_read_only() {
    let (d, _, content) = with_golden();
    let mut c = d.nbd("golden");
    assert_ne!(
        c.flags & TFLAG_READ_ONLY,
        0,
        "golden export not advertised read-only"
    );
    match c.write(0, &[1; 512]) {
        Err(NbdError::Errno(EPERM)) => {}
        other => panic!("write to golden image: {other:?}"),
    }
    assert_eq!(c.read(0, 4096).unwrap(), content[..4096]);
    c.disconnect();
    if tool("qemu-io").is_some() {
        let out = run(Command::new("qemu-io")
            .args(["-f", "raw", "-c", "write -P 1 0 4k"])
            .arg(d.uri("golden")));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() || text.contains("failed"),
            "qemu-io wrote to the golden image: {text}"
        );
    }
    // A writable volume exported --read-only is refused too.
    d.create("rw", "1M");
    d.ok(&["export", "add", "rw", "--read-only"]);
    let mut c = d.nbd("rw");
    assert!(matches!(c.write(0, &[1; 512]), Err(NbdError::Errno(EPERM))));
    c.disconnect();
    d.verify_clean();
}

#[test]
fn snapshot_while_a_client_writes_keeps_both_consistent() {
    let d = Daemon::start();
    d.create("live", "8M");
    d.export("live");
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (port, acked) = (d.port, Arc::clone(&acked));
        std::thread::spawn(move || {
            let mut c = Nbd::connect(port, "live").unwrap();
            let mut rng = Rng::new(42);
            let mut slot_of = Vec::new();
            for seq in 1..=3000u64 {
                let slot = rng.range(0, SLOTS);
                c.write(slot * RECORD, &record(slot, seq)).unwrap();
                slot_of.push(slot);
                acked.store(seq, Ordering::SeqCst);
            }
            c.flush().unwrap();
            c.disconnect();
            slot_of
        })
    };
    while acked.load(Ordering::SeqCst) < 500 {
        std::thread::yield_now();
    }
    let before = acked.load(Ordering::SeqCst);
    d.ok(&["volume", "snapshot", "live", "--name", "snap"]);
    let after = acked.load(Ordering::SeqCst);
    let slot_of = writer.join().unwrap();
    assert!(
        after < 3000,
        "the writer finished before the snapshot returned; make it longer"
    );

    // State after the first `m` writes.
    let state_after = |m: u64| {
        let mut s = vec![0u64; SLOTS as usize];
        for (i, slot) in slot_of.iter().enumerate().take(m as usize) {
            s[*slot as usize] = i as u64 + 1;
        }
        s
    };
    let read_gens = |export: &str| {
        let mut c = d.nbd(export);
        let all = c.read(0, (SLOTS * RECORD) as usize).unwrap();
        c.disconnect();
        (0..SLOTS)
            .map(|s| seq_of(&all[(s * RECORD) as usize..((s + 1) * RECORD) as usize], s))
            .collect::<Vec<_>>()
    };
    d.export("snap");
    let snap = read_gens("snap");
    let m = *snap.iter().max().unwrap();
    assert!(
        (before..=after + 1).contains(&m),
        "snapshot holds write {m}, taken between {before} and {after}"
    );
    assert_eq!(
        snap,
        state_after(m),
        "the snapshot is not the state after write {m}"
    );
    assert_eq!(
        read_gens("live"),
        state_after(3000),
        "the volume lost writes across the snapshot"
    );
    let info = d.ok(&["volume", "info", "live"]);
    assert_eq!(info["parent_chain"].as_array().unwrap().len(), 1);
    d.verify_clean();
}

#[test]
fn eight_qemu_io_clients_on_eight_clones() {
    let (Some(_), Some(qemu_img)) = (tool("qemu-io"), tool("qemu-img")) else {
        return;
    };
    let (d, src, _) = with_golden();
    let cmds = |i: usize, verb: &str| -> Vec<String> {
        (0..4)
            .map(|k| format!("{verb} -P 0x{:02x} {}M 256k", 0x10 + i, k * 4 + (i % 4)))
            .collect()
    };
    for i in 0..8 {
        d.clone_of("golden", &format!("vm{i}"));
        d.export(&format!("vm{i}"));
    }
    let procs: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = Command::new("qemu-io");
            cmd.args(["-f", "raw"]);
            for c in cmds(i, "write").into_iter().chain(cmds(i, "read")) {
                cmd.args(["-c", &c]);
            }
            cmd.arg(d.uri(&format!("vm{i}")));
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for (i, p) in procs.into_iter().enumerate() {
        let out = p.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("failed"),
            "client {i}: {text}"
        );
    }
    // Each clone holds its own writes and nobody else's; the golden image is untouched.
    for i in 0..8 {
        qemu_io(&d, &format!("vm{i}"), &cmds(i, "read"));
    }
    let golden = golden_content();
    let mut c = d.nbd("vm3");
    assert_eq!(
        c.read(0, 3 * MIB as usize).unwrap(),
        golden[..3 * MIB as usize]
    );
    c.disconnect();
    run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(d.uri("golden")),
    );
    d.verify_clean();
}
