//! The audit log: one JSON line per change and per login attempt (who, what, when, result,
//! which node), appended to `STATE_DIR/audit.log` and synced before the request completes.
//!
//! On a pair the log is also cluster-wide: every entry goes to the pair's etcd too (under
//! [`PAIR_LOG`], keys sorted by time), from both nodes, so either node (and the one that
//! takes over) shows the whole trail. That copy is made by a thread of its own, in order,
//! retried while etcd does not answer; the local file stays the record of what this node
//! did when it was cut off. Entries older than [`PAIR_RETENTION`] leave etcd.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::clock::now_iso;
use crate::meta::{EtcdStore, MetaError};

/// Where the pair's audit log lives in etcd.
pub const PAIR_LOG: &str = "/streamer/audit/";
/// How long the pair keeps an entry in etcd.
pub const PAIR_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Entries waiting for etcd at most (beyond, the oldest waiting are dropped from the pair's
/// copy; the local file has them).
const BACKLOG: usize = 10_000;

#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
    path: PathBuf,
    /// This node's name (on a pair).
    node: Option<String>,
    pair: Option<PairCopy>,
}

#[derive(Debug)]
struct PairCopy {
    store: Arc<EtcdStore>,
    queue: SyncSender<(String, Vec<u8>)>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The key of an entry made at `ns` by `node`: fixed width, so keys sort by time.
fn pair_key(ns: u128, node: &str) -> String {
    format!("{PAIR_LOG}{ns:024}-{node}")
}

/// Copies queued entries into etcd, in order, retrying each until etcd takes it; every
/// thousand entries, drops those past the retention.
fn copy_to_pair(store: Arc<EtcdStore>, queue: Receiver<(String, Vec<u8>)>) {
    let mut since_trim = 0usize;
    while let Ok((key, value)) = queue.recv() {
        let mut warned = false;
        while let Err(e) = store.append_log(key.clone(), value.clone()) {
            if !warned {
                tracing::warn!("the pair's audit log does not take entries ({e}); retrying");
                warned = true;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        since_trim += 1;
        if since_trim >= 1000 {
            since_trim = 0;
            let below = now_ns().saturating_sub(PAIR_RETENTION.as_nanos());
            if let Err(e) = store.trim_log(PAIR_LOG, &pair_key(below, "")) {
                tracing::warn!("trimming the pair's audit log: {e}");
            }
        }
    }
}

impl AuditLog {
    /// The log of a single appliance.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_on(path, None)
    }

    /// The log of a node; with `pair` (its name and the pair's store) the entries are
    /// cluster-wide too.
    pub fn open_on(path: &Path, pair: Option<(String, Arc<EtcdStore>)>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (node, pair) = match pair {
            Some((node, store)) => {
                let (queue, rx) = sync_channel(BACKLOG);
                let s = Arc::clone(&store);
                std::thread::Builder::new()
                    .name("audit-to-pair".into())
                    .spawn(move || copy_to_pair(s, rx))?;
                (Some(node), Some(PairCopy { store, queue }))
            }
            None => (None, None),
        };
        Ok(Self {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            node,
            pair,
        })
    }

    fn write(&self, mut entry: Value) {
        if let Some(node) = &self.node {
            entry["node"] = json!(node);
        }
        let mut line = entry.to_string();
        {
            line.push('\n');
            let mut f = self.file.lock();
            if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
                tracing::error!("audit log write failed: {e}");
            }
        }
        if let (Some(pair), Some(node)) = (&self.pair, &self.node) {
            line.pop();
            let item = (pair_key(now_ns(), node), line.into_bytes());
            if let Err(TrySendError::Full(_)) = pair.queue.try_send(item) {
                tracing::error!(
                    "the pair's audit log is {BACKLOG} entries behind: this entry is only in {}",
                    self.path.display()
                );
            }
        }
    }

    /// The newest `limit` entries, newest first: the pair's (both nodes') on a pair, this
    /// appliance's otherwise.
    pub fn recent(&self, limit: usize) -> Result<Vec<Value>, MetaError> {
        if let Some(pair) = &self.pair {
            return Ok(pair
                .store
                .read_log(PAIR_LOG, limit)?
                .iter()
                .filter_map(|v| serde_json::from_slice(v).ok())
                .collect());
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| MetaError::Backend(format!("{}: {e}", self.path.display())))?;
        Ok(text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str(l).ok())
            .take(limit)
            .collect())
    }

    /// A request that may have changed something: its method, path and HTTP status.
    pub fn record(&self, user: &str, client: IpAddr, method: &str, path: &str, status: u16) {
        self.write(json!({
            "time": now_iso(),
            "user": user,
            "client": client.to_string(),
            "action": method,
            "resource": path,
            "status": status,
            "result": if (200..300).contains(&status) { "success" } else { "failure" },
        }));
    }

    /// A login attempt (the password is never logged).
    pub fn login(&self, user: &str, client: IpAddr, result: &str) {
        self.write(json!({
            "time": now_iso(),
            "user": user,
            "client": client.to_string(),
            "action": "LOGIN",
            "resource": "/rest/login-sessions",
            "result": result,
        }));
    }
}
