//! The volume store: a data directory of layer files plus the catalog that gives them meaning.
//!
//! ```text
//! DATA_DIR/lock            flock()ed by the daemon that owns the store
//! DATA_DIR/catalog.redb    volume records and exports (see `catalog`)
//! DATA_DIR/layers/<id>.data, <id>.map
//! ```
//!
//! Metadata operations are serialized by one mutex and committed to the catalog before the
//! in-memory state changes; I/O on open volumes runs concurrently and never takes that mutex.

pub mod catalog;
mod exports;
mod generations;
mod pending;
pub mod record;
mod recovery;
mod transfer;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use parking_lot::Mutex;

pub use self::catalog::CatalogError;
use self::catalog::{Catalog, Change};
pub use self::record::{
    ExportRecord, Problem, VerifyReport, VolumeInfo, VolumeRecord, VolumeState,
};
pub use self::transfer::Progress;
use crate::ownership::Ownership;
use crate::volume::layer::{Layer, LayerPaths};
use crate::volume::presence::MapError;
use crate::volume::{ActivityLog, CatalogOp, LocalOnly, Replica, Volume, WriteOp};

/// Copy-on-write granularity of new layers. 64 KiB, like qcow2's default cluster: small enough
/// that a first write copies little, large enough that a 64 GiB volume's presence map is
/// 128 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;

/// Largest volume the store accepts (64 TiB).
pub const MAX_VOLUME_SIZE: u64 = 64 << 40;

