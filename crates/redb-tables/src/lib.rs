//! Opening the appliance's embedded databases (storaged's catalog, deployd's metadata store).
//!
//! The tables are made once; later opens only list them. A write transaction at every open
//! would commit to disk at every boot, and under software emulation running redb's write path
//! for the first time is boot time (ARCHITECTURE.md, the appliance's boot). A database left
//! without its tables (a crash right after its creation) gets them at the next open.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};

/// A table a database must have.
pub trait Table {
    fn table_name(&self) -> &str;
    /// Creates the table in `txn` (opening a table creates it).
    fn create(&self, txn: &WriteTransaction) -> Result<(), redb::TableError>;
}

impl<K: redb::Key + 'static, V: redb::Value + 'static> Table for TableDefinition<'_, K, V> {
    fn table_name(&self) -> &str {
        self.name()
    }

    fn create(&self, txn: &WriteTransaction) -> Result<(), redb::TableError> {
        txn.open_table(*self).map(drop)
    }
}

/// Opens (or creates) the database at `path` with `tables`, writing only when one is missing.
pub fn open(path: &Path, tables: &[&dyn Table]) -> Result<Database, redb::Error> {
    let db = Database::create(path)?;
    let present: Vec<String> = {
        let txn = db.begin_read()?;
        txn.list_tables()?.map(|t| t.name().to_owned()).collect()
    };
    if !tables
        .iter()
        .all(|t| present.iter().any(|p| p == t.table_name()))
    {
        let txn = db.begin_write()?;
        for t in tables {
            t.create(&txn)?;
        }
        txn.commit()?;
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;

    const A: TableDefinition<&str, u64> = TableDefinition::new("a");
    const B: TableDefinition<u64, &[u8]> = TableDefinition::new("b");

    #[test]
    fn missing_tables_are_made_and_a_reopen_keeps_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        // A database without our tables, as a crash right after its creation leaves it.
        drop(Database::create(&path).unwrap());
        let db = open(&path, &[&A, &B]).unwrap();
        {
            let txn = db.begin_write().unwrap();
            txn.open_table(A).unwrap().insert("x", 7).unwrap();
            txn.commit().unwrap();
        }
        drop(db);
        let db = open(&path, &[&A, &B]).unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(A)
                .unwrap()
                .get("x")
                .unwrap()
                .unwrap()
                .value(),
            7
        );
        assert_eq!(txn.open_table(B).unwrap().len().unwrap(), 0);
    }
}
