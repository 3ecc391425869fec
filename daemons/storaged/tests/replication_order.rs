//! Two writes to the same bytes in flight at once end the same on both nodes of a pair.
//!
//! The first write is held just after it was sent to the replica, before this node applies
//! it; a second write to the same bytes comes meanwhile. Were it let through, it would be
//! applied and replicated first here and there, then the first would land on top of it
//! here only: the copies would differ. It must wait for the first instead. (A test file of
//! its own: the crash point it uses is one per process.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::MIB;
use common::pair::pair;
use storaged::block::BlockDevice;
use storaged::store::Store;

const VOL: &str = "0b7c7e0e-0000-4000-8000-00000000a0de";

fn bytes(s: &Store) -> Vec<u8> {
    let mut buf = vec![0u8; 256 << 10];
    s.lease(VOL).unwrap().volume().read_at(&mut buf, 0).unwrap();
    buf
}

#[test]
fn overlapping_writes_in_flight_are_applied_in_one_order_on_both_nodes() {
    let p = pair();
    let (owner, replica) = (&p.owner, &p.replica);
    for s in [owner, replica] {
        s.create_as(VOL, None, 8 * MIB, Some("node-a")).unwrap();
    }

    // The first write to pass the point waits there until released.
    let (release, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    let hits = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&hits);
    fail::cfg_callback("replication::sent", move || {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            held.lock().unwrap().recv().unwrap();
        }
    })
    .unwrap();

    let write = |fill: u8, offset: u64, len: usize| {
        let owner = Arc::clone(owner);
        std::thread::spawn(move || {
            let lease = owner.lease(VOL).unwrap();
            lease
                .volume()
                .write_at(&vec![fill; len], offset, false)
                .unwrap();
        })
    };
    let first = write(0xaa, 0, 128 << 10);
    while hits.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Beside it: not held up.
    write(0x11, 128 << 10, 64 << 10).join().unwrap();
    // Over it: waits for it.
    let second_done = Arc::new(AtomicBool::new(false));
    let second = {
        let (owner, done) = (Arc::clone(owner), Arc::clone(&second_done));
        std::thread::spawn(move || {
            let lease = owner.lease(VOL).unwrap();
            lease
                .volume()
                .write_at(&[0xbb; 4096], 64 << 10, false)
                .unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let overtook = second_done.load(Ordering::SeqCst);
    release.send(()).unwrap();
    first.join().unwrap();
    second.join().unwrap();
    fail::remove("replication::sent");

    let (here, there) = (bytes(owner), bytes(replica));
    assert!(
        here[64 << 10] == there[64 << 10],
        "the two copies differ: {:#x} here, {:#x} there",
        here[64 << 10],
        there[64 << 10]
    );
    assert!(here == there, "the two copies differ");
    assert!(
        !overtook,
        "a write overlapping one in flight was applied before it"
    );
    assert_eq!(here[64 << 10], 0xbb, "the later write was lost");
    assert_eq!(here[0], 0xaa);
    assert_eq!(here[128 << 10], 0x11);
}
