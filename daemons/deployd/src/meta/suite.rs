//! The test suite every [`MetaStore`] passes (the redb store and the etcd store run it): what
//! deployd's domain relies on, stated once.

use serde_json::{Value, json};

use super::{Expect, Kind, MetaError, MetaStore, Op, Revision};

fn put(id: &str, v: Value, expect: Expect) -> Op {
    Op::Put {
        kind: Kind::PlanScript,
        id: id.into(),
        value: v,
        expect,
    }
}

fn ids(s: &dyn MetaStore, kind: Kind, prefix: &str) -> Vec<String> {
    s.list_prefix(kind, prefix)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Creates plan script `id`; for tests of one write.
pub fn put_one(s: &dyn MetaStore, id: &str) -> Result<Revision, MetaError> {
    s.apply(vec![put(id, json!({"name": id}), Expect::Absent)])
}

/// Every property below, on an empty store.
pub fn all(s: &dyn MetaStore) {
    revisions_preconditions_and_atomicity(s);
    checks_change_nothing_and_prefixes_select_exactly(s);
    each_precondition_sees_the_earlier_operations(s);
    listing_many_records_reads_them_all_in_order(s);
}

fn revisions_preconditions_and_atomicity(s: &dyn MetaStore) {
    let r1 = s
        .apply(vec![put("a", json!({"n": 1}), Expect::Absent)])
        .unwrap();
    assert!(r1 > 0);
    assert_eq!(s.revision().unwrap(), r1);
    let a = s.get(Kind::PlanScript, "a").unwrap().unwrap();
    assert_eq!((a.created, a.revision), (r1, r1));
    // A stale revision fails and changes nothing, including the other op.
    let err = s
        .apply(vec![
            put("b", json!({}), Expect::Absent),
            put("a", json!({"n": 2}), Expect::Revision(r1 + 7)),
        ])
        .unwrap_err();
    match err {
        MetaError::Conflict { kind, id, what } => {
            assert_eq!((kind, id.as_str()), (Kind::PlanScript, "a"));
            assert!(what.contains("modified"), "{what}");
        }
        e => panic!("{e:?}"),
    }
    assert!(s.get(Kind::PlanScript, "b").unwrap().is_none());
    assert_eq!(
        s.revision().unwrap(),
        r1,
        "a failed transaction changes nothing"
    );
    // Creating what exists names it.
    let err = s
        .apply(vec![put("a", json!({}), Expect::Absent)])
        .unwrap_err();
    assert!(
        matches!(&err, MetaError::Conflict { id, what, .. } if id == "a" && what == "already exists"),
        "{err:?}"
    );
    let r2 = s
        .apply(vec![put("a", json!({"n": 2}), Expect::Revision(r1))])
        .unwrap();
    assert!(r2 > r1);
    let a = s.get(Kind::PlanScript, "a").unwrap().unwrap();
    assert_eq!((a.created, a.revision, a.value), (r1, r2, json!({"n": 2})));
    s.apply(vec![Op::Put {
        kind: Kind::BuildPlan,
        id: "x".into(),
        value: json!(1),
        expect: Expect::Any,
    }])
    .unwrap();
    assert_eq!(s.list(Kind::PlanScript).unwrap().len(), 1);
    assert_eq!(s.list(Kind::BuildPlan).unwrap().len(), 1);
    let err = s
        .apply(vec![Op::Delete {
            kind: Kind::PlanScript,
            id: "nope".into(),
            expect: Expect::Present,
        }])
        .unwrap_err();
    assert!(
        matches!(&err, MetaError::Conflict { what, .. } if what == "does not exist"),
        "{err:?}"
    );
    s.apply(vec![
        Op::Delete {
            kind: Kind::PlanScript,
            id: "a".into(),
            expect: Expect::Present,
        },
        Op::Delete {
            kind: Kind::BuildPlan,
            id: "x".into(),
            expect: Expect::Any,
        },
    ])
    .unwrap();
    assert!(s.list(Kind::PlanScript).unwrap().is_empty());
    assert!(s.get(Kind::PlanScript, "a").unwrap().is_none());
}

fn checks_change_nothing_and_prefixes_select_exactly(s: &dyn MetaStore) {
    let edge = |id: &str| Op::Put {
        kind: Kind::Reference,
        id: id.into(),
        value: json!({}),
        expect: Expect::Absent,
    };
    s.apply(vec![
        edge("golden-images/g1/deployment-plans/d1"),
        edge("golden-images/g10/deployment-plans/d2"),
        put("c", json!(1), Expect::Absent),
    ])
    .unwrap();
    assert_eq!(
        ids(s, Kind::Reference, "golden-images/g1/"),
        ["golden-images/g1/deployment-plans/d1"]
    );
    assert_eq!(ids(s, Kind::Reference, "golden-images/").len(), 2);
    assert!(ids(s, Kind::Reference, "golden-images/g2/").is_empty());
    // "Nothing under g1/" fails while the edge exists, and fails the whole transaction.
    let r = s.apply(vec![
        Op::CheckNone {
            kind: Kind::Reference,
            prefix: "golden-images/g1/".into(),
        },
        put("d", json!(1), Expect::Absent),
    ]);
    match r {
        Err(MetaError::Conflict { kind, id, .. }) => {
            assert_eq!(kind, Kind::Reference);
            assert_eq!(id, "golden-images/g1/deployment-plans/d1");
        }
        r => panic!("{r:?}"),
    }
    assert!(s.get(Kind::PlanScript, "d").unwrap().is_none());
    let before = s.revision().unwrap();
    let r = s
        .apply(vec![
            Op::CheckNone {
                kind: Kind::Reference,
                prefix: "golden-images/g2/".into(),
            },
            Op::Check {
                kind: Kind::PlanScript,
                id: "c".into(),
                expect: Expect::Present,
            },
        ])
        .unwrap();
    assert!(r >= before);
    assert_eq!(s.revision().unwrap(), r);
    assert!(matches!(
        s.apply(vec![Op::Check {
            kind: Kind::PlanScript,
            id: "nope".into(),
            expect: Expect::Present
        }]),
        Err(MetaError::Conflict { .. })
    ));
    // A check reads the same record kinds as the data: a plan script is not a name.
    assert_eq!(s.list(Kind::PlanScript).unwrap().len(), 1);
    assert!(s.list(Kind::Name).unwrap().is_empty());
    // Clean up for the next property.
    let mut ops: Vec<Op> = s
        .list(Kind::Reference)
        .unwrap()
        .into_iter()
        .map(|r| Op::Delete {
            kind: Kind::Reference,
            id: r.id,
            expect: Expect::Revision(r.revision),
        })
        .collect();
    ops.push(Op::Delete {
        kind: Kind::PlanScript,
        id: "c".into(),
        expect: Expect::Present,
    });
    s.apply(ops).unwrap();
}

/// A rename frees one name and takes another in one transaction; a later operation on a key
/// sees what an earlier one did to it.
fn each_precondition_sees_the_earlier_operations(s: &dyn MetaStore) {
    let name = |n: &str, expect: Expect| Op::Put {
        kind: Kind::Name,
        id: format!("plan-scripts/{n}"),
        value: json!({"id": "p"}),
        expect,
    };
    let drop_name = |n: &str| Op::Delete {
        kind: Kind::Name,
        id: format!("plan-scripts/{n}"),
        expect: Expect::Present,
    };
    s.apply(vec![name("one", Expect::Absent)]).unwrap();
    // Delete, then create the same key: absent by then.
    s.apply(vec![drop_name("one"), name("one", Expect::Absent)])
        .unwrap();
    // Create, then create again in one transaction: the second sees the first.
    let err = s
        .apply(vec![
            name("two", Expect::Absent),
            name("two", Expect::Absent),
        ])
        .unwrap_err();
    assert!(matches!(err, MetaError::Conflict { .. }), "{err:?}");
    assert!(s.get(Kind::Name, "plan-scripts/two").unwrap().is_none());
    // Write twice: the last value stays.
    s.apply(vec![
        Op::Put {
            kind: Kind::Name,
            id: "plan-scripts/three".into(),
            value: json!({"id": "first"}),
            expect: Expect::Absent,
        },
        Op::Put {
            kind: Kind::Name,
            id: "plan-scripts/three".into(),
            value: json!({"id": "last"}),
            expect: Expect::Present,
        },
    ])
    .unwrap();
    let three = s.get(Kind::Name, "plan-scripts/three").unwrap().unwrap();
    assert_eq!(three.value, json!({"id": "last"}));
    // Deleting twice fails on the second.
    let err = s
        .apply(vec![drop_name("one"), drop_name("one")])
        .unwrap_err();
    assert!(matches!(err, MetaError::Conflict { .. }), "{err:?}");
    assert!(s.get(Kind::Name, "plan-scripts/one").unwrap().is_some());
    s.apply(vec![drop_name("one"), drop_name("three")]).unwrap();
    assert!(s.list(Kind::Name).unwrap().is_empty());
}

fn listing_many_records_reads_them_all_in_order(s: &dyn MetaStore) {
    let n = 1234;
    let ops = (0..n)
        .map(|i| Op::Put {
            kind: Kind::Task,
            id: format!("t{i:05}"),
            value: json!({"i": i}),
            expect: Expect::Absent,
        })
        .collect();
    s.apply(ops).unwrap();
    let all = s.list(Kind::Task).unwrap();
    assert_eq!(all.len(), n);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all[777].value, json!({"i": 777}));
    assert_eq!(s.list_prefix(Kind::Task, "t0012").unwrap().len(), 10);
    let ops = all
        .into_iter()
        .map(|r| Op::Delete {
            kind: Kind::Task,
            id: r.id,
            expect: Expect::Present,
        })
        .collect();
    s.apply(ops).unwrap();
    assert!(s.list(Kind::Task).unwrap().is_empty());
}

