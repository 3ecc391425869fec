//! The embedded metadata store: one redb database, one table of records keyed
//! `<kind prefix>/<id>`, and the global revision counter.
//!
//! Value layout: JSON `{"created": u64, "revision": u64, "value": <document>}`.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Expect, Kind, MetaError, MetaStore, Op, Record, Revision};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const REVISION: &str = "revision";

#[derive(Serialize, Deserialize)]
struct Stored {
    created: Revision,
    revision: Revision,
    value: Value,
}

fn backend<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Backend(e.to_string())
}

fn key(kind: Kind, id: &str) -> String {
    format!("{}/{id}", kind.prefix())
}

/// redb-backed [`MetaStore`].
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = redb_tables::open(path, &[&RECORDS, &COUNTERS]).map_err(backend)?;
        Ok(Self { db })
    }
}

fn decode(kind: Kind, id: &str, bytes: &[u8]) -> Result<Record, MetaError> {
    let s: Stored = serde_json::from_slice(bytes)
        .map_err(|e| MetaError::Backend(format!("record {}: {e}", key(kind, id))))?;
    Ok(Record {
        kind,
        id: id.to_string(),
        created: s.created,
        revision: s.revision,
        value: s.value,
    })
}

fn check(kind: Kind, id: &str, expect: Expect, current: Option<Revision>) -> Result<(), MetaError> {
    let fail = |what: String| {
        Err(MetaError::Conflict {
            kind,
            id: id.to_string(),
            what,
        })
    };
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) | (Expect::Present, Some(_)) => Ok(()),
        (Expect::Absent, Some(_)) => fail("already exists".into()),
        (Expect::Present | Expect::Revision(_), None) => fail("does not exist".into()),
        (Expect::Revision(want), Some(have)) if want == have => Ok(()),
        (Expect::Revision(want), Some(have)) => {
            fail(format!("was modified (revision {have}, expected {want})"))
        }
    }
}

impl MetaStore for RedbStore {
    fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, MetaError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(RECORDS).map_err(backend)?;
        match t.get(key(kind, id).as_str()).map_err(backend)? {
            Some(v) => Ok(Some(decode(kind, id, v.value())?)),
            None => Ok(None),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<Record>, MetaError> {
        self.list_prefix(kind, "")
    }

    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Vec<Record>, MetaError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(RECORDS).map_err(backend)?;
        let start = key(kind, prefix);
        let kind_len = kind.prefix().len() + 1;
        let mut out = Vec::new();
        for row in t.range(start.as_str()..).map_err(backend)? {
            let (k, v) = row.map_err(backend)?;
            if !k.value().starts_with(&start) {
                break;
            }
            let id = &k.value()[kind_len..];
            out.push(decode(kind, id, v.value())?);
        }
        Ok(out)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<Revision, MetaError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let revision;
        {
            let mut counters = txn.open_table(COUNTERS).map_err(backend)?;
            revision = counters
                .get(REVISION)
                .map_err(backend)?
                .map_or(0, |v| v.value())
                + 1;
            counters.insert(REVISION, revision).map_err(backend)?;
            let mut records = txn.open_table(RECORDS).map_err(backend)?;
            for op in ops {
                match op {
                    Op::Put {
                        kind,
                        id,
                        value,
                        expect,
                    } => {
                        let k = key(kind, &id);
                        let existing = records
                            .get(k.as_str())
                            .map_err(backend)?
                            .map(|v| decode(kind, &id, v.value()))
                            .transpose()?;
                        check(kind, &id, expect, existing.as_ref().map(|r| r.revision))?;
                        let stored = Stored {
                            created: existing.map_or(revision, |r| r.created),
                            revision,
                            value,
                        };
                        let bytes = serde_json::to_vec(&stored).map_err(backend)?;
                        records
                            .insert(k.as_str(), bytes.as_slice())
                            .map_err(backend)?;
                    }
                    Op::Delete { kind, id, expect } => {
                        let k = key(kind, &id);
                        let current = records
                            .get(k.as_str())
                            .map_err(backend)?
                            .map(|v| decode(kind, &id, v.value()))
                            .transpose()?
                            .map(|r| r.revision);
                        check(kind, &id, expect, current)?;
                        records.remove(k.as_str()).map_err(backend)?;
                    }
                    Op::Check { kind, id, expect } => {
                        let current = records
                            .get(key(kind, &id).as_str())
                            .map_err(backend)?
                            .map(|v| decode(kind, &id, v.value()))
                            .transpose()?
                            .map(|r| r.revision);
                        check(kind, &id, expect, current)?;
                    }
                    Op::CheckNone { kind, prefix } => {
                        let start = key(kind, &prefix);
                        let first = records
                            .range(start.as_str()..)
                            .map_err(backend)?
                            .next()
                            .transpose()
                            .map_err(backend)?
                            .map(|(k, _)| k.value().to_string());
                        if let Some(k) = first.filter(|k| k.starts_with(&start)) {
                            return Err(MetaError::Conflict {
                                kind,
                                id: k[kind.prefix().len() + 1..].to_string(),
                                what: format!("exists (none under {prefix:?} expected)"),
                            });
                        }
                    }
                }
            }
        }
        // Dropping `txn` without commit on an error above aborts every change.
        txn.commit().map_err(backend)?;
        Ok(revision)
    }

