//! The catalog: every volume's record and every export, in one redb database.
//!
//! Metadata changes that touch several volumes (a snapshot re-parents the live volume onto the
//! new frozen one) commit in one transaction, so a crash leaves either the old or the new state.
//! Layer files are created before the transaction that references them and removed after the
//! one that forgets them; files no record references are removed when the store opens.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::store::record::{ExportRecord, VolumeRecord};

const VOLUMES: TableDefinition<&str, &str> = TableDefinition::new("volumes");
const EXPORTS: TableDefinition<&str, &str> = TableDefinition::new("exports");

/// Catalog failures.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Db(String),
    #[error("catalog record {key:?} is unreadable: {source}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

fn db_err<E: std::fmt::Display>(e: E) -> CatalogError {
    CatalogError::Db(e.to_string())
}

/// One change to apply atomically.
#[derive(Debug, Clone)]
pub enum Change {
    PutVolume(VolumeRecord),
    DeleteVolume(String),
    PutExport(ExportRecord),
    DeleteExport(String),
}

/// The catalog database.
#[derive(Debug)]
pub struct Catalog {
    db: Database,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let db = redb_tables::open(path, &[&VOLUMES, &EXPORTS]).map_err(db_err)?;
        Ok(Self { db })
    }

    /// Applies `changes` in one durable transaction.
    pub fn commit(&self, changes: &[Change]) -> Result<(), CatalogError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut volumes = txn.open_table(VOLUMES).map_err(db_err)?;
            let mut exports = txn.open_table(EXPORTS).map_err(db_err)?;
            for change in changes {
                match change {
                    Change::PutVolume(r) => {
                        volumes
                            .insert(r.id.as_str(), json(r)?.as_str())
                            .map_err(db_err)?;
                    }
                    Change::DeleteVolume(id) => {
                        volumes.remove(id.as_str()).map_err(db_err)?;
                    }
                    Change::PutExport(r) => {
                        exports
                            .insert(r.volume.as_str(), json(r)?.as_str())
                            .map_err(db_err)?;
                    }
                    Change::DeleteExport(id) => {
                        exports.remove(id.as_str()).map_err(db_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRecord>, CatalogError> {
        self.all(VOLUMES)
    }

    pub fn exports(&self) -> Result<Vec<ExportRecord>, CatalogError> {
        self.all(EXPORTS)
    }

    fn all<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &str>,
    ) -> Result<Vec<T>, CatalogError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push(
                serde_json::from_str(v.value()).map_err(|source| CatalogError::Record {
                    key: k.value().to_string(),
                    source,
                })?,
            );
        }
        Ok(out)
    }
}

fn json<T: Serialize>(v: &T) -> Result<String, CatalogError> {
    serde_json::to_string(v).map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_without_the_tables_gets_them_and_a_reopen_keeps_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        // A database without our tables (as a crash right after its creation leaves it).
        drop(Database::create(&path).unwrap());
        let c = Catalog::open(&path).unwrap();
        assert!(c.volumes().unwrap().is_empty());
        assert!(c.exports().unwrap().is_empty());
        let export = ExportRecord {
            volume: "v1".into(),
            allow: Vec::new(),
            read_only: true,
            iscsi: None,
        };
        c.commit(&[Change::PutExport(export.clone())]).unwrap();
        drop(c);
        // The later open only lists the tables.
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.exports().unwrap(), vec![export]);
    }
}
