//! Per-run scratch directories, each on its own size-limited tmpfs.
//!
//! Layout under the parent (the state dir's `scratch/`, say):
//! ```text
//! <parent>/run-<uuid>/            0700 root: nothing in it is reachable by path from a sandbox
//!                    scratch/     tmpfs size=N, 0700 owned by the sandbox uid; `./` in scripts
//!                    root/        empty; the sandbox's root tmpfs is mounted here, in the
//!                                 sandbox's private mount namespace only
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::SandboxConfig;

const RUN_PREFIX: &str = "run-";

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("creating {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting a {size}-byte tmpfs on {path}")]
    Mount {
        path: PathBuf,
        size: u64,
        #[source]
        source: nix::Error,
    },
    #[error("listing {path}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A run's scratch directory. Dropping it unmounts the tmpfs and removes the directories.
#[derive(Debug)]
pub struct Scratch {
    run_dir: PathBuf,
    scratch: PathBuf,
    root_mountpoint: PathBuf,
    size_limit: u64,
}

impl Scratch {
    /// Creates a scratch directory owned by the default sandbox uid/gid.
    pub fn create(parent: &Path, size_limit: u64) -> Result<Scratch, ScratchError> {
        Scratch::create_for(parent, size_limit, &SandboxConfig::default())
    }

    /// Creates a scratch directory writable by `cfg`'s sandbox uid/gid.
    pub fn create_for(
        parent: &Path,
        size_limit: u64,
        cfg: &SandboxConfig,
    ) -> Result<Scratch, ScratchError> {
        let run_dir = parent.join(format!("{RUN_PREFIX}{}", uuid::Uuid::new_v4()));
        let create = |path: &Path, mode: u32| {
            fs::DirBuilder::new()
                .mode(mode)
                .create(path)
                .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
                .map_err(|source| ScratchError::Create {
                    path: path.to_owned(),
                    source,
                })
        };
        fs::create_dir_all(parent).map_err(|source| ScratchError::Create {
            path: parent.to_owned(),
            source,
        })?;
        create(&run_dir, 0o700)?;
        let scratch = Scratch {
            scratch: run_dir.join("scratch"),
            root_mountpoint: run_dir.join("root"),
            run_dir,
            size_limit,
        };
        create(&scratch.scratch, 0o700)?;
        create(&scratch.root_mountpoint, 0o700)?;
        let nr_inodes = (size_limit / 4096).clamp(1024, 1 << 20);
        let opts = format!(
            "size={size_limit},nr_inodes={nr_inodes},mode=0700,uid={},gid={}",
            cfg.host_uid, cfg.host_gid
        );
        nix::mount::mount(
            Some("tmpfs"),
            &scratch.scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|source| ScratchError::Mount {
            path: scratch.scratch.clone(),
            size: size_limit,
            source,
        })?;
        Ok(scratch)
    }

    /// The directory scripts see as `./` (and as `/scratch` inside the sandbox).
    pub fn path(&self) -> &Path {
        &self.scratch
    }

    /// The tmpfs size limit in bytes.
    pub fn size_limit(&self) -> u64 {
        self.size_limit
    }

    pub(super) fn root_mountpoint(&self) -> &Path {
        &self.root_mountpoint
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.scratch, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.scratch.display(), error = %e, "unmounting scratch tmpfs");
        }
        if let Err(e) = fs::remove_dir_all(&self.run_dir) {
            tracing::warn!(path = %self.run_dir.display(), error = %e, "removing scratch directory");
        }
    }
}

/// Removes the scratch directories a crashed deployd left in `parent`, unmounting their
/// tmpfs first. Returns how many it removed.
pub fn cleanup_leftovers(parent: &Path) -> Result<usize, ScratchError> {
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(ScratchError::List {
                path: parent.to_owned(),
                source,
            });
        }
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| ScratchError::List {
            path: parent.to_owned(),
            source,
        })?;
        if !entry.file_name().to_string_lossy().starts_with(RUN_PREFIX) {
            continue;
        }
        let run_dir = entry.path();
        for mountpoint in mounts_under(&run_dir) {
            let _ = nix::mount::umount2(&mountpoint, MntFlags::MNT_DETACH);
        }
        let _ = nix::mount::umount2(&run_dir.join("scratch"), MntFlags::MNT_DETACH);
        match fs::remove_dir_all(&run_dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %run_dir.display(), error = %e, "removing leftover scratch")
            }
        }
    }
    Ok(removed)
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}
