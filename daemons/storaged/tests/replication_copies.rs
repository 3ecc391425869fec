//! Copies to the peer (a golden image sent whole, a resync) on a pair whose peer is slow.
//!
//! * A peer slow to take a copy's megabytes is not a stalled peer: only a client's write
//!   waiting on it is (the pair marks a stalled peer Outdated; marking it for a copy's sake
//!   sent the whole image again at the next resync, which under load was slow in turn).
//! * A resync sends a volume made while it runs (a clone deployed from the golden image it
//!   is sending) instead of failing on it at the end; while it sends the image, the pair's
//!   status says so.
//!
//! A test file of its own: the crash points it uses are one per process, and its tests run
//! one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::MIB;
use common::pair::{import_golden, pair};
use storaged::block::BlockDevice;
use storaged::replication::PeerReplica;
use storaged::replication::pair::PairLink;
use storaged::store::Store;

/// The crash points are the process's: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Imports into `store` a golden image of `mib` MiB (a file in `dir`), every byte non-zero
/// (every chunk is sent).
fn golden_of(store: &Store, dir: &Path, name: &str, mib: u64) -> String {
    let img = dir.join(format!("{name}.raw"));
    std::fs::write(&img, vec![0x5a; (mib * MIB) as usize]).unwrap();
    import_golden(store, &img, name).record.id
}

/// Holds the first thread to pass crash point `point` there: the receiver hears when one
/// has come, sending on the sender lets it go on. Later ones pass.
fn hold_first(point: &str) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached, at_point) = mpsc::channel::<()>();
    let (release, held) = mpsc::channel::<()>();
    let (reached, held) = (Mutex::new(reached), Mutex::new(held));
    let hits = AtomicU32::new(0);
    fail::cfg_callback(point, move || {
        if hits.fetch_add(1, Ordering::SeqCst) == 0 {
            reached.lock().unwrap().send(()).unwrap();
            held.lock().unwrap().recv().unwrap();
        }
    })
    .unwrap();
    (at_point, release)
}

