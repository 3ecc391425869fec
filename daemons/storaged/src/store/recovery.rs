//! Start-up clean-up: files that no catalog record references are what an interrupted
//! create, clone, import, snapshot or delete left behind, and are removed.

use std::collections::HashSet;

use super::{Store, StoreError};

impl Store {
    /// Files in `layers/` that no record needs.
    pub(super) fn leftover_files(&self) -> Result<Vec<std::path::PathBuf>, StoreError> {
        let st = self.state.lock();
        let mut needed = HashSet::new();
        for r in st.volumes.values() {
            let p = self.paths(&r.layer);
            needed.insert(p.data);
            if r.parent.is_some() {
                needed.insert(p.map);
            }
        }
        let entries = std::fs::read_dir(&self.layers_dir).map_err(StoreError::io(format!(
            "reading {}",
            self.layers_dir.display()
        )))?;
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(StoreError::io("reading the layers directory"))?
                .path();
            if !needed.contains(&path) {
                out.push(path);
            }
        }
        Ok(out)
    }

    pub(super) fn remove_leftovers(&self) -> Result<(), StoreError> {
        for path in self.leftover_files()? {
            tracing::info!("removing leftover {}", path.display());
            std::fs::remove_file(&path)
                .map_err(StoreError::io(format!("removing {}", path.display())))?;
        }
        Ok(())
    }
}
