//! The embedded metadata store: one redb database, one table of records keyed
//! `<kind prefix>/<id>`, and the global revision counter.
//!
//! Value layout: JSON `{"created": u64, "revision": u64, "value": <document>}`.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Kind, MetaError, MetaStore, Op, Record, Revision, check};

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

    use super::super::{Expect, suite};
    use super::*;

    fn open(dir: &tempfile::TempDir) -> RedbStore {
        RedbStore::open(&dir.path().join("m.redb")).unwrap()
    }

    #[test]
    fn passes_the_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        suite::all(&open(&dir));
    }

    #[test]
    fn large_transactions_commit_atomically() {
        let dir = tempfile::tempdir().unwrap();
        suite::large_transactions(&open(&dir), 2000);
    }

    #[test]
    fn a_reopen_keeps_the_records_and_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        let r = suite::put_one(&s, "a").unwrap();
        drop(s);
        let s = open(&dir);
        assert_eq!(s.revision().unwrap(), r);
        assert_eq!(s.get(Kind::PlanScript, "a").unwrap().unwrap().revision, r);
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
        let r = s
            .apply(vec![Op::Put {
                kind: Kind::PlanScript,
                id: "a".into(),
                value: json!(1),
                expect: Expect::Absent,
            }])
            .unwrap();
        drop(s);
        // The later open only reads the table list.
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get(Kind::PlanScript, "a").unwrap().unwrap().revision, r);
        assert_eq!(s.revision().unwrap(), r);
    }
}
