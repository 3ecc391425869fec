//! Data generations of replicated volumes (DRBD's generation identifiers, reduced to what a
//! pair whose ownership etcd decides needs): they tell a resync whether the activity log
//! covers everything the peer's copy lacks, or the copy must be rebuilt whole.
//!
//! Both copies of a writable volume carry the same generation while in sync (0 when
//! created). When the pair marks the peer Outdated, each volume this node serves starts a new
//! generation, remembering the one the peer was left at (`peer_generation`): from then on the
//! activity log holds exactly what the peer lacks. At the resync the peer says its copy's
//! generation: this one or the one it was left at, the log is enough; any other (a copy from
//! another history: restored from an old backup, left behind by an earlier absence), every
//! region is sent. The resync ends by giving the peer's copy this node's generation.

use super::catalog::Change;
use super::{Store, StoreError, VolumeState};

impl Store {
    /// The pair marked the peer Outdated: each writable volume this node serves that is not
    /// already ahead of the peer starts a new generation. Returns how many did.
    pub fn start_generations_without_peer(&self) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut changed = Vec::new();
        for r in st.volumes.values() {
            if r.state != VolumeState::Writable
                || r.peer_generation.is_some()
                || !self.ownership.owns(&r.id)
            {
                continue;
            }
            let mut n = r.clone();
            n.peer_generation = Some(r.generation);
            n.generation = new_generation(r.generation);
            changed.push(n);
        }
        if changed.is_empty() {
            return Ok(0);
        }
        let changes: Vec<Change> = changed.iter().cloned().map(Change::PutVolume).collect();
        self.catalog.commit(&changes)?;
        for n in &changed {
            st.volumes.insert(n.id.clone(), n.clone());
        }
        tracing::info!(
            "{} volume(s) start a new generation without the peer",
            changed.len()
        );
        Ok(changed.len())
    }

    /// Volume `key`'s generation, and the one its peer copy was left at (if it is behind).
    pub fn generation(&self, key: &str) -> Result<(u64, Option<u64>), StoreError> {
        let st = self.state.lock();
        let r = st.resolve(key)?;
        Ok((r.generation, r.peer_generation))
    }

    /// This copy of volume `key` is current at `generation` (the node serving it says so at
    /// the end of a resync); `peer_generation` is forgotten.
    pub fn set_generation(&self, key: &str, generation: u64) -> Result<(), StoreError> {
        self.update_generation(key, |r| {
            r.generation = generation;
            r.peer_generation = None;
        })
    }

    /// The peer's copy of volume `key` was resynced to `generation`: if that is still this
    /// copy's, the volume is no longer ahead of the peer.
    pub(super) fn peer_caught_up(&self, key: &str, generation: u64) -> Result<(), StoreError> {
        self.update_generation(key, |r| {
            if r.generation == generation {
                r.peer_generation = None;
            }
        })
    }

    fn update_generation(
        &self,
        key: &str,
        change: impl FnOnce(&mut super::VolumeRecord),
    ) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let r = st.resolve(key)?;
        let mut n = r.clone();
        change(&mut n);
        if &n == r {
            return Ok(());
        }
        self.catalog.commit(&[Change::PutVolume(n.clone())])?;
        st.volumes.insert(n.id.clone(), n);
        Ok(())
    }
}

/// A generation other than `old` and 0 (random: two nodes never pick the same).
fn new_generation(old: u64) -> u64 {
    loop {
        let g = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([1; 8]),
        );
        if g != 0 && g != old {
            return g;
        }
    }
}
