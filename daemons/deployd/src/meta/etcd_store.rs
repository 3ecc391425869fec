//! The pair's metadata store: etcd (Debian's 3.4) through the `etcd-client` crate.
//!
//! Layout: one key per record, `<root><kind prefix>/<id>`, whose value is the document's JSON.
//! A record's `created` is etcd's `create_revision`, its `revision` (the eTag) etcd's
//! `mod_revision`, and the store's revision etcd's: the same shape as [`super::RedbStore`],
//! so both pass one test suite (`meta::suite`).
//!
//! A transaction is one etcd `Txn`: every precondition becomes a comparison, every change a
//! request of the success branch. etcd compares everything against the state before the
//! transaction, and refuses two changes of one key in a transaction; this store keeps the
//! redb store's rule (each precondition sees the earlier operations of its transaction) by
//! deciding a precondition on a key that an earlier operation changed itself, and by sending
//! only the last change of each key. When the comparisons fail, the failure branch reads
//! every compared key, so the error names the first precondition that did not hold, as redb's
//! does.
//!
//! **Fencing.** Writes pass a [`WriteGate`]. On a pair node it is closed until clusterd says
//! this node holds the management role; then it names the election key, the create-revision
//! it had when this node won, and the instant (`CLOCK_MONOTONIC`) at which clusterd stops
//! acting as active unless its lease is renewed. A write after that instant is refused here;
//! a write before it also compares the election key's create-revision in etcd, so a node that
//! lost the role (its lease expired while it was stopped or cut off) cannot land a late write:
//! the transaction fails as a whole with [`MetaError::NotActive`].
//!
//! **Reads while etcd cannot be reached** answer from what this node last saw ([`LastSeen`]:
//! every record it read or wrote, and which prefixes it read whole), and say so
//! ([`EtcdStore::serving_stale`], which the API turns into a `Warning: 110` header). Writes
//! answer [`MetaError::Unavailable`]: a write is never taken without the store.
//!
//! The trait is synchronous (redb's calls are) and callers run inside tokio: the client
//! lives on a thread of its own with its own runtime, and a call waits on a channel, never on
//! the caller's runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use serde_json::Value;

use super::{Expect, Kind, MetaError, MetaStore, Op, Record, Revision};

/// Where the records live in etcd's key space.
pub const ROOT: &str = "/streamer/meta/";
/// Records per page when listing (a consistent snapshot: every page at one revision).
const PAGE: i64 = 500;
/// How long one call waits for etcd before answering "unavailable".
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response accepted (a page of large plan scripts).
const MAX_MESSAGE: usize = 64 << 20;

/// The management role this node holds, as etcd knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The election key this node created when it won.
    pub key: String,
    /// That key's create-revision: changes if anyone else wins in between.
    pub create_revision: i64,
    /// `CLOCK_MONOTONIC` nanoseconds after which this node no longer acts as active.
    pub until_ns: Option<u64>,
}

/// Which writes this store sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteGate {
    /// Every write (tests; a store no role applies to).
    Open,
    /// Writes while this node holds the role described.
    Fenced(Fence),
    /// No writes: why (the answer names the active node).
    Closed(String),
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock clusterd's deadlines are on).
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// At most this many keys are remembered as absent: a client asking for ever-new missing
/// names cannot grow the cache without bound (forgetting one only means a read of it during
/// an outage answers "unavailable" instead of "not found").
const MAX_ABSENT: usize = 4096;

/// What this node last saw of the store: the fallback of reads while etcd cannot be reached.
#[derive(Debug, Default)]
struct LastSeen {
    /// Every record read or written, by key.
    records: BTreeMap<String, Record>,
    /// Key prefixes read whole: a key under one of them that is not in `records` is absent.
    listed: HashSet<String>,
    /// Keys read (or deleted) and found absent.
    absent: HashSet<String>,
}

