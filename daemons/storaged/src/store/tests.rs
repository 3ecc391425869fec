//! Store behaviour: refusals, O(1) clones, recovery and verify.

use std::net::IpAddr;

use super::*;
use crate::block::BlockDevice;
use crate::export::{ExportCatalog, ExportError};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn frozen_base(store: &Store, size: u64) -> String {
    let v = store.create(Some("base"), size).unwrap().record.id;
    store
        .lease(&v)
        .unwrap()
        .volume()
        .write_at(b"golden", 0, false)
        .unwrap();
    store.snapshot(&v, Some("golden")).unwrap().record.id
}

#[test]
fn deleting_a_parent_names_its_children() {
    let (_d, s) = store();
    let gold = frozen_base(&s, 1 << 20);
    s.clone_volume(&gold, Some("os-1")).unwrap();
    let err = s.delete("golden").unwrap_err().to_string();
    assert!(err.contains("os-1") && err.contains("base"), "{err}");
    assert!(s.info("golden").is_ok(), "nothing was deleted");
}

#[test]
fn clone_needs_a_frozen_parent_and_snapshot_a_writable_volume() {
    let (_d, s) = store();
    let gold = frozen_base(&s, 1 << 20);
    assert!(matches!(
        s.clone_volume("base", None),
        Err(StoreError::NotFrozen(_))
    ));
    assert!(matches!(
        s.snapshot(&gold, None),
        Err(StoreError::Frozen(_))
    ));
    assert!(matches!(
        s.create(Some("golden"), 4096),
        Err(StoreError::NameTaken(_))
    ));
    assert!(matches!(s.create(None, 1000), Err(StoreError::Invalid(_))));
    assert!(matches!(
        s.create(Some("a\nb"), 4096),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn frozen_volumes_refuse_writes() {
    let (_d, s) = store();
    let gold = frozen_base(&s, 1 << 20);
    let lease = s.lease(&gold).unwrap();
    let err = lease.volume().write_at(b"x", 0, false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn clone_of_a_large_volume_allocates_almost_nothing() {
    let (_d, s) = store();
    let big = s.create(Some("big"), 64 << 30).unwrap().record.id;
    let gold = s.snapshot(&big, None).unwrap().record.id;
    let clone = s.clone_volume(&gold, None).unwrap();
    assert_eq!(clone.allocated_bytes, 0);
    let map = s.paths(&clone.record.layer).map;
    let map_alloc = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(map).unwrap().blocks() * 512
    };
    // 1 Mi blocks of 64 KiB: a 128 KiB bitmap after the 4 KiB header, preallocated.
    assert_eq!(
        map_alloc,
        (4 + 128) << 10,
        "map allocated {map_alloc} bytes"
    );
}

#[test]
fn a_volume_in_use_cannot_be_deleted() {
    let (_d, s) = store();
    let v = s.create(Some("v"), 1 << 20).unwrap().record.id;
    let lease = s.lease(&v).unwrap();
    assert!(matches!(
        s.delete("v"),
        Err(StoreError::InUse { users: 1, .. })
    ));
    drop(lease);
    s.delete("v").unwrap();
    assert!(matches!(s.info(&v), Err(StoreError::NotFound(_))));
}

#[test]
fn leftovers_of_interrupted_operations_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept = {
        let s = Store::open(dir.path()).unwrap();
        s.create(Some("kept"), 1 << 20).unwrap().record
    };
    let stray = dir.path().join("layers/0000-interrupted.data");
    std::fs::write(&stray, b"half an import").unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert!(!stray.exists());
    assert!(s.paths(&kept.layer).data.exists());
    assert!(s.verify(false).unwrap().problems.is_empty());
}

#[test]
fn a_second_daemon_cannot_open_the_same_store() {
    let (d, _s) = store();
    assert!(matches!(
        Store::open(d.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn verify_reports_damaged_layers_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let (gold, clone) = {
        let s = Store::open(dir.path()).unwrap();
        let raw = dir.path().join("img.raw");
        std::fs::write(&raw, vec![7u8; 8192]).unwrap();
        let gold = s
            .import(
                Some("gold"),
                File::open(&raw).unwrap(),
                None,
                false,
                None,
                &mut |_, _| {},
            )
            .unwrap()
            .record;
        assert!(gold.checksum.as_deref().unwrap().starts_with("sha256:"));
        let clone = s.clone_volume("gold", Some("c")).unwrap().record;
        assert!(s.verify(true).unwrap().problems.is_empty());
        (gold, clone)
    };
    let layers = dir.path().join("layers");
    // Bit rot in the golden image, and a clone whose map lost its header.
    std::fs::write(layers.join(format!("{}.data", gold.layer)), vec![8u8; 8192]).unwrap();
    std::fs::write(layers.join(format!("{}.map", clone.layer)), b"garbage").unwrap();
    let s = Store::open(dir.path()).unwrap();
    let report = s.verify(true).unwrap();
    let text = format!("{:?}", report.problems);
    assert!(text.contains("checksum"), "{text}");
    assert!(
        text.contains(&clone.id) && text.contains("shorter than"),
        "{text}"
    );
}

#[test]
fn exports_are_bound_to_their_clients() {
    let (_d, s) = store();
    let v = s.create(Some("os-1"), 1 << 20).unwrap().record.id;
    let node: IpAddr = "10.0.0.5".parse().unwrap();
    let other: IpAddr = "10.0.0.6".parse().unwrap();
    assert!(matches!(s.open("os-1", node), Err(ExportError::Unknown(_))));
    s.export_add(&v, vec!["10.0.0.5/32".parse().unwrap()], false)
        .unwrap();
    assert!(s.open("os-1", node).is_ok());
    assert!(s.open(&v, node).is_ok());
    assert!(matches!(
        s.open("os-1", other),
        Err(ExportError::Denied { .. })
    ));
    assert_eq!(ExportCatalog::list(&s, node).len(), 1);
    assert!(ExportCatalog::list(&s, other).is_empty());
    let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
    assert!(s.open("os-1", mapped).is_ok());
    // Read-only export of a writable volume.
    s.export_add(&v, vec![], true).unwrap();
    let e = s.open("os-1", other).unwrap();
    assert!(e.device.read_only());
    assert!(e.device.write_at(b"x", 0, false).is_err());
    // An open connection holds the volume.
    assert!(matches!(s.delete("os-1"), Err(StoreError::InUse { .. })));
    drop(e);
    s.export_remove("os-1").unwrap();
    assert!(matches!(s.open("os-1", node), Err(ExportError::Unknown(_))));
}

#[test]
fn snapshot_keeps_the_live_volume_writable_and_the_snapshot_fixed() {
    let (_d, s) = store();
    let v = s.create(Some("os"), 1 << 20).unwrap().record.id;
    let lease = s.lease(&v).unwrap();
    lease.volume().write_at(&[1u8; 100], 0, false).unwrap();
    let snap = s.snapshot(&v, Some("snap")).unwrap().record.id;
    // The open handle continues on the new layer.
    lease.volume().write_at(&[2u8; 50], 0, false).unwrap();
    let mut buf = [0u8; 100];
    lease.volume().read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..50], &[2u8; 50]);
    assert_eq!(&buf[50..], &[1u8; 50]);
    s.lease(&snap)
        .unwrap()
        .volume()
        .read_at(&mut buf, 0)
        .unwrap();
    assert_eq!(buf, [1u8; 100]);
    assert_eq!(
        s.info(&v).unwrap().record.parent.as_deref(),
        Some(snap.as_str())
    );
}

#[test]
fn flatten_detaches_a_clone_with_its_content() {
    let (_d, s) = store();
    let gold = frozen_base(&s, 1 << 20);
    let c = s.clone_volume(&gold, Some("c")).unwrap().record.id;
    s.lease(&c)
        .unwrap()
        .volume()
        .write_at(b"CLONE", 100, false)
        .unwrap();
    let flat = s.flatten("c").unwrap();
    assert_eq!(flat.record.parent, None);
    assert!(flat.parent_chain.is_empty());
    let mut buf = [0u8; 105];
    s.lease(&c).unwrap().volume().read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..6], b"golden");
    assert_eq!(&buf[100..], b"CLONE");
    s.delete("c").unwrap();
    s.delete(&gold).unwrap_err(); // still the parent of "base"
    assert!(s.verify(true).unwrap().problems.is_empty());
}

#[test]
fn page_cache_reads_match_blocking_reads_through_a_chain() {
    let (_d, s) = store();
    let gold = frozen_base(&s, 1 << 20);
    let clone = s.clone_volume(&gold, None).unwrap().record.id;
    let lease = s.lease(&clone).unwrap();
    let v = lease.volume();
    // Own blocks, a partly written block over the parent, the parent's blocks and holes.
    v.write_at(&[7; 5000], 70_000, false).unwrap();
    let mut want = vec![0u8; 300_000];
    v.read_at(&mut want, 0).unwrap();
    assert_eq!(&want[..6], b"golden");
    assert!(want[70_000..75_000].iter().all(|&b| b == 7));
    // That read brought every page into the cache, holes included.
    let mut got = vec![0xa5u8; 300_000];
    if !v.read_cached(&mut got, 0).unwrap() {
        eprintln!("skipped: this file system does not serve RWF_NOWAIT reads from the cache");
        return;
    }
    assert!(
        got == want,
        "page-cache read differs from the blocking read"
    );
}
