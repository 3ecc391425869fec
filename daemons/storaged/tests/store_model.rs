//! Property test: random writes, zeroes, trims, clones, snapshots, flattens, deletes and
//! restarts against an in-memory model of every volume's bytes.

// The model's helpers run only inside the property test, where a failed unwrap is the report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use storaged::block::BlockDevice;
use storaged::store::{DEFAULT_BLOCK_SIZE, Store, VolumeState};

const SIZE: u64 = 8 * DEFAULT_BLOCK_SIZE as u64 + 4096 * 3;

#[derive(Debug, Clone)]
enum Op {
    Write { vol: usize, off: u64, len: u64, byte: u8 },
    Zero { vol: usize, off: u64, len: u64, may_trim: bool },
    Trim { vol: usize, off: u64, len: u64 },
    Clone { vol: usize },
    Snapshot { vol: usize },
    Flatten { vol: usize },
    Delete { vol: usize },
    Restart,
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    (0..SIZE).prop_flat_map(|off| (Just(off), 1..=(SIZE - off).min(3 * DEFAULT_BLOCK_SIZE as u64)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<usize>(), range(), any::<u8>()).prop_map(|(vol, (off, len), byte)| Op::Write { vol, off, len, byte }),
        2 => (any::<usize>(), range(), any::<bool>()).prop_map(|(vol, (off, len), may_trim)| Op::Zero { vol, off, len, may_trim }),
        2 => (any::<usize>(), range()).prop_map(|(vol, (off, len))| Op::Trim { vol, off, len }),
        2 => any::<usize>().prop_map(|vol| Op::Clone { vol }),
        2 => any::<usize>().prop_map(|vol| Op::Snapshot { vol }),
        1 => any::<usize>().prop_map(|vol| Op::Flatten { vol }),
        1 => any::<usize>().prop_map(|vol| Op::Delete { vol }),
        1 => Just(Op::Restart),
    ]
}

struct Model {
    /// Volume id → (content, frozen, parent).
    volumes: BTreeMap<String, (Vec<u8>, bool, Option<String>)>,
}

impl Model {
    fn pick(&self, i: usize, want: Option<bool>) -> Option<String> {
        let ids: Vec<&String> = self
            .volumes
            .iter()
            .filter(|(_, (_, frozen, _))| want.is_none_or(|w| *frozen == w))
            .map(|(id, _)| id)
            .collect();
        (!ids.is_empty()).then(|| ids[i % ids.len()].clone())
    }
}

fn check(store: &Store, model: &Model) {
    let listed: Vec<String> = store.list().into_iter().map(|v| v.record.id).collect();
    let expected: Vec<String> = model.volumes.keys().cloned().collect();
    assert_eq!(listed, expected);
    for (id, (content, frozen, parent)) in &model.volumes {
        let info = store.info(id).unwrap();
        assert_eq!(info.record.state == VolumeState::Frozen, *frozen, "state of {id}");
        assert_eq!(&info.record.parent, parent, "parent of {id}");
        let lease = store.lease(id).unwrap();
        let v = lease.volume();
        let mut buf = vec![0u8; SIZE as usize];
        v.read_at(&mut buf, 0).unwrap();
        if buf != *content {
            let diff: Vec<usize> = (0..buf.len()).filter(|&i| buf[i] != content[i]).collect();
            panic!(
                "content of {id} differs from the model at {} bytes, first {:?} last {:?}",
                diff.len(),
                diff.first(),
                diff.last()
            );
        }
        // Ranges reported as zero must read as zeroes.
        let mut pos = 0u64;
        for e in v.block_status(0, SIZE).unwrap() {
            if e.zero {
                assert!(content[pos as usize..(pos + e.len) as usize].iter().all(|&b| b == 0));
            }
            pos += e.len;
        }
        assert_eq!(pos, SIZE, "block status covers the volume");
    }
    let report = store.verify(true).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let base = store.create(Some("base"), SIZE).unwrap().record.id;
        let mut model = Model { volumes: BTreeMap::from([(base, (vec![0u8; SIZE as usize], false, None))]) };
        let bs = DEFAULT_BLOCK_SIZE as u64;
        for op in ops {
            match op {
                Op::Write { vol, off, len, byte } => {
                    let Some(id) = model.pick(vol, Some(false)) else { continue };
                    let data = vec![byte; len as usize];
                    store.lease(&id).unwrap().volume().write_at(&data, off, byte % 3 == 0).unwrap();
                    model.volumes.get_mut(&id).unwrap().0[off as usize..(off + len) as usize].copy_from_slice(&data);
                }
                Op::Zero { vol, off, len, may_trim } => {
                    let Some(id) = model.pick(vol, Some(false)) else { continue };
                    store.lease(&id).unwrap().volume().write_zeroes(off, len, may_trim, false).unwrap();
                    model.volumes.get_mut(&id).unwrap().0[off as usize..(off + len) as usize].fill(0);
                }
                Op::Trim { vol, off, len } => {
                    let Some(id) = model.pick(vol, Some(false)) else { continue };
                    store.lease(&id).unwrap().volume().trim(off, len).unwrap();
                    let (start, end) = (off.div_ceil(bs) * bs, (off + len) / bs * bs);
                    if start < end {
                        model.volumes.get_mut(&id).unwrap().0[start as usize..end as usize].fill(0);
                    }
                }
                Op::Clone { vol } => {
                    let Some(id) = model.pick(vol, Some(true)) else { continue };
                    let c = store.clone_volume(&id, None).unwrap().record.id;
                    let content = model.volumes[&id].0.clone();
                    model.volumes.insert(c, (content, false, Some(id)));
                }
                Op::Snapshot { vol } => {
                    let Some(id) = model.pick(vol, Some(false)) else { continue };
                    let s = store.snapshot(&id, None).unwrap().record.id;
                    let (content, _, parent) = model.volumes[&id].clone();
                    model.volumes.insert(s.clone(), (content, true, parent));
                    model.volumes.get_mut(&id).unwrap().2 = Some(s);
                }
                Op::Flatten { vol } => {
                    let Some(id) = model.pick(vol, None) else { continue };
                    store.flatten(&id).unwrap();
                    model.volumes.get_mut(&id).unwrap().2 = None;
                }
                Op::Delete { vol } => {
                    let Some(id) = model.pick(vol, None) else { continue };
                    let has_children = model.volumes.values().any(|(_, _, p)| p.as_deref() == Some(id.as_str()));
                    let result = store.delete(&id);
                    prop_assert_eq!(result.is_err(), has_children, "delete {} -> {:?}", id, result.err().map(|e| e.to_string()));
                    if !has_children {
                        model.volumes.remove(&id);
                    }
                }
                Op::Restart => {
                    store.sync_all().unwrap();
                    drop(store);
                    store = Store::open(dir.path()).unwrap();
                }
            }
            check(&store, &model);
        }
    }
}