impl LastSeen {
    /// Whether this node knows `key` is absent (read so, or under a prefix read whole).
    fn covered(&self, key: &str) -> bool {
        self.absent.contains(key) || self.listed.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn saw(&mut self, key: String, record: Option<Record>) {
        match record {
            Some(r) => {
                self.absent.remove(&key);
                self.records.insert(key, r);
            }
            None => {
                self.records.remove(&key);
                if self.absent.len() >= MAX_ABSENT {
                    self.absent.clear();
                }
                self.absent.insert(key);
            }
        }
    }

    fn under(&self, start: &str) -> Vec<Record> {
        self.records
            .range(start.to_string()..)
            .take_while(|(k, _)| k.starts_with(start))
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn replace_under(&mut self, start: &str, records: &[(String, Record)]) {
        let gone: Vec<String> = self
            .records
            .range(start.to_string()..)
            .take_while(|(k, _)| k.starts_with(start))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.records.remove(&k);
        }
        for (k, r) in records {
            self.records.insert(k.clone(), r.clone());
        }
        self.listed.insert(start.to_string());
    }
}

type Job = Box<dyn FnOnce(KvClient) -> futures_util::future::BoxFuture<'static, ()> + Send>;

/// etcd-backed [`MetaStore`].
pub struct EtcdStore {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    root: String,
    gate: RwLock<WriteGate>,
    endpoints: Vec<String>,
    last_seen: Mutex<LastSeen>,
    /// Whether the last read was answered from `last_seen` (etcd did not answer).
    stale: AtomicBool,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn unavailable<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Unavailable(format!("the cluster store (etcd) did not answer: {e}"))
}

/// The first key after every key that starts with `prefix` (etcd's range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port` or `https://…` with `options`' TLS), keeping
    /// the records under `root` (normally [`ROOT`]).
    pub fn connect(
        endpoints: Vec<String>,
        options: Option<ConnectOptions>,
        root: &str,
    ) -> Result<Self, MetaError> {
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), MetaError>>(1);
        let eps = endpoints.clone();
        std::thread::Builder::new()
            .name("etcd-store".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(MetaError::Backend(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let options = options
                        .unwrap_or_default()
                        .with_connect_timeout(CALL_TIMEOUT)
                        .with_timeout(CALL_TIMEOUT)
                        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
                    let client = match Client::connect(&eps, Some(options)).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(unavailable(e)));
                            return;
                        }
                    };
                    let kv = client
                        .kv_client()
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE);
                    let _ = ready_tx.send(Ok(()));
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job(kv.clone()));
                    }
                });
            })
            .map_err(|e| MetaError::Backend(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| MetaError::Backend("the etcd client thread ended".into()))??;
        Ok(Self {
            jobs,
            root: root.to_string(),
            gate: RwLock::new(WriteGate::Open),
            endpoints,
            last_seen: Mutex::new(LastSeen::default()),
            stale: AtomicBool::new(false),
        })
    }

    /// Whether reads are being answered from what this node last saw, because etcd does not
    /// answer.
    pub fn serving_stale(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, LastSeen> {
        self.last_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which writes go out from now on.
    pub fn set_gate(&self, gate: WriteGate) {
        *self.gate.write().unwrap_or_else(|e| e.into_inner()) = gate;
    }

    /// The fence a write must carry, or why it may not go out at all.
    fn fence_for_write(&self) -> Result<Option<Fence>, MetaError> {
        match &*self.gate.read().unwrap_or_else(|e| e.into_inner()) {
            WriteGate::Open => Ok(None),
            WriteGate::Closed(why) => Err(MetaError::NotActive(why.clone())),
            WriteGate::Fenced(f) => match f.until_ns {
                Some(until) if monotonic_ns() >= until => Err(MetaError::NotActive(
                    "this node's hold on the management role lapsed (its lease was not \
                     renewed in time)"
                        .into(),
                )),
                _ => Ok(Some(f.clone())),
            },
        }
    }

    /// Runs `f` on the client's thread and waits for its answer.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(KvClient) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, MetaError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |kv| {
            Box::pin(async move {
                let out = match tokio::time::timeout(CALL_TIMEOUT, f(kv)).await {
                    Ok(out) => out,
                    Err(_) => Err(unavailable(format!("no answer in {CALL_TIMEOUT:?}"))),
                };
                let _ = tx.send(out);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| MetaError::Backend("the etcd client thread ended".into()))?;
        rx.recv()
            .map_err(|_| MetaError::Backend("the etcd client thread ended".into()))?
    }

    /// Appends an entry to a log kept in etcd beside the records (the pair's audit log):
    /// `key` sorts by time under its log's prefix. Any node appends, active or not: an entry
    /// changes no record, so no fence applies.
    pub fn append_log(&self, key: String, value: Vec<u8>) -> Result<(), MetaError> {
        self.call(move |mut kv| async move {
            kv.put(key, value, None).await.map_err(unavailable)?;
            Ok(())
        })
    }

    /// The newest `limit` entries of the log under `prefix`, newest first.
    pub fn read_log(&self, prefix: &str, limit: usize) -> Result<Vec<Vec<u8>>, MetaError> {
        let prefix = prefix.to_string();
        self.call(move |mut kv| async move {
            let opts = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(limit as i64);
            let resp = kv.get(prefix, Some(opts)).await.map_err(unavailable)?;
            Ok(resp.kvs().iter().map(|kv| kv.value().to_vec()).collect())
        })
    }

    /// Deletes the log's entries whose keys sort before `below`.
    pub fn trim_log(&self, prefix: &str, below: &str) -> Result<(), MetaError> {
        let (start, end) = (prefix.to_string(), below.to_string());
        self.call(move |mut kv| async move {
            kv.delete(
                start,
                Some(etcd_client::DeleteOptions::new().with_range(end)),
            )
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn key(&self, kind: Kind, id: &str) -> String {
        format!("{}{}/{id}", self.root, kind.prefix())
    }

    fn decode(&self, kind: Kind, kv: &etcd_client::KeyValue) -> Result<Record, MetaError> {
        let key = String::from_utf8_lossy(kv.key());
        let id = key
            .strip_prefix(&self.key(kind, ""))
            .ok_or_else(|| MetaError::Backend(format!("unexpected key {key}")))?
            .to_string();
        let value: Value = serde_json::from_slice(kv.value())
            .map_err(|e| MetaError::Backend(format!("record {key}: {e}")))?;
        Ok(Record {
            kind,
            id,
            created: kv.create_revision() as Revision,
            revision: kv.mod_revision() as Revision,
            value,
        })
    }
}

/// What an earlier operation of the same transaction left at a key.
#[derive(Clone, Copy)]
enum Touched {
    Written,
    Deleted,
}

/// A precondition decided by etcd, remembered to name it if the transaction fails.
struct Compared {
    kind: Kind,
    id: String,
    expect: Expect,
    /// `Some(prefix)` for "nothing under this prefix".
    none_under: Option<String>,
}

impl Compared {
    /// The comparison a precondition needs, if any.
    fn record(kind: Kind, id: &str, expect: Expect) -> Option<Compared> {
        (expect != Expect::Any).then(|| Compared {
            kind,
            id: id.to_string(),
            expect,
            none_under: None,
        })
    }
}

fn conflict(kind: Kind, id: &str, what: impl Into<String>) -> MetaError {
    MetaError::Conflict {
        kind,
        id: id.to_string(),
        what: what.into(),
    }
}

/// Decides `expect` on a key an earlier operation of the transaction changed.
fn check_touched(kind: Kind, id: &str, expect: Expect, t: Touched) -> Result<(), MetaError> {
    match (expect, t) {
        (Expect::Any, _)
        | (Expect::Absent, Touched::Deleted)
        | (Expect::Present, Touched::Written) => Ok(()),
        (Expect::Absent, Touched::Written) => Err(conflict(kind, id, "already exists")),
        (Expect::Present | Expect::Revision(_), Touched::Deleted) => {
            Err(conflict(kind, id, "does not exist"))
        }
        (Expect::Revision(want), Touched::Written) => Err(conflict(
            kind,
            id,
            format!("was modified (in this transaction, expected revision {want})"),
        )),
    }
}

fn compare(key: &str, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::version(key, CompareOp::Equal, 0)),
        Expect::Present => Some(Compare::version(key, CompareOp::Greater, 0)),
        Expect::Revision(r) => Some(Compare::mod_revision(key, CompareOp::Equal, r as i64)),
    }
}

impl MetaStore for EtcdStore {
    fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, MetaError> {
        let key = self.key(kind, id);
        let asked = key.clone();
        let resp = match self
            .call(move |mut kv| async move { kv.get(asked, None).await.map_err(unavailable) })
        {
            Ok(resp) => resp,
            Err(e @ MetaError::Unavailable(_)) => {
                let seen = self.seen();
                let known = seen.records.get(&key).cloned();
                if known.is_none() && !seen.covered(&key) {
                    return Err(e);
                }
                self.stale.store(true, Ordering::SeqCst);
                return Ok(known);
            }
            Err(e) => return Err(e),
        };
        self.stale.store(false, Ordering::SeqCst);
        let record = resp
            .kvs()
            .first()
            .map(|kv| self.decode(kind, kv))
            .transpose()?;
        self.seen().saw(key, record.clone());
        Ok(record)
    }

    fn list(&self, kind: Kind) -> Result<Vec<Record>, MetaError> {
        self.list_prefix(kind, "")
    }

    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Vec<Record>, MetaError> {
        let start_key = self.key(kind, prefix);
        let start = start_key.clone().into_bytes();
        let end = prefix_end(&start);
        let answered = self.call(move |mut kv| async move {
            let mut out = Vec::new();
            let mut from = start;
            let mut at = 0i64;
            loop {
                let mut opts = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(PAGE)
                    .with_sort(SortTarget::Key, SortOrder::Ascend);
                if at > 0 {
                    opts = opts.with_revision(at);
                }
                let mut resp = kv
                    .get(from.clone(), Some(opts))
                    .await
                    .map_err(unavailable)?;
                if at == 0 {
                    at = resp.header().map_or(0, |h| h.revision());
                }
                let more = resp.more();
                let page = resp.take_kvs();
                let Some(last) = page.last() else { break };
                from = last.key().to_vec();
                from.push(0);
                out.extend(page);
                if !more {
                    break;
                }
            }
            Ok(out)
        });
        let kvs = match answered {
            Ok(kvs) => kvs,
            Err(e @ MetaError::Unavailable(_)) => {
                let seen = self.seen();
                if !seen.covered(&start_key) {
                    return Err(e);
                }
                self.stale.store(true, Ordering::SeqCst);
                return Ok(seen.under(&start_key));
            }
            Err(e) => return Err(e),
        };
        self.stale.store(false, Ordering::SeqCst);
        let records: Vec<(String, Record)> = kvs
            .iter()
            .map(|kv| {
                let r = self.decode(kind, kv)?;
                Ok((String::from_utf8_lossy(kv.key()).into_owned(), r))
            })
            .collect::<Result<_, MetaError>>()?;
        self.seen().replace_under(&start_key, &records);
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }

    fn apply(&self, ops: Vec<Op>) -> Result<Revision, MetaError> {
        let fence = self.fence_for_write()?;
        let mut compared: Vec<Compared> = Vec::new();
        let mut touched: HashMap<String, Touched> = HashMap::new();
        // Only the last change of a key is sent (etcd refuses two in one transaction).
        let mut writes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        // What this node will have seen once the transaction commits.
        let mut written: Vec<(String, Kind, String, Option<Value>)> = Vec::new();
        for op in ops {
            match op {
                Op::Put {
                    kind,
                    id,
                    value,
                    expect,
                } => {
                    let key = self.key(kind, &id);
                    match touched.get(&key) {
                        Some(&t) => check_touched(kind, &id, expect, t)?,
                        None => compared.extend(Compared::record(kind, &id, expect)),
                    }
                    let bytes = serde_json::to_vec(&value)
                        .map_err(|e| MetaError::Backend(e.to_string()))?;
                    touched.insert(key.clone(), Touched::Written);
                    writes.retain(|(k, _)| *k != key);
                    written.retain(|(k, ..)| *k != key);
                    written.push((key.clone(), kind, id.clone(), Some(value)));
                    writes.push((key, Some(bytes)));
                }
                Op::Delete { kind, id, expect } => {
                    let key = self.key(kind, &id);
                    match touched.get(&key) {
                        Some(&t) => check_touched(kind, &id, expect, t)?,
                        None => compared.extend(Compared::record(kind, &id, expect)),
                    }
                    touched.insert(key.clone(), Touched::Deleted);
                    writes.retain(|(k, _)| *k != key);
                    written.retain(|(k, ..)| *k != key);
                    written.push((key.clone(), kind, id.clone(), None));
                    writes.push((key, None));
                }
                Op::Check { kind, id, expect } => {
                    let key = self.key(kind, &id);
                    match touched.get(&key) {
                        Some(&t) => check_touched(kind, &id, expect, t)?,
                        None => compared.extend(Compared::record(kind, &id, expect)),
                    }
                }
                Op::CheckNone { kind, prefix } => {
                    let start = self.key(kind, &prefix);
                    if let Some((k, _)) = touched
                        .iter()
                        .find(|(k, t)| k.starts_with(&start) && matches!(t, Touched::Written))
                    {
                        let id = k[self.key(kind, "").len()..].to_string();
                        return Err(conflict(
                            kind,
                            &id,
                            format!("exists (none under {prefix:?} expected)"),
                        ));
                    }
                    compared.push(Compared {
                        kind,
                        id: String::new(),
                        expect: Expect::Absent,
                        none_under: Some(prefix),
                    });
                }
            }
        }
        let mut compares: Vec<Compare> = compared
            .iter()
            .filter_map(|c| match &c.none_under {
                Some(prefix) => {
                    let start = self.key(c.kind, prefix);
                    let end = prefix_end(start.as_bytes());
                    Some(Compare::version(start, CompareOp::Equal, 0).with_range(end))
                }
                None => compare(&self.key(c.kind, &c.id), c.expect),
            })
            .collect();
        if let Some(f) = &fence {
            compares.push(Compare::create_revision(
                f.key.as_str(),
                CompareOp::Equal,
                f.create_revision,
            ));
        }
        // On failure, read every compared key (the first of each prefix) to say which failed.
        let mut reads = Vec::new();
        for c in &compared {
            reads.push(match &c.none_under {
                Some(prefix) => {
                    let start = self.key(c.kind, prefix);
                    let end = prefix_end(start.as_bytes());
                    TxnOp::get(
                        start,
                        Some(
                            GetOptions::new()
                                .with_range(end)
                                .with_limit(1)
                                .with_keys_only(),
                        ),
                    )
                }
                None => TxnOp::get(
                    self.key(c.kind, &c.id),
                    Some(GetOptions::new().with_keys_only()),
                ),
            });
        }
        if let Some(f) = &fence {
            reads.push(TxnOp::get(
                f.key.as_str(),
                Some(GetOptions::new().with_keys_only()),
            ));
        }
        let changes: Vec<TxnOp> = writes
            .into_iter()
            .map(|(key, value)| match value {
                Some(v) => TxnOp::put(key, v, None),
                None => TxnOp::delete(key, None),
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(changes).or_else(reads);
        let resp =
            self.call(move |mut kv| async move { kv.txn(txn).await.map_err(unavailable) })?;
        let revision = resp.header().map_or(0, |h| h.revision()) as Revision;
        if resp.succeeded() {
            let mut seen = self.seen();
            for (key, kind, id, value) in written {
                match value {
                    Some(value) => {
                        let created = seen.records.get(&key).map_or(revision, |r| r.created);
                        let record = Record {
                            kind,
                            id,
                            created,
                            revision,
                            value,
                        };
                        seen.saw(key, Some(record));
                    }
                    None => seen.saw(key, None),
                }
            }
            return Ok(revision);
        }
        // Name the first precondition that failed, from what the failure branch read.
        let answers = resp.op_responses();
        for (c, answer) in compared.iter().zip(&answers) {
            let found = match answer {
                TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                _ => None,
            };
            if let Some(prefix) = &c.none_under {
                if let Some(kv) = found {
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let id = key[self.key(c.kind, "").len()..].to_string();
                    return Err(conflict(
                        c.kind,
                        &id,
                        format!("exists (none under {prefix:?} expected)"),
                    ));
                }
                continue;
            }
            let current = found.map(|kv| kv.mod_revision() as Revision);
            super::check(c.kind, &c.id, c.expect, current)?;
        }
        if let Some(f) = &fence {
            let holder = match answers.last() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| kv.create_revision()),
                _ => None,
            };
            if holder != Some(f.create_revision) {
                return Err(MetaError::NotActive(format!(
                    "this node no longer holds the management role (election key {} was \
                     created at revision {}, now {})",
                    f.key,
                    f.create_revision,
                    holder.map_or("absent".into(), |r| r.to_string())
                )));
            }
        }
        // Every compare held when read back: another transaction raced in between.
        Err(MetaError::Backend(format!(
            "transaction at revision {revision} failed its comparisons; retry"
        )))
    }

    fn revision(&self) -> Result<Revision, MetaError> {
        let key = format!("{}schema/", self.root);
        let resp = self.call(move |mut kv| async move {
            kv.get(key, Some(GetOptions::new().with_count_only()))
                .await
                .map_err(unavailable)
        })?;
        Ok(resp.header().map_or(0, |h| h.revision()) as Revision)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_keys_seen_absent_are_capped() {
        let mut seen = LastSeen::default();
        for i in 0..3 * MAX_ABSENT {
            seen.saw(format!("k/{i}"), None);
            assert!(seen.absent.len() <= MAX_ABSENT);
        }
        // The latest is still known absent.
        assert!(seen.covered(&format!("k/{}", 3 * MAX_ABSENT - 1)));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    /// A scratch etcd, or the reason there is none (printed, the test then skips: CI installs
    /// etcd-server, so there it always runs).
    fn scratch() -> Option<(etcd_member::Scratch, Arc<EtcdStore>)> {
        let etcd = match etcd_member::Scratch::start() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("skipping: {e}");
                return None;
            }
        };
        let store = EtcdStore::connect(vec![etcd.endpoint()], None, ROOT).expect("connecting");
        Some((etcd, Arc::new(store)))
    }

    #[test]
    fn passes_the_store_suite() {
        let Some((_etcd, store)) = scratch() else {
            return;
        };
        super::super::suite::all(&*store);
    }

    #[test]
    fn a_transaction_of_two_thousand_operations_commits_atomically() {
        let Some((_etcd, store)) = scratch() else {
            return;
        };
        super::super::suite::large_transactions(&*store, 2000);
    }

    #[test]
    fn a_deposed_writer_cannot_land_a_write() {
        let Some((_etcd, store)) = scratch() else {
            return;
        };
        // Win: create the election key; the fence holds its create-revision.
        let election = "/streamer/election/management".to_string();
        let won = store
            .call({
                let k = election.clone();
                move |mut kv| async move { kv.put(k, "node-a", None).await.map_err(unavailable) }
            })
            .unwrap();
        let rev = won.header().unwrap().revision();
        store.set_gate(WriteGate::Fenced(Fence {
            key: election.clone(),
            create_revision: rev,
            until_ns: None,
        }));
        super::super::suite::put_one(&*store, "before").unwrap();
        // Lose: the key goes (lease expiry) and the other node creates it again.
        store
            .call({
                let k = election.clone();
                move |mut kv| async move {
                    kv.delete(k.clone(), None).await.map_err(unavailable)?;
                    kv.put(k, "node-b", None).await.map_err(unavailable)
                }
            })
            .unwrap();
        let before = store.revision().unwrap();
        let err = super::super::suite::put_one(&*store, "after").unwrap_err();
        assert!(matches!(err, MetaError::NotActive(_)), "{err:?}");
        assert_eq!(store.revision().unwrap(), before, "nothing was written");
        assert!(store.get(Kind::PlanScript, "after").unwrap().is_none());
        // A lapsed hold is refused without asking etcd; a closed gate too.
        store.set_gate(WriteGate::Fenced(Fence {
            key: election.clone(),
            create_revision: rev,
            until_ns: Some(monotonic_ns()),
        }));
        let err = super::super::suite::put_one(&*store, "after").unwrap_err();
        assert!(err.to_string().contains("lapsed"), "{err}");
        store.set_gate(WriteGate::Closed("node-b is the active node".into()));
        let err = super::super::suite::put_one(&*store, "after").unwrap_err();
        assert!(matches!(err, MetaError::NotActive(_)), "{err:?}");
        store.set_gate(WriteGate::Open);
        super::super::suite::put_one(&*store, "after").unwrap();
    }

    #[test]
    fn a_single_appliances_records_are_copied_once() {
        let Some((_etcd, store)) = scratch() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let redb = crate::meta::RedbStore::open(&dir.path().join("m.redb")).unwrap();
        super::super::suite::copies_every_record_once(&redb, &*store);
    }

    #[test]
    fn an_unreachable_store_answers_reads_from_what_was_seen_and_refuses_writes() {
        let Some((etcd, store)) = scratch() else {
            return;
        };
        super::super::suite::put_one(&*store, "a").unwrap();
        super::super::suite::put_one(&*store, "b").unwrap();
        assert_eq!(store.list(Kind::PlanScript).unwrap().len(), 2);
        assert!(store.get(Kind::BuildPlan, "seen-absent").unwrap().is_none());
        super::super::suite::put_one(&*store, "c").unwrap();
        assert!(!store.serving_stale());
        drop(etcd);
        // Reads answer what this node last saw, and say so.
        let listed: Vec<String> = store
            .list(Kind::PlanScript)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, ["a", "b", "c"]);
        assert!(store.serving_stale());
        assert_eq!(
            store.get(Kind::PlanScript, "c").unwrap().unwrap().value,
            serde_json::json!({"name": "c"})
        );
        assert!(
            store.get(Kind::PlanScript, "never").unwrap().is_none(),
            "listed whole"
        );
        assert!(store.get(Kind::BuildPlan, "seen-absent").unwrap().is_none());
        // What was never seen, and every write, answer unavailable.
        let err = store.get(Kind::User, "x").unwrap_err();
        assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
        let err = store.list(Kind::Task).unwrap_err();
        assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
        let err = super::super::suite::put_one(&*store, "x").unwrap_err();
        assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
    }
}
