//! After a stop in the middle of deploys and captures: delete what they left half-made.
//!
//! Their tasks were already marked Error by `Tasks::fail_interrupted`. Here, OS volumes still
//! recorded `deploying` lose their content, export and record; capture clones are deleted;
//! profiles left `Deploying` go to `Error` (their previous OS volume, if any, is untouched).

use super::capture::CAPTURE_CLONE_PREFIX;
use crate::domain::os_volumes;
use crate::domain::server_profiles::set_state;
use crate::meta::Kind;
use crate::services::Services;
use crate::services::storage::StorageError;

/// What recovery removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub os_volumes: usize,
    pub capture_clones: usize,
    pub profiles: usize,
}

/// Cleans up after an interrupted run of deployd; storaged must be reachable. One volume that
/// cannot be deleted does not stop the others from being cleaned up: its record stays
/// `deploying` (so the next start tries again) and the first such error is returned at the end.
pub async fn clean_interrupted(s: &Services) -> Result<Recovered, StorageError> {
    s.runs.cleanup_leftovers();
    let storage = &s.storage;
    let mut done = Recovered::default();
    let mut first_error = None;
    let records = s
        .meta
        .list(Kind::OsVolume)
        .map_err(|e| StorageError::Local(e.to_string()))?;
    for r in records {
        if r.value["deployState"].as_str() != Some("deploying") {
            continue;
        }
        if let Some(v) = r.value["storageVolume"].as_str()
            && let Err(e) = storage.unexport_and_delete(v).await
        {
            tracing::error!("interrupted deploy: OS volume {v} not deleted: {e}");
            first_error.get_or_insert(e);
            continue;
        }
        os_volumes::delete_record(s, &r.id);
        done.os_volumes += 1;
    }
    for v in storage.list().await? {
        if v.record.name.starts_with(CAPTURE_CLONE_PREFIX) {
            match storage.unexport_and_delete(&v.record.id).await {
                Ok(()) => done.capture_clones += 1,
                Err(e) => {
                    tracing::error!(
                        "interrupted capture: clone {} not deleted: {e}",
                        v.record.name
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    let profiles = s
        .meta
        .list(Kind::ServerProfile)
        .map_err(|e| StorageError::Local(e.to_string()))?;
    for p in profiles {
        if p.value["state"].as_str() == Some("Deploying") {
            set_state(s, &p.id, "Error", |_| {});
            done.profiles += 1;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}