    fn revision(&self) -> Result<Revision, MetaError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(COUNTERS).map_err(backend)?;
        Ok(t.get(REVISION).map_err(backend)?.map_or(0, |v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn put(id: &str, v: Value, expect: Expect) -> Op {
        Op::Put {
            kind: Kind::PlanScript,
            id: id.into(),
            value: v,
            expect,
        }
    }

    #[test]
    fn revisions_preconditions_and_atomicity() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("m.redb")).unwrap();
        let r1 = s
            .apply(vec![put("a", json!({"n": 1}), Expect::Absent)])
            .unwrap();
        assert_eq!(s.get(Kind::PlanScript, "a").unwrap().unwrap().revision, r1);
        // A stale revision fails and changes nothing, including the other op.
        let err = s
            .apply(vec![
                put("b", json!({}), Expect::Absent),
                put("a", json!({"n": 2}), Expect::Revision(r1 + 7)),
            ])
            .unwrap_err();
        assert!(matches!(err, MetaError::Conflict { .. }));
        assert!(s.get(Kind::PlanScript, "b").unwrap().is_none());
        let r2 = s
            .apply(vec![put("a", json!({"n": 2}), Expect::Revision(r1))])
            .unwrap();
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
        drop(s);
        let s = RedbStore::open(&dir.path().join("m.redb")).unwrap();
        assert_eq!(s.revision().unwrap(), r2 + 1);
        s.apply(vec![Op::Delete {
            kind: Kind::PlanScript,
            id: "a".into(),
            expect: Expect::Present,
        }])
        .unwrap();
        assert!(s.list(Kind::PlanScript).unwrap().is_empty());
    }

    #[test]
    fn checks_change_nothing_and_prefixes_select_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("m.redb")).unwrap();
        let edge = |id: &str| Op::Put {
            kind: Kind::Reference,
            id: id.into(),
            value: json!({}),
            expect: Expect::Absent,
        };
        s.apply(vec![
            edge("golden-images/g1/deployment-plans/d1"),
            edge("golden-images/g10/deployment-plans/d2"),
            put("a", json!(1), Expect::Absent),
        ])
        .unwrap();
        let ids = |p: &str| -> Vec<String> {
            s.list_prefix(Kind::Reference, p)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(
            ids("golden-images/g1/"),
            ["golden-images/g1/deployment-plans/d1"]
        );
        assert_eq!(ids("golden-images/").len(), 2);
        assert!(ids("golden-images/g2/").is_empty());
        // "Nothing under g1/" fails while the edge exists, and fails the whole transaction.
        let r = s.apply(vec![
            Op::CheckNone {
                kind: Kind::Reference,
                prefix: "golden-images/g1/".into(),
            },
            put("b", json!(1), Expect::Absent),
        ]);
        assert!(matches!(r, Err(MetaError::Conflict { .. })), "{r:?}");
        assert!(s.get(Kind::PlanScript, "b").unwrap().is_none());
        let rev = s.revision().unwrap();
        let r = s.apply(vec![
            Op::CheckNone {
                kind: Kind::Reference,
                prefix: "golden-images/g2/".into(),
            },
            Op::Check {
                kind: Kind::PlanScript,
                id: "a".into(),
                expect: Expect::Present,
            },
        ]);
        assert_eq!(r.unwrap(), rev + 1);
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
    }

    #[test]
    fn a_database_without_the_tables_gets_them_and_a_reopen_keeps_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        // A database without our tables (as a crash right after its creation leaves it).
        drop(Database::create(&path).unwrap());
        let s = RedbStore::open(&path).unwrap();
        assert!(s.list(Kind::PlanScript).unwrap().is_empty());
        assert_eq!(s.revision().unwrap(), 0);
        let r = s.apply(vec![put("a", json!(1), Expect::Absent)]).unwrap();
        drop(s);
        // The later open only reads the table list.
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get(Kind::PlanScript, "a").unwrap().unwrap().revision, r);
        assert_eq!(s.revision().unwrap(), r);
    }
}
