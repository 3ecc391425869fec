//! Volumes waiting for the peer, each list a file of ids under `STORE/activity/` (written
//! whole and synced, then renamed): the volumes **deleted** here while the peer was away (the
//! resync deletes them there), and the volumes whose transfer to the peer did not complete
//! (**unsent**: the peer was marked Outdated half-way through an import; the resync sends
//! them whole, and a golden image is frozen there only then).

use std::fs::File;
use std::path::PathBuf;

use parking_lot::Mutex;

use super::StoreError;

#[derive(Debug)]
pub(super) struct IdList {
    path: PathBuf,
    /// One change of the file at a time.
    changing: Mutex<()>,
}

impl IdList {
    pub(super) fn new(path: PathBuf) -> IdList {
        IdList {
            path,
            changing: Mutex::new(()),
        }
    }

    pub(super) fn ids(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids().iter().any(|i| i == id)
    }

    pub(super) fn add(&self, id: &str) -> Result<(), StoreError> {
        let _one = self.changing.lock();
        let mut ids = self.ids();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
            self.write(&ids)?;
        }
        Ok(())
    }

    pub(super) fn remove(&self, id: &str) -> Result<(), StoreError> {
        let _one = self.changing.lock();
        let ids = self.ids();
        if ids.iter().any(|i| i == id) {
            let rest: Vec<String> = ids.into_iter().filter(|i| i != id).collect();
            self.write(&rest)?;
        }
        Ok(())
    }

    /// Runs `f` on the ids, then empties the list if it succeeded (a change at a time).
    pub(super) fn drain(
        &self,
        f: impl FnOnce(&[String]) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let _one = self.changing.lock();
        let ids = self.ids();
        f(&ids)?;
        if !ids.is_empty() {
            self.write(&[])?;
        }
        Ok(ids.len())
    }

    fn write(&self, ids: &[String]) -> Result<(), StoreError> {
        let path = &self.path;
        let io = |e| StoreError::io(format!("writing {}", path.display()))(e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let mut text = ids.join("\n");
        text.push('\n');
        std::fs::write(&tmp, text).map_err(io)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}
