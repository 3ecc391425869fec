//! A crash at each step of the write protocol (activity log, local write, replication, flush,
//! clearing of the log): the process running one side is aborted there — a real crash,
//! `SIGABRT`, no destructor runs — while the other side lives on, as on a pair. Afterwards
//! every write that was acknowledged is on the owner, and once the owner has restarted and
//! resynced, both copies are byte for byte the same. A client's flush between the restart
//! and the resync must not make the owner forget what to resync.
//!
//! The crashing side runs in a child process: this test binary again, running the ignored
//! test [`crash_child`] with the point's name in its environment. The crash points are
//! `fail::fail_point!`s in storaged's write path, compiled only with its `testing` feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::MIB;
use common::pair::{hello, import_golden, owner_at, replica_at, serve_replica};
use storaged::block::BlockDevice;
use storaged::replication::{PeerReplica, ReplicaServer};
use storaged::store::Store;

const SIZE: u64 = 32 * MIB;
const VOL: &str = "0b7c7e0e-0000-4000-8000-00000000c4a5";
/// Writes the child makes (fewer if it crashes first).
const WRITES: u64 = 64;
/// The crash comes at this hit of its point (a few writes and flushes in).
const CRASH_AT_HIT: u32 = 10;

/// The owner's steps, in the order a write and a flush take them.
const OWNER_POINTS: [&str; 7] = [
    "activity::marked",
    "activity::synced",
    "replication::sent",
    "replication::applied_here",
    "write::replicated",
    "flush::synced",
    "activity::cleared",
];

/// Write `i`: 64 KiB of its own bytes, at a place of its own, over 16 regions.
fn write_of(i: u64) -> (u64, Vec<u8>) {
    let offset = (i % 16) * MIB + (i / 16) * 65536 + 512;
    let mut data = vec![(i + 1) as u8; 65536];
    data[..8].copy_from_slice(&i.to_le_bytes());
    (offset, data)
}

/// The workload: each write acknowledged is printed ("acked N"); a flush after every
/// fourth; every third write FUA.
fn workload(owner: &Store, mut acked: impl FnMut(u64)) {
    let lease = owner.lease(VOL).unwrap();
    let v = lease.volume();
    for i in 0..WRITES {
        let (offset, data) = write_of(i);
        v.write(&data, offset, i % 3 == 0).unwrap();
        acked(i);
        if i % 4 == 3 {
            v.sync().unwrap();
        }
    }
}

fn new_volume(dir: &Path) {
    Store::open(dir)
        .unwrap()
        .create_as(VOL, None, SIZE, Some("node-a"))
        .unwrap();
}

fn contents(s: &Store) -> Vec<u8> {
    let lease = s.lease(VOL).unwrap();
    let mut buf = vec![0u8; SIZE as usize];
    lease.volume().read_at(&mut buf, 0).unwrap();
    buf
}

/// The child's side: aborts at the `CRASH_AT_HIT`th hit of `CRASH_POINT`.
#[test]
#[ignore = "the crashing side of every_step_of_the_write_protocol_survives_a_crash, run by it"]
fn crash_child() {
    let Ok(point) = std::env::var("CRASH_POINT") else {
        return;
    };
    let dir = std::env::var("CRASH_DIR").unwrap();
    let peer: SocketAddr = std::env::var("CRASH_PEER").unwrap().parse().unwrap();
    let hits = AtomicU32::new(0);
    fail::cfg_callback(&point, move || {
        if hits.fetch_add(1, Ordering::SeqCst) + 1 == CRASH_AT_HIT {
            std::process::abort();
        }
    })
    .unwrap();
    let store = |replica| Store::open_with_replica(Path::new(&dir), replica).unwrap();
    if point.starts_with("replica::") {
        // The replica's side: serve on the address given until the crash.
        let listener = TcpListener::bind(peer).unwrap();
        ReplicaServer::new(
            Arc::new(Store::open(Path::new(&dir)).unwrap()),
            hello("node-b"),
        )
        .serve(listener);
    } else {
        let owner = store(Arc::new(PeerReplica::new(peer, hello("node-a"))));
        let mut out = std::io::stdout();
        workload(&owner, |i| {
            writeln!(out, "acked {i}").unwrap();
            out.flush().unwrap();
        });
    }
}

