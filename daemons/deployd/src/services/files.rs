//! Files deployd keeps beside its database: uploads in progress (`tmp/`), stored artifact
//! bundles (`bundles/`), per-resource activity logs (`logs/<collection>/<id>.log`) and the
//! plan runs' work directories (`runs/`).
//!
//! Temporary files are `tempfile::NamedTempFile`s in `tmp/`: dropped on every error path, so
//! a failed upload or import leaves nothing behind; `tmp/` is emptied at start for the files a
//! crash left.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::clock::now_iso;

/// Failures of the state directory's files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("creating the temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("creating a temporary file: {0}")]
    TempFile(#[source] std::io::Error),
    #[error("reading the activity log: {0}")]
    ReadLog(#[source] std::io::Error),
}

/// deployd's state directory.
#[derive(Debug, Clone)]
pub struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The state directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directories, makes the state directory private (0700: it holds the
    /// metadata store, keys and logs) and removes temporary files a previous process left.
    pub fn prepare(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        let tmp = self.tmp_dir();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        for d in ["tmp", "bundles", "logs"] {
            std::fs::create_dir_all(self.dir.join(d))?;
        }
        Ok(())
    }

    /// Makes a file of the state directory readable by its owner only (0600).
    pub fn make_private(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.dir.join("bundles")
    }

    /// Where plan runs keep their mount points and scratch space.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// A new temporary file in the state directory (removed when dropped).
    pub fn temp_file(&self) -> Result<NamedTempFile, FilesError> {
        temp_file_in(&self.tmp_dir())
    }

    fn log_path(&self, collection: &str, id: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(collection)
            .join(format!("{id}.log"))
    }

    /// Appends a timestamped line to the activity log of resource `collection/id`.
    pub fn log(&self, collection: &str, id: &str, line: &str) {
        let path = self.log_path(collection, id);
        let r = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            writeln!(f, "{} {line}", now_iso())
        })();
        if let Err(e) = r {
            tracing::warn!("activity log {}: {e}", path.display());
        }
    }

    /// The activity log of a resource ("" if nothing was logged).
    pub fn read_log(&self, collection: &str, id: &str) -> Result<String, FilesError> {
        match std::fs::read_to_string(self.log_path(collection, id)) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(FilesError::ReadLog(e)),
        }
    }

    pub fn remove_log(&self, collection: &str, id: &str) {
        let _ = std::fs::remove_file(self.log_path(collection, id));
    }

    /// Removes the oldest logs of `collection` beyond the `keep` newest.
    pub fn prune_logs(&self, collection: &str, keep: usize) {
        let dir = self.dir.join("logs").join(collection);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut logs: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if logs.len() <= keep {
            return;
        }
        logs.sort();
        for (_, path) in &logs[..logs.len() - keep] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A new temporary file in `dir` (removed when dropped).
pub fn temp_file_in(dir: &Path) -> Result<NamedTempFile, FilesError> {
    std::fs::create_dir_all(dir).map_err(FilesError::TempDir)?;
    NamedTempFile::new_in(dir).map_err(FilesError::TempFile)
}

/// Writes a file only its owner can read (0600), atomically: keys and passwords.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic(path, data, 0o600)
}

/// Replaces `path` with `data` so that a power cut leaves the old file or the new one, never
/// a part: a synced temporary file beside it, renamed over it, then the directory synced.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    let tmp = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}