/// Runs `work` on a thread while sampling `link.stalled_for()`; returns the longest stall
/// seen.
fn longest_stall_during(link: &Arc<PeerReplica>, work: impl FnOnce() + Send + 'static) -> u128 {
    let worker = std::thread::spawn(work);
    let mut longest = 0;
    while !worker.is_finished() {
        if let Some(d) = link.stalled_for() {
            longest = longest.max(d.as_millis());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    worker.join().unwrap();
    longest
}

#[test]
fn a_peer_slow_to_take_a_copy_is_not_stalled_but_slow_for_a_client_is() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = pair();
    // The replica takes 700 ms to apply anything.
    fail::cfg_callback("replica::applied", || {
        std::thread::sleep(Duration::from_millis(700))
    })
    .unwrap();

    // A golden image sent whole: three 4 MiB chunks and a flush, 700 ms each.
    let owner = Arc::clone(&p.owner);
    let dir = p.dirs.0.path().to_path_buf();
    let copy = longest_stall_during(&p.link, move || {
        golden_of(&owner, &dir, "gold", 12);
    });

    // A client's write to a volume of the pair, as slow.
    let os = p.owner.create(Some("os1"), 8 * MIB).unwrap().record.id;
    let lease = p.owner.lease(&os).unwrap();
    let vol = Arc::clone(lease.volume());
    let client = longest_stall_during(&p.link, move || {
        vol.write(&[1; 4096], 0, true).unwrap();
    });
    fail::remove("replica::applied");

    assert_eq!(
        copy, 0,
        "a copy to a slow peer counted as a stall ({copy} ms): the pair would mark the peer \
         Outdated and send the image again"
    );
    assert!(
        client >= 300,
        "a client's write waiting 700 ms on the peer is a stall (seen: {client} ms)"
    );
    let gold = p.replica.info("gold").unwrap();
    assert_eq!(gold.record.state, storaged::store::VolumeState::Frozen);
}

#[test]
fn a_resync_sends_a_volume_made_while_it_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = pair();
    // A golden image imported while the peer is away (its transfer is on the unsent list).
    p.link.set_peer_outdated(true);
    let gold = golden_of(&p.owner, p.dirs.0.path(), "gold", 16);
    assert!(p.replica.info(&gold).is_err());
    p.link.set_peer_outdated(false);

    // The resync's transfer of it is held at its first chunk; meanwhile a clone of it is
    // deployed and written (here alone: its parent is not on the peer whole yet).
    let (at_chunk, release) = hold_first("transfer::chunk");
    let link = PairLink::new(Arc::clone(&p.owner), Arc::clone(&p.link), "node-a");
    let done = Arc::new(AtomicBool::new(false));
    let resync = {
        let (link, done) = (Arc::clone(&link), Arc::clone(&done));
        std::thread::spawn(move || {
            let r = link.resync();
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    at_chunk.recv_timeout(Duration::from_secs(30)).unwrap();
    // Meanwhile the pair's status says a resync runs, and what it sends.
    let progress = link.status().resync;
    assert!(progress.running, "{progress:?}");
    assert_eq!(progress.sending.as_deref(), Some(gold.as_str()));
    let clone = p.owner.clone_volume(&gold, Some("os1")).unwrap().record.id;
    p.owner
        .lease(&clone)
        .unwrap()
        .volume()
        .write(&[0x77; 65536], MIB, true)
        .unwrap();
    release.send(()).unwrap();
    let report = resync.join().unwrap();
    fail::remove("transfer::chunk");

    let report = report.unwrap_or_else(|e| panic!("the resync failed: {e}"));
    let progress = link.status().resync;
    assert!(
        !progress.running && progress.sending.is_none(),
        "{progress:?}"
    );
    for id in [&gold, &clone] {
        assert_eq!(
            p.owner.content_checksum(id).unwrap(),
            p.replica.content_checksum(id).unwrap(),
            "volume {id} differs on the peer"
        );
    }
    // Of the clone, only what was written to it went (its region, and the few the activity
    // log marks ahead of a write), not the image's 16 again: the peer has the image.
    assert!(report.regions <= 4, "{report:?}");
    assert!(p.owner.unsent().is_empty(), "{:?}", p.owner.unsent());
    let mut b = [0u8; 4];
    p.replica
        .lease(&clone)
        .unwrap()
        .volume()
        .read_at(&mut b, MIB)
        .unwrap();
    assert_eq!(b, [0x77; 4]);
}

#[test]
fn a_flush_during_a_resync_keeps_the_regions_it_has_not_sent() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = pair();
    let vol = p.owner.create(Some("os1"), 8 * MIB).unwrap().record.id;
    let lease = p.owner.lease(&vol).unwrap();
    let v = Arc::clone(lease.volume());
    // Written while the peer is away: four regions it lacks.
    p.link.set_peer_outdated(true);
    for r in 0..4 {
        v.write(&[0xa0 + r as u8; 4096], r * 4 * MIB / 2, false)
            .unwrap();
    }
    v.sync().unwrap();
    let marked = p.owner.dirty_regions(&vol).unwrap();
    assert!(marked >= 4, "{marked}");
    p.link.set_peer_outdated(false);

    // The resync's first region is held on the replica; meanwhile the guest flushes twice
    // (both nodes answer), then the peer is lost again.
    let (at_first, release) = hold_first("replica::applied");
    let resync = {
        let (owner, vol) = (Arc::clone(&p.owner), vol.clone());
        std::thread::spawn(move || owner.resync(&vol, &mut |_, _| {}))
    };
    at_first.recv_timeout(Duration::from_secs(30)).unwrap();
    v.sync().unwrap();
    v.sync().unwrap();
    p.link.set_peer_outdated(true);
    release.send(()).unwrap();
    let interrupted = resync.join().unwrap();
    fail::remove("replica::applied");
    assert!(interrupted.is_err(), "{interrupted:?}");
    let left = p.owner.dirty_regions(&vol).unwrap();
    assert!(
        left + 1 >= marked,
        "flushes during the resync cleared regions it had not sent: {left} of {marked} left"
    );

    // The peer back for good: the next resync makes both copies equal.
    p.link.set_peer_outdated(false);
    p.owner.resync(&vol, &mut |_, _| {}).unwrap();
    assert_eq!(
        p.owner.content_checksum(&vol).unwrap(),
        p.replica.content_checksum(&vol).unwrap(),
        "the copies differ after the resync"
    );
}