/// Runs [`crash_child`] at `point` on `dir`, its peer at `peer`.
fn spawn_child(point: &str, dir: &Path, peer: SocketAddr) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--include-ignored", "--nocapture"])
        .env("CRASH_POINT", point)
        .env("CRASH_DIR", dir)
        .env("CRASH_PEER", peer.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn assert_aborted(point: &str, status: std::process::ExitStatus) {
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "the child did not crash at {point} ({status}): the point was never reached"
    );
}

/// Every acknowledged write reads back from `s`.
fn assert_has(point: &str, s: &Store, acked: &[u64]) {
    let all = contents(s);
    for &i in acked {
        let (offset, data) = write_of(i);
        assert!(
            all[offset as usize..offset as usize + data.len()] == data[..],
            "crash at {point}: acknowledged write {i} is lost"
        );
    }
}

/// The owner crashes at `point`; the replica lives on.
fn owner_crash(point: &str) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    new_volume(da.path());
    new_volume(db.path());
    let (replica, peer) = replica_at(db.path());

    let child = spawn_child(point, da.path(), peer);
    let out = child.wait_with_output().unwrap();
    assert_aborted(point, out.status);
    let acked: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("acked ")?.parse().ok())
        .collect();
    assert!(
        !acked.is_empty(),
        "crash at {point}: nothing was acknowledged"
    );

    // The owner starts again. Its activity log says which regions may differ; a client's
    // flush now (both nodes in sync) must not clear them before the resync has sent them.
    let (owner, _) = owner_at(da.path(), peer);
    assert_has(point, &owner, &acked);
    let marked = owner.dirty_regions(VOL).unwrap();
    assert_eq!(
        owner.recovering(VOL).unwrap(),
        marked > 0,
        "crash at {point}"
    );
    {
        let lease = owner.lease(VOL).unwrap();
        lease.volume().sync().unwrap();
        lease.volume().sync().unwrap();
    }
    assert_eq!(
        owner.dirty_regions(VOL).unwrap(),
        marked,
        "crash at {point}: a flush cleared regions marked at the crash before their resync"
    );
    owner.resync(VOL, &mut |_, _| {}).unwrap();
    assert!(!owner.recovering(VOL).unwrap());
    assert_has(point, &replica, &acked);
    assert!(
        contents(&owner) == contents(&replica),
        "crash at {point}: the copies differ after the resync"
    );
    // And the owner's log is clean again after a flush.
    let lease = owner.lease(VOL).unwrap();
    lease.volume().sync().unwrap();
    lease.volume().sync().unwrap();
    assert_eq!(owner.dirty_regions(VOL).unwrap(), 0, "crash at {point}");
}