/// Store failures. Each names the volume or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no volume named or with id {0:?}")]
    NotFound(String),
    #[error("a volume named {0:?} already exists; choose another name")]
    NameTaken(String),
    #[error("volume {volume} has children ({}): delete them first", children.join(", "))]
    HasChildren {
        volume: String,
        children: Vec<String>,
    },
    #[error("volume {volume} is in use by {users} connection(s) or operation(s)")]
    InUse { volume: String, users: usize },
    #[error("volume {0} is frozen (immutable): clone it to get a writable volume")]
    Frozen(String),
    #[error(
        "volume {0} is writable; a clone needs an immutable parent: snapshot it first \
         (storaged volume snapshot {0})"
    )]
    NotFrozen(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("data directory {path} is in use by another storaged")]
    Locked { path: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Layer(#[from] MapError),
    #[error(transparent)]
    ImageFile(#[from] crate::imagefile::ImageFileError),
}

impl StoreError {
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Records as loaded from the catalog; changed only after a successful commit.
#[derive(Debug, Default)]
struct State {
    volumes: BTreeMap<String, VolumeRecord>,
    exports: BTreeMap<String, ExportRecord>,
}

impl State {
    fn resolve(&self, key: &str) -> Result<&VolumeRecord, StoreError> {
        self.volumes
            .get(key)
            .or_else(|| self.volumes.values().find(|r| r.name == key))
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }

    fn children(&self, id: &str) -> Vec<&VolumeRecord> {
        self.volumes
            .values()
            .filter(|r| r.parent.as_deref() == Some(id))
            .collect()
    }

    fn check_name_free(&self, name: &str) -> Result<(), StoreError> {
        validate_name(name)?;
        if self
            .volumes
            .values()
            .any(|r| r.name == name || r.id == name)
        {
            return Err(StoreError::NameTaken(name.to_string()));
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "volume name {name:?} must be 1 to 255 bytes without control characters"
        )));
    }
    Ok(())
}

fn validate_size(size: u64) -> Result<(), StoreError> {
    if size == 0 || !size.is_multiple_of(512) || size > MAX_VOLUME_SIZE {
        return Err(StoreError::Invalid(format!(
            "size {size} must be a non-zero multiple of 512 bytes, at most {MAX_VOLUME_SIZE}"
        )));
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An open volume store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    layers_dir: PathBuf,
    catalog: Catalog,
    state: Mutex<State>,
    open: Mutex<HashMap<String, Weak<Volume>>>,
    layers: Mutex<HashMap<String, Weak<Layer>>>,
    replica: Arc<dyn Replica>,
    /// Which writable volumes this node serves (all of them on a single appliance).
    ownership: Arc<Ownership>,
    /// Volumes deleted while the peer was away, not deleted there yet.
    deleted: pending::IdList,
    /// Volumes whose transfer to the peer did not complete: sent whole at the resync.
    unsent: pending::IdList,
    _lock: Flock<File>,
}

/// Keeps a volume counted as in use while an operation or a connection holds it.
#[derive(Debug)]
pub struct VolumeLease(Arc<Volume>);

impl VolumeLease {
    fn new(volume: Arc<Volume>) -> Self {
        volume.users.fetch_add(1, Ordering::AcqRel);
        Self(volume)
    }

    pub fn volume(&self) -> &Arc<Volume> {
        &self.0
    }
}

impl Drop for VolumeLease {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Store {
    /// Opens (creating if needed) the store in `root`, takes its lock, and removes what an
    /// interrupted operation left behind.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with_replica(root, Arc::new(LocalOnly))
    }

    /// Like [`Store::open`], mirroring every write to `replica`.
    pub fn open_with_replica(root: &Path, replica: Arc<dyn Replica>) -> Result<Self, StoreError> {
        let layers_dir = root.join("layers");
        std::fs::create_dir_all(&layers_dir)
            .map_err(StoreError::io(format!("creating {}", layers_dir.display())))?;
        let lock_path = root.join("lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(format!("opening {}", lock_path.display())))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            StoreError::Locked {
                path: root.display().to_string(),
            }
        })?;
        let catalog = Catalog::open(&root.join("catalog.redb"))?;
        let mut state = State::default();
        let ownership = replica
            .ownership()
            .unwrap_or_else(|| Arc::new(Ownership::single()));
        for r in catalog.volumes()? {
            if r.state == VolumeState::Writable {
                ownership.register(&r.id, r.home.as_deref());
            }
            state.volumes.insert(r.id.clone(), r);
        }
        for e in catalog.exports()? {
            state.exports.insert(e.volume.clone(), e);
        }
        let store = Self {
            root: root.to_path_buf(),
            layers_dir,
            catalog,
            state: Mutex::new(state),
            open: Mutex::new(HashMap::new()),
            layers: Mutex::new(HashMap::new()),
            replica,
            ownership,
            deleted: pending::IdList::new(root.join("activity").join("deleted")),
            unsent: pending::IdList::new(root.join("activity").join("unsent")),
            _lock: lock,
        };
        store.remove_leftovers()?;
        // Writable volumes the peer has no copy of yet: their writes stay here until the
        // resync makes them there.
        for id in store.unsent.ids() {
            if store.state.lock().volumes.get(&id).map(|r| r.state) == Some(VolumeState::Writable) {
                store.replica.hold(&id);
            }
        }
        Ok(store)
    }

    /// Which writable volumes this node serves.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// Applies `op` on the replica first: a change the replica did not take is not made.
    fn replicate(&self, op: &CatalogOp) -> Result<(), StoreError> {
        self.replica
            .catalog(op)
            .map_err(StoreError::io(format!("replicating {op:?}")))
    }

    /// The replica's side of an imported golden image: the writable volume `id`, whose
    /// content was sent, is made immutable once its SHA-256 is `checksum`.
    pub fn freeze_as(&self, id: &str, checksum: &str) -> Result<VolumeInfo, StoreError> {
        {
            let st = self.state.lock();
            let r = st.resolve(id)?;
            if r.state == VolumeState::Frozen {
                if r.checksum.as_deref() == Some(checksum) {
                    return Ok(self.info_of(&st, r));
                }
                return Err(StoreError::Frozen(r.name.clone()));
            }
        }
        self.sync_all()?;
        let got = self.content_checksum(id)?;
        if got != checksum {
            return Err(StoreError::Invalid(format!(
                "volume {id} holds {got}, not the {checksum} its owner sent"
            )));
        }
        let mut st = self.state.lock();
        let mut r = st.resolve(id)?.clone();
        r.state = VolumeState::Frozen;
        r.checksum = Some(checksum.to_string());
        self.catalog.commit(&[Change::PutVolume(r.clone())])?;
        st.volumes.insert(r.id.clone(), r.clone());
        // An open handle still says writable: the next user reopens it frozen.
        self.open.lock().remove(&r.id);
        Ok(self.info_of(&st, &r))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn paths(&self, layer: &str) -> LayerPaths {
        LayerPaths::new(&self.layers_dir, layer)
    }

    fn remove_layer_files(&self, layer: &str) {
        let p = self.paths(layer);
        for f in [p.data, p.map] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("could not remove {}: {e}", f.display()),
            }
        }
    }

    fn open_layer(&self, r: &VolumeRecord) -> Result<Arc<Layer>, StoreError> {
        let mut layers = self.layers.lock();
        if let Some(l) = layers.get(&r.layer).and_then(Weak::upgrade) {
            return Ok(l);
        }
        let layer = Arc::new(Layer::open(
            &r.layer,
            &self.paths(&r.layer),
            r.size,
            r.block_size,
            r.parent.is_some(),
            true,
        )?);
        layers.insert(r.layer.clone(), Arc::downgrade(&layer));
        Ok(layer)
    }

    fn open_volume(&self, st: &State, r: &VolumeRecord) -> Result<Arc<Volume>, StoreError> {
        if let Some(v) = self.open.lock().get(&r.id).and_then(Weak::upgrade) {
            return Ok(v);
        }
        let mut chain = Vec::new();
        let mut cur = Some(r);
        while let Some(rec) = cur {
            if chain.len() > st.volumes.len() {
                return Err(StoreError::Invalid(format!(
                    "the parent chain of volume {} loops",
                    r.id
                )));
            }
            chain.push(self.open_layer(rec)?);
            cur = match &rec.parent {
                Some(p) => Some(
                    st.volumes
                        .get(p)
                        .ok_or_else(|| StoreError::NotFound(p.clone()))?,
                ),
                None => None,
            };
        }
        // A pair's writable volume keeps its activity log beside the layers.
        let activity = if self.replica.mirrors() && r.state != VolumeState::Frozen {
            let path = self.activity_path(&r.id);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(StoreError::io(format!("creating {}", dir.display())))?;
            }
            Some(Arc::new(ActivityLog::open(&path, r.size).map_err(
                StoreError::io(format!("opening the activity log {}", path.display())),
            )?))
        } else {
            None
        };
        let v = Arc::new(
            Volume::new(
                r.id.clone(),
                r.size,
                r.state == VolumeState::Frozen,
                chain,
                Arc::clone(&self.replica),
            )
            .with_activity(activity),
        );
        self.open.lock().insert(r.id.clone(), Arc::downgrade(&v));
        Ok(v)
    }

    fn activity_path(&self, id: &str) -> PathBuf {
        self.root.join("activity").join(format!("{id}.al"))
    }

    /// The regions volume `key`'s activity log marks, and with `clear`, clears them (the
    /// replica's side of [`Replica::peer_regions`]).
    pub fn activity_regions(&self, key: &str, clear: bool) -> Result<Vec<u64>, StoreError> {
        let lease = self.lease(key)?;
        let Some(log) = lease.volume().activity() else {
            return Ok(Vec::new());
        };
        let regions = log.dirty();
        if clear {
            log.clear_all().map_err(StoreError::io(format!(
                "clearing volume {key}'s activity log"
            )))?;
        }
        Ok(regions)
    }

    /// How many regions of volume `id` its activity log marks (the peer may lack them).
    pub fn dirty_regions(&self, id: &str) -> Result<u64, StoreError> {
        let open = self.open.lock().get(id).and_then(Weak::upgrade);
        match open.as_ref().and_then(|v| v.activity()) {
            Some(log) => Ok(log.dirty().len() as u64),
            None => {
                let path = self.activity_path(id);
                ActivityLog::count_on_disk(&path)
                    .map_err(StoreError::io(format!("reading {}", path.display())))
            }
        }
    }

    /// Whether volume `id`'s activity log holds unsent regions: from before this start
    /// (storaged stopped or crashed with writes maybe applied here only), or left by a resync
    /// that was interrupted. A resync must send them, however in sync the peer is. A volume
    /// not open now: any region marked on disk.
    pub fn recovering(&self, id: &str) -> Result<bool, StoreError> {
        let open = self.open.lock().get(id).and_then(Weak::upgrade);
        match open.as_ref().and_then(|v| v.activity()) {
            Some(log) => Ok(log.recovered()),
            None => self.dirty_regions(id).map(|n| n > 0),
        }
    }

    /// Opens a volume by id or name and counts it as in use until the lease is dropped.
    pub fn lease(&self, key: &str) -> Result<VolumeLease, StoreError> {
        let st = self.state.lock();
        let r = st.resolve(key)?;
        Ok(VolumeLease::new(self.open_volume(&st, r)?))
    }

    fn users(&self, id: &str) -> usize {
        self.open
            .lock()
            .get(id)
            .and_then(Weak::upgrade)
            .map_or(0, |v| v.users())
    }

    fn info_of(&self, st: &State, r: &VolumeRecord) -> VolumeInfo {
        let mut parent_chain = Vec::new();
        let mut cur = r.parent.clone();
        while let Some(p) = cur {
            if parent_chain.contains(&p) || parent_chain.len() > st.volumes.len() {
                break;
            }
            cur = st.volumes.get(&p).and_then(|x| x.parent.clone());
            parent_chain.push(p);
        }
        let allocated_bytes = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(self.paths(&r.layer).data).map_or(0, |m| m.blocks() * 512)
        };
        VolumeInfo {
            record: r.clone(),
            allocated_bytes,
            parent_chain,
            children: st.children(&r.id).iter().map(|c| c.id.clone()).collect(),
            export: st.exports.get(&r.id).cloned(),
            connections: self.users(&r.id),
        }
    }

    /// Every volume.
    pub fn list(&self) -> Vec<VolumeInfo> {
        let st = self.state.lock();
        st.volumes.values().map(|r| self.info_of(&st, r)).collect()
    }

    /// One volume, by id or name.
    pub fn info(&self, key: &str) -> Result<VolumeInfo, StoreError> {
        let st = self.state.lock();
        let r = st.resolve(key)?;
        Ok(self.info_of(&st, r))
    }

    /// Adds a new volume whose layer files already exist (created durably by
    /// `Layer::create`), or removes them if that fails.
    fn commit_new(&self, st: &mut State, r: VolumeRecord) -> Result<VolumeInfo, StoreError> {
        let result = self
            .catalog
            .commit(&[Change::PutVolume(r.clone())])
            .map_err(StoreError::from);
        if let Err(e) = result {
            self.remove_layer_files(&r.layer);
            return Err(e);
        }
        if r.state == VolumeState::Writable {
            self.ownership.register(&r.id, r.home.as_deref());
        }
        st.volumes.insert(r.id.clone(), r.clone());
        Ok(self.info_of(st, &r))
    }

    fn new_record(
        name: Option<&str>,
        size: u64,
        parent: Option<String>,
        state: VolumeState,
    ) -> VolumeRecord {
        let id = uuid::Uuid::new_v4().to_string();
        VolumeRecord {
            name: name.map_or_else(|| id.clone(), str::to_string),
            size,
            block_size: DEFAULT_BLOCK_SIZE,
            layer: uuid::Uuid::new_v4().to_string(),
            parent,
            state,
            created: now(),
            checksum: None,
            origin: None,
            home: None,
            generation: 0,
            peer_generation: None,
            id,
        }
    }

    /// Creates an empty, writable, thin volume of `size` bytes.
    pub fn create(&self, name: Option<&str>, size: u64) -> Result<VolumeInfo, StoreError> {
        validate_size(size)?;
        if let Some(n) = name {
            self.state.lock().check_name_free(n)?;
        }
        let mut r = Self::new_record(name, size, None, VolumeState::Writable);
        r.home = self.ownership.me().map(str::to_string);
        // Not under the state lock: the peer may be replicating to this store meanwhile.
        self.replicate(&CatalogOp::Create {
            id: r.id.clone(),
            name: name.map(str::to_string),
            size,
            home: r.home.clone(),
        })?;
        let made = (|| {
            let mut st = self.state.lock();
            if let Some(n) = name {
                st.check_name_free(n)?;
            }
            Layer::create(&self.paths(&r.layer), size, r.block_size, false).map_err(
                StoreError::io(format!("creating the layer of volume {}", r.id)),
            )?;
            self.commit_new(&mut st, r.clone())
        })();
        if made.is_err() {
            self.unreplicate(&r.id);
        }
        made
    }

    /// Takes back a catalog change the replica made when this node could not make it.
    fn unreplicate(&self, id: &str) {
        if let Err(e) = self.replicate(&CatalogOp::Delete { id: id.to_string() }) {
            tracing::error!("volume {id} stays on the replica only: {e}");
        }
    }

    /// Creates an empty volume whose id the caller chose (the pair's replicated catalog: the
    /// owner and the replica hold one volume under one id), in group `home` (None: this
    /// node's). Idempotent: if a volume with this id and size exists, it is returned; with
    /// another size, refused.
    pub fn create_as(
        &self,
        id: &str,
        name: Option<&str>,
        size: u64,
        home: Option<&str>,
    ) -> Result<VolumeInfo, StoreError> {
        validate_size(size)?;
        let mut st = self.state.lock();
        if let Some(r) = st.volumes.get(id).cloned() {
            if r.size == size {
                return Ok(self.info_of(&st, &r));
            }
            return Err(StoreError::Invalid(format!(
                "volume {id} exists with {} bytes, not {size}",
                r.size
            )));
        }
        if let Some(n) = name {
            st.check_name_free(n)?;
        }
        let mut r = Self::new_record(name, size, None, VolumeState::Writable);
        r.id = id.to_string();
        r.home = home.or(self.ownership.me()).map(str::to_string);
        if name.is_none() {
            r.name = id.to_string();
        }
        Layer::create(&self.paths(&r.layer), size, r.block_size, false).map_err(StoreError::io(
            format!("creating the layer of volume {}", r.id),
        ))?;
        self.commit_new(&mut st, r)
    }

    /// Makes a writable copy-on-write volume over the frozen volume `parent`, in O(1).
    pub fn clone_volume(&self, parent: &str, name: Option<&str>) -> Result<VolumeInfo, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let home = self.ownership.me().map(str::to_string);
        self.clone_with(&id, parent, name, home.as_deref(), true)
    }

    /// The replica's side of a clone: the owner's id, in group `home` (None: this node's);
    /// a second time changes nothing.
    pub fn clone_as(
        &self,
        id: &str,
        parent: &str,
        name: Option<&str>,
        home: Option<&str>,
    ) -> Result<VolumeInfo, StoreError> {
        if let Some(r) = self.state.lock().volumes.get(id).cloned() {
            if r.parent.as_deref() == Some(parent) {
                return self.info(id);
            }
            return Err(StoreError::Invalid(format!(
                "volume {id} exists, and is not a clone of {parent}"
            )));
        }
        let home = home.or(self.ownership.me()).map(str::to_string);
        self.clone_with(id, parent, name, home.as_deref(), false)
    }

    fn clone_with(
        &self,
        id: &str,
        parent: &str,
        name: Option<&str>,
        home: Option<&str>,
        replicate: bool,
    ) -> Result<VolumeInfo, StoreError> {
        let check = |st: &State| -> Result<VolumeRecord, StoreError> {
            let p = st.resolve(parent)?.clone();
            if p.state != VolumeState::Frozen {
                return Err(StoreError::NotFrozen(p.name));
            }
            if let Some(n) = name {
                st.check_name_free(n)?;
            }
            Ok(p)
        };
        let p = check(&self.state.lock())?;
        // A parent the peer does not hold whole yet (its transfer was cut: it is sent again
        // at the resync) cannot be cloned there now: the clone is made here alone, kept on
        // the unsent list and its writes held, and the resync makes it there after its
        // parent, with every region it has.
        let parent_unsent = replicate && self.chain_unsent(&p.id);
        if replicate && !parent_unsent {
            // Not under the state lock: the peer may be replicating to this store meanwhile.
            self.replicate(&CatalogOp::Clone {
                id: id.to_string(),
                parent: p.id.clone(),
                name: name.map(str::to_string),
                home: home.map(str::to_string),
            })?;
        }
        let made = self.clone_commit(id, name, home, &check);
        if made.is_err() && replicate && !parent_unsent {
            self.unreplicate(id);
        }
        if made.is_ok() && parent_unsent {
            tracing::warn!(
                "volume {id}: its parent {} is not on the peer whole yet: made here alone, \
                 sent at the resync",
                p.id
            );
            self.replica.hold(id);
            self.unsent.add(id)?;
        }
        made
    }

    /// Whether volume `id` is writable and the peer has no copy of it yet (made here alone
    /// over a parent the peer did not hold whole: its catalog changes wait for the resync).
    fn held(&self, id: &str) -> bool {
        self.unsent.contains(id)
            && self.state.lock().volumes.get(id).map(|r| r.state) == Some(VolumeState::Writable)
    }

    /// Whether volume `id` or one of its ancestors is on the unsent list.
    fn chain_unsent(&self, id: &str) -> bool {
        // The list read once, before the state lock (it is a file).
        let unsent = self.unsent.ids();
        if unsent.is_empty() {
            return false;
        }
        let st = self.state.lock();
        let mut next = Some(id.to_string());
        while let Some(cur) = next {
            if unsent.contains(&cur) {
                return true;
            }
            next = st.volumes.get(&cur).and_then(|r| r.parent.clone());
        }
        false
    }

    fn clone_commit(
        &self,
        id: &str,
        name: Option<&str>,
        home: Option<&str>,
        check: &dyn Fn(&State) -> Result<VolumeRecord, StoreError>,
    ) -> Result<VolumeInfo, StoreError> {
        let mut st = self.state.lock();
        let p = check(&st)?;
        let mut r = Self::new_record(name, p.size, Some(p.id.clone()), VolumeState::Writable);
        r.id = id.to_string();
        r.home = home.map(str::to_string);
        if name.is_none() {
            r.name = id.to_string();
        }
        Layer::create(&self.paths(&r.layer), r.size, r.block_size, true).map_err(
            StoreError::io(format!("creating the layer of volume {}", r.id)),
        )?;
        self.commit_new(&mut st, r)
    }

    /// Freezes the current content of writable volume `key` as a new immutable volume, in
    /// O(1): the volume's layer becomes the snapshot's, and the volume continues on a new
    /// empty layer over it. Open connections keep running; the volume's id does not change.
    pub fn snapshot(&self, key: &str, name: Option<&str>) -> Result<VolumeInfo, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.snapshot_with(key, &id, name, true)
    }

    /// The replica's side of a snapshot: the owner's snapshot id; a second time changes
    /// nothing.
    pub fn snapshot_as(
        &self,
        key: &str,
        snapshot_id: &str,
        name: Option<&str>,
    ) -> Result<VolumeInfo, StoreError> {
        if self.state.lock().volumes.contains_key(snapshot_id) {
            return self.info(snapshot_id);
        }
        self.snapshot_with(key, snapshot_id, name, false)
    }

    fn snapshot_with(
        &self,
        key: &str,
        snapshot_id: &str,
        name: Option<&str>,
        replicate: bool,
    ) -> Result<VolumeInfo, StoreError> {
        let check = |st: &State| -> Result<VolumeRecord, StoreError> {
            let v = st.resolve(key)?.clone();
            if v.state == VolumeState::Frozen {
                return Err(StoreError::Frozen(v.name));
            }
            if let Some(n) = name {
                st.check_name_free(n)?;
            }
            Ok(v)
        };
        let id = self.state.lock().resolve(key)?.id.clone();
        let held = replicate && self.held(&id);
        if replicate && !held {
            let v = check(&self.state.lock())?;
            // Not under the state lock: the peer may be replicating to this store meanwhile.
            self.replicate(&CatalogOp::Snapshot {
                volume: v.id.clone(),
                snapshot_id: snapshot_id.to_string(),
                name: name.map(str::to_string),
            })?;
        }
        let mut st = self.state.lock();
        let v = check(&st)?;
        let volume = self.open_volume(&st, &v)?;
        // Writers wait here until the volume continues on its new layer.
        let mut chain = volume.chain.write();
        chain[0]
            .sync()
            .map_err(StoreError::io(format!("flushing volume {}", v.id)))?;
        let mut snap = Self::new_record(name, v.size, v.parent.clone(), VolumeState::Frozen);
        snap.id = snapshot_id.to_string();
        if name.is_none() {
            snap.name = snapshot_id.to_string();
        }
        snap.layer = v.layer.clone();
        snap.block_size = v.block_size;
        snap.origin = Some(format!("snapshot of {}", v.id));
        let mut moved = Self::new_record(None, v.size, Some(snap.id.clone()), v.state);
        moved.id = v.id.clone();
        moved.name = v.name.clone();
        moved.created = v.created;
        moved.origin = v.origin.clone();
        moved.home = v.home.clone();
        let new_layer_paths = self.paths(&moved.layer);
        Layer::create(&new_layer_paths, v.size, moved.block_size, true).map_err(StoreError::io(
            format!("creating the new layer of volume {}", v.id),
        ))?;
        let committed = self
            .catalog
            .commit(&[
                Change::PutVolume(snap.clone()),
                Change::PutVolume(moved.clone()),
            ])
            .map_err(StoreError::from);
        if let Err(e) = committed {
            self.remove_layer_files(&moved.layer);
            return Err(e);
        }
        st.volumes.insert(snap.id.clone(), snap.clone());
        st.volumes.insert(moved.id.clone(), moved.clone());
        if held {
            // The peer has no copy of the volume yet: the snapshot goes there whole at the
            // resync, before the volume.
            self.unsent.add(&snap.id)?;
        }
        match self.open_layer(&moved) {
            Ok(top) => chain.insert(0, top),
            Err(e) => {
                // The catalog is right; the open volume is not. Drop it so the next user
                // reopens it from the catalog, and refuse I/O on the stale handle meanwhile.
                tracing::error!("volume {}: reopening after snapshot failed: {e}", v.id);
                self.open.lock().remove(&v.id);
            }
        }
        Ok(self.info_of(&st, &snap))
    }

    /// Copies every block `key` reads from its parents into its own layer and detaches it
    /// from them. Clients may keep using the volume meanwhile.
    pub fn flatten(&self, key: &str) -> Result<VolumeInfo, StoreError> {
        let (record, lease) = {
            let st = self.state.lock();
            let r = st.resolve(key)?.clone();
            if r.parent.is_none() {
                return Ok(self.info_of(&st, &r));
            }
            let lease = VolumeLease::new(self.open_volume(&st, &r)?);
            (r, lease)
        };
        let volume = lease.volume();
        volume
            .fill_from_parents()
            .map_err(StoreError::io(format!("flattening volume {}", record.id)))?;
        let mut st = self.state.lock();
        let mut r = st.resolve(&record.id)?.clone();
        r.parent = None;
        self.catalog.commit(&[Change::PutVolume(r.clone())])?;
        st.volumes.insert(r.id.clone(), r.clone());
        volume.chain.write().truncate(1);
        // The layer now holds every block; it is opened without a map from now on.
        let map = self.paths(&r.layer).map;
        if let Err(e) = std::fs::remove_file(&map) {
            tracing::warn!("could not remove {}: {e}", map.display());
        }
        Ok(self.info_of(&st, &r))
    }

    /// Deletes volume `key` and its export. Refused while it has children or users.
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete_with(key, true)
    }

    /// The replica's side of a delete: a volume already gone is fine.
    pub fn delete_as(&self, id: &str) -> Result<(), StoreError> {
        match self.delete_with(id, false) {
            Err(StoreError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Deletes here first, then on the replica (outside the state lock: the peer may be
    /// replicating to this store meanwhile); a replica that could not delete keeps a volume
    /// nothing uses, which a later delete or the resync removes.
    fn delete_with(&self, key: &str, replicate: bool) -> Result<(), StoreError> {
        // One the peer never had: deleted here, and off the list of what it is owed.
        let id = self.state.lock().resolve(key).ok().map(|r| r.id.clone());
        if replicate
            && let Some(id) = id
            && self.held(&id)
        {
            self.delete_here(&id)?;
            self.replica.resume(&id);
            return self.unsent.remove(&id);
        }
        // A peer that does not take changes now (Outdated) learns of the delete at its
        // resync: the id is kept until then.
        let peer_away = replicate
            && self.replica.mirrors()
            && self
                .state
                .lock()
                .resolve(key)
                .is_ok_and(|r| !self.replica.in_sync(&r.id));
        let id = self.delete_here(key)?;
        if replicate {
            if peer_away {
                self.deleted.add(&id)?;
            }
            self.replicate(&CatalogOp::Delete { id })?;
        }
        Ok(())
    }

    /// The volumes deleted while the peer was away, not deleted there yet.
    pub fn deleted_meanwhile(&self) -> Vec<String> {
        self.deleted.ids()
    }

    /// Deletes on the peer what was deleted here while it was away (part of its resync).
    pub fn send_deletes(&self) -> Result<usize, StoreError> {
        self.deleted.drain(|ids| {
            for id in ids {
                self.replicate(&CatalogOp::Delete { id: id.clone() })?;
            }
            Ok(())
        })
    }

    /// The volumes whose transfer to the peer did not complete (sent whole at the resync).
    pub fn unsent(&self) -> Vec<String> {
        self.unsent.ids()
    }

    fn delete_here(&self, key: &str) -> Result<String, StoreError> {
        let mut st = self.state.lock();
        let r = st.resolve(key)?.clone();
        let children: Vec<String> = st
            .children(&r.id)
            .iter()
            .map(|c| format!("{} ({})", c.name, c.id))
            .collect();
        if !children.is_empty() {
            return Err(StoreError::HasChildren {
                volume: r.name,
                children,
            });
        }
        let users = self.users(&r.id);
        if users > 0 {
            return Err(StoreError::InUse {
                volume: r.name,
                users,
            });
        }
        self.catalog.commit(&[
            Change::DeleteVolume(r.id.clone()),
            Change::DeleteExport(r.id.clone()),
        ])?;
        st.volumes.remove(&r.id);
        st.exports.remove(&r.id);
        self.ownership.forget(&r.id);
        self.open.lock().remove(&r.id);
        self.remove_layer_files(&r.layer);
        let log = self.activity_path(&r.id);
        if let Err(e) = std::fs::remove_file(&log)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {e}", log.display());
        }
        Ok(r.id)
    }
}

impl Store {
    /// Makes volume `key` on the peer if it has none (it was made while the peer was away):
    /// a frozen one with its whole content, checked (as an import sends it); a writable one
    /// created there (a clone over the same parent) and the regions its own layer holds
    /// marked for the resync. Returns whether it was missing.
    pub fn send_missing(&self, key: &str) -> Result<bool, StoreError> {
        let r = self.state.lock().resolve(key)?.clone();
        let unsent = self.unsent.contains(&r.id);
        let missing = unsent
            || self
                .replica
                .peer_regions(&r.id)
                .map_err(StoreError::io(format!(
                    "asking the peer about volume {}",
                    r.id
                )))?
                .is_none();
        if !missing {
            return Ok(false);
        }
        // Kept on the list if the peer was lost again half-way.
        if self.send_missing_volume(&r)? && unsent {
            self.unsent.remove(&r.id)?;
        }
        Ok(true)
    }

    /// Sends `r` to the peer: whole and checked if frozen; if writable, created there (empty
    /// over the same parent) and its own layer's regions marked, for the resync to send (a
    /// clone of a golden image sends what was written to it, not the image again). Returns
    /// whether the transfer completed.
    fn send_missing_volume(&self, r: &VolumeRecord) -> Result<bool, StoreError> {
        tracing::info!("volume {} is missing on the peer: sending it", r.id);
        if r.state == VolumeState::Frozen {
            // Sent whole (a snapshot too: flat there), under this node's epoch (a frozen
            // volume never changes, whichever group made it), checked by its SHA-256.
            let mut flat = r.clone();
            flat.home = self.ownership.me().map(str::to_string);
            if flat.checksum.is_none() {
                flat.checksum = Some(self.content_checksum(&r.id)?);
            }
            return self.send_to_replica(&flat, Some(&r.name));
        }
        match &r.parent {
            Some(parent) => self.replicate(&CatalogOp::Clone {
                id: r.id.clone(),
                parent: parent.clone(),
                name: Some(r.name.clone()),
                home: r.home.clone(),
            })?,
            None => self.replicate(&CatalogOp::Create {
                id: r.id.clone(),
                name: Some(r.name.clone()),
                size: r.size,
                home: r.home.clone(),
            })?,
        }
        let lease = self.lease(&r.id)?;
        if let Some(log) = lease.volume().activity() {
            let marked = lease
                .volume()
                .own_regions()
                .and_then(|regions| log.mark_regions(&regions));
            marked.map_err(StoreError::io(format!(
                "marking volume {}'s regions for its resync",
                r.id
            )))?;
        }
        if let Some(e) = self.export_list().into_iter().find(|e| e.volume == r.id) {
            self.replicate(&CatalogOp::Export {
                id: e.volume,
                allow: e.allow,
                read_only: e.read_only,
                iscsi: e.iscsi,
            })?;
        }
        Ok(true)
    }
}

/// What a resync copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResyncReport {
    pub regions: u64,
    pub bytes: u64,
    /// The generations said the peer's copy was from another history: every region was
    /// sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

impl Store {
    /// A full resync: every region of volume `key` is sent (the peer's copy is new or
    /// cannot be trusted).
    pub fn resync_full(
        &self,
        key: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ResyncReport, StoreError> {
        {
            let lease = self.lease(key)?;
            if let Some(log) = lease.volume().activity() {
                log.mark_all().map_err(StoreError::io(format!(
                    "marking volume {key} for a full resync"
                )))?;
            }
        }
        self.resync(key, progress)
    }

    /// Brings the peer's copy of volume `key` up to date: every region of its activity log
    /// (written while the peer was away, or possibly not acknowledged by it before a crash)
    /// is sent whole, one locked region at a time (writes to it wait meanwhile; writes
    /// elsewhere go on to both nodes), then flushed on both and cleared. `progress` gets
    /// (regions sent, regions to send).
    pub fn resync(
        &self,
        key: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ResyncReport, StoreError> {
        let lease = self.lease(key)?;
        let volume = lease.volume();
        let Some(log) = volume.activity().cloned() else {
            return Ok(ResyncReport::default());
        };
        let id = volume.id().to_string();
        // Its writes go to the peer again from now on (a degraded volume's too).
        self.replica.resume(&id);
        // The regions the peer wrote last, maybe without this node (it owned the volume
        // before a failover, and died with writes in flight): this node's content goes
        // over them too.
        let ask = || {
            self.replica
                .peer_regions(&id)
                .map_err(StoreError::io(format!("asking the peer about volume {id}")))
        };
        let theirs = match ask()? {
            Some(copy) => copy,
            // Made here after the resync's pass over missing volumes (a clone deployed
            // while a golden image was being sent): made there now.
            None => {
                self.send_missing(&id)?;
                ask()?.ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "volume {id} is missing on the peer although it was just sent"
                    ))
                })?
            }
        };
        // A peer copy at neither this copy's generation nor the one it was left at comes
        // from another history: the log does not say what it lacks, every region goes.
        let (mine, left_at) = self.generation(&id)?;
        let mut report = ResyncReport::default();
        if theirs.generation != mine && Some(theirs.generation) != left_at {
            tracing::warn!(
                "volume {id}: the peer's copy is at generation {:016x}, this one at {mine:016x} \
                 (the peer was left at {}): resyncing it whole",
                theirs.generation,
                left_at.map_or_else(|| "the same".to_string(), |g| format!("{g:016x}"))
            );
            log.mark_all().map_err(StoreError::io(format!(
                "marking volume {id} for a full resync"
            )))?;
            report.full = true;
        }
        if !theirs.regions.is_empty() {
            log.mark_regions(&theirs.regions)
                .map_err(StoreError::io(format!(
                    "marking volume {id}'s activity log"
                )))?;
            self.replica
                .peer_regions_taken(&id)
                .map_err(StoreError::io(format!(
                    "telling the peer about volume {id}"
                )))?;
        }
        let dirty = log.to_resync();
        let total = dirty.len() as u64;
        let region = crate::volume::changes::REGION_BYTES;
        let mut buf = vec![0u8; region as usize];
        for (n, r) in dirty.into_iter().enumerate() {
            let held = log.lock_region(r);
            let offset = r * region;
            let len = region.min(volume.size - offset) as usize;
            crate::block::BlockDevice::read_at(&**volume, &mut buf[..len], offset)
                .map_err(StoreError::io(format!("reading volume {id} at {offset}")))?;
            let op = if buf[..len].iter().all(|b| *b == 0) {
                WriteOp::Zeroes {
                    len: len as u64,
                    may_trim: true,
                }
            } else {
                WriteOp::Data(&buf[..len])
            };
            self.replica
                .write(&id, offset, op)
                .map_err(StoreError::io(format!("resyncing volume {id} at {offset}")))?;
            if !self.replica.in_sync(&id) {
                // Not sent: the pair marked the peer Outdated meanwhile, or it cannot apply
                // this volume's writes. The regions stay marked for the next resync.
                return Err(StoreError::Io {
                    what: format!("resyncing volume {id} at {offset}"),
                    source: io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the peer no longer takes the volume's writes (marked Outdated, or \
                         unable to apply them): the next resync sends what is left",
                    ),
                });
            }
            log.sent(r);
            drop(held);
            report.regions += 1;
            report.bytes += len as u64;
            progress(n as u64 + 1, total);
        }
        volume.sync().map_err(StoreError::io(format!(
            "flushing volume {id} after its resync"
        )))?;
        // Both copies are at this node's generation now.
        self.replica
            .peer_generation_set(&id, mine)
            .map_err(StoreError::io(format!(
                "telling the peer volume {id}'s generation"
            )))?;
        self.peer_caught_up(&id, mine)?;
        Ok(report)
    }
}

impl Store {
    /// Makes every completed write on every open volume durable (used at shutdown).
    pub fn sync_all(&self) -> Result<(), StoreError> {
        let open: Vec<_> = self
            .open
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for v in open {
            v.sync()
                .map_err(StoreError::io(format!("syncing volume {}", v.id())))?;
        }
        Ok(())
    }
}