/// `copy_all` from this store into `to` (empty): every record, once.
pub fn copies_every_record_once(from: &dyn MetaStore, to: &dyn MetaStore) {
    let ops = (0..5000)
        .map(|i| Op::Put {
            kind: if i % 2 == 0 { Kind::Task } else { Kind::Name },
            id: format!("r{i:05}"),
            value: json!({"i": i}),
            expect: Expect::Absent,
        })
        .collect();
    from.apply(ops).unwrap();
    assert_eq!(super::copy_all(from, to, "copied").unwrap(), 5000);
    assert_eq!(to.list(Kind::Task).unwrap().len(), 2500);
    assert_eq!(
        to.get(Kind::Name, "r00001").unwrap().unwrap().value,
        json!({"i": 1})
    );
    // Once only.
    assert_eq!(super::copy_all(from, to, "copied").unwrap(), 0);
}

/// A transaction of `n` operations (a bundle of hundreds of artifacts with their index
/// records) commits whole, and fails whole.
pub fn large_transactions(s: &dyn MetaStore, n: usize) {
    let many = |offset: usize| -> Vec<Op> {
        (0..n)
            .map(|i| Op::Put {
                kind: Kind::PlanScript,
                id: format!("bulk-{}", i + offset),
                value: json!({"content": "x".repeat(1000)}),
                expect: Expect::Absent,
            })
            .collect()
    };
    s.apply(many(0)).unwrap();
    assert_eq!(s.list(Kind::PlanScript).unwrap().len(), n);
    // The same again with one record in common: nothing of it lands.
    let before = s.revision().unwrap();
    let err = s.apply(many(n - 1)).unwrap_err();
    assert!(matches!(err, MetaError::Conflict { .. }), "{err:?}");
    assert_eq!(s.revision().unwrap(), before);
    assert_eq!(s.list(Kind::PlanScript).unwrap().len(), n);
}