/// The replica crashes after applying a write and before acknowledging it: the owner's
/// write waits, is sent again to the restarted replica, and nothing is lost or different.
fn replica_crash(point: &str) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    new_volume(da.path());
    new_volume(db.path());
    let peer = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = spawn_child(point, db.path(), peer);
    // Wait for the child to listen.
    while std::net::TcpStream::connect(peer).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (owner, _) = owner_at(da.path(), peer);
    let writer = {
        let owner = Arc::clone(&owner);
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            workload(&owner, |i| acked.push(i));
            acked
        })
    };
    let status = child.wait().unwrap();
    assert_aborted(point, status);
    // The replica starts again on the same address; the stalled write goes through.
    let replica = Arc::new(Store::open(db.path()).unwrap());
    let listener = loop {
        match TcpListener::bind(peer) {
            Ok(l) => break l,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    serve_replica(Arc::clone(&replica), listener);
    let acked = writer.join().unwrap();
    assert_eq!(acked.len() as u64, WRITES, "crash at {point}");
    owner.lease(VOL).unwrap().volume().sync().unwrap();
    assert_has(point, &owner, &acked);
    assert_has(point, &replica, &acked);
    assert!(
        contents(&owner) == contents(&replica),
        "crash at {point}: the copies differ"
    );
}

#[test]
fn every_step_of_the_write_protocol_survives_a_crash() {
    for point in OWNER_POINTS {
        owner_crash(point);
    }
    replica_crash("replica::applied");
}

/// An import during which the peer is marked Outdated (at its third chunk here): ready on the
/// owner, not frozen on the peer, on the unsent list; the resync sends it whole and the peer
/// freezes it once its SHA-256 matches.
#[test]
fn an_import_cut_by_the_peer_going_outdated_is_sent_whole_at_the_resync() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (replica, peer) = replica_at(db.path());
    let (owner, link) = owner_at(da.path(), peer);
    let img = da.path().join("golden.raw");
    let content: Vec<u8> = (0..24 * MIB).map(|i| (i / 4096 % 251) as u8 + 1).collect();
    std::fs::write(&img, &content).unwrap();
    let hits = AtomicU32::new(0);
    let cut = Arc::clone(&link);
    fail::cfg_callback("transfer::chunk", move || {
        if hits.fetch_add(1, Ordering::SeqCst) == 2 {
            cut.set_peer_outdated(true);
        }
    })
    .unwrap();
    let g = import_golden(&owner, &img, "debian");
    fail::remove("transfer::chunk");
    let id = g.record.id.clone();
    assert_eq!(owner.unsent(), std::slice::from_ref(&id));
    assert_ne!(
        replica.info(&id).unwrap().record.state,
        storaged::store::VolumeState::Frozen,
        "the peer froze an incomplete copy"
    );
    // The peer is back, and a deploy comes before the resync: the peer cannot clone an
    // image it does not hold whole, so the clone, its export and its writes are made here
    // alone, owed to the peer; its snapshot too.
    link.set_peer_outdated(false);
    let os = owner.clone_volume(&id, Some("os1")).unwrap().record.id;
    owner
        .export_add(&os, vec!["10.0.0.7/32".parse().unwrap()], false)
        .unwrap();
    let lease = owner.lease(&os).unwrap();
    lease
        .volume()
        .write_at(&[0xa5; 8192], 4 * MIB, true)
        .unwrap();
    lease.volume().flush().unwrap();
    drop(lease);
    let snap = owner.snapshot(&os, Some("os1-snap")).unwrap().record.id;
    assert!(
        replica.info(&os).is_err(),
        "the clone reached the peer early"
    );
    let mut owed = owner.unsent();
    owed.sort();
    let mut expected = vec![id.clone(), os.clone(), snap.clone()];
    expected.sort();
    assert_eq!(owed, expected);
    // The resync sends them, parents first; then the clone's regions. While the image is
    // sent again, the module writes to its OS volume, whose changes the peer does not get
    // yet (held here): they say nothing of the image's transfer, which must not look cut.
    let os_volume = Arc::clone(owner.lease(&os).unwrap().volume());
    fail::cfg_callback("transfer::chunk", move || {
        os_volume.write_at(&[0x5a; 4096], 6 * MIB, true).unwrap();
    })
    .unwrap();
    let sent = owner.send_missing(&id);
    fail::remove("transfer::chunk");
    assert!(sent.unwrap(), "{id} was not missing");
    assert_eq!(
        replica.info(&id).unwrap().record.state,
        storaged::store::VolumeState::Frozen,
        "the image was sent whole but not frozen on the peer"
    );
    for v in [&snap, &os] {
        assert!(owner.send_missing(v).unwrap(), "{v} was not missing");
    }
    owner.resync(&os, &mut |_, _| {}).unwrap();
    assert!(owner.unsent().is_empty());
    assert_eq!(
        replica.export_list().len(),
        1,
        "the export is not on the peer"
    );
    let read = |s: &Store| {
        let mut buf = vec![0u8; 8 * MIB as usize];
        s.lease(&os).unwrap().volume().read_at(&mut buf, 0).unwrap();
        buf
    };
    assert!(
        read(&owner) == read(&replica),
        "the clone differs on the peer"
    );
    assert_eq!(read(&replica)[4 * MIB as usize], 0xa5);
    assert_eq!(read(&replica)[6 * MIB as usize], 0x5a);
    let there = replica.info(&id).unwrap().record;
    assert_eq!(there.state, storaged::store::VolumeState::Frozen);
    assert_eq!(there.checksum, g.record.checksum);
    assert_eq!(
        replica.content_checksum(&id).unwrap(),
        g.record.checksum.unwrap()
    );
}
