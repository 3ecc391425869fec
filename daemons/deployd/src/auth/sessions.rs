//! Login sessions: opaque tokens with an idle timeout, held in memory.
//!
//! On a single appliance sessions do not survive a restart of deployd (clients log in again,
//! as they do after a OneView restart). On a pair they also live in the cluster store
//! ([`Kind::Session`], keyed by the token's SHA-256, never the token itself), so a session
//! opened on the old active node is valid on the new one after a takeover: a token this node
//! does not know is looked up there, and one it knows is checked there again after a second
//! (a logout on the other node ends it here too). The store learns a session's last use at
//! most every quarter of the idle timeout; a session idle longer than the timeout is gone
//! everywhere.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::Role;
use crate::meta::{Expect, Kind, MetaStore, Op};

/// An authenticated session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user: String,
    pub role: Role,
    last_used: Instant,
    /// When the store last heard of its use.
    stored_at: Option<Instant>,
    /// When the store last confirmed it exists.
    checked_at: Instant,
}

/// How long a shared session is taken as valid without asking the store again.
const RECHECK: Duration = Duration::from_secs(1);

/// A session as the cluster store keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    user: String,
    role: Role,
    /// Seconds since the epoch of the last use the store heard of.
    last_used: u64,
}

/// All open sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    idle_timeout: Duration,
    /// The pair's store, where sessions are shared; `None` on a single appliance.
    shared: Option<Arc<dyn MetaStore>>,
}

fn key(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sessions {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            idle_timeout,
            shared: None,
        }
    }

    /// Sessions shared through the pair's `store`.
    pub fn shared(idle_timeout: Duration, store: Arc<dyn MetaStore>) -> Self {
        Self {
            shared: Some(store),
            ..Self::new(idle_timeout)
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Writes the session's use to the store (best effort: a standby cannot write, and a
    /// session it opens then stays its own).
    fn store(&self, s: &mut Session) {
        let Some(store) = &self.shared else { return };
        let value = Stored {
            user: s.user.clone(),
            role: s.role,
            last_used: epoch_secs(),
        };
        let Ok(value) = serde_json::to_value(&value) else {
            return;
        };
        match store.apply(vec![Op::Put {
            kind: Kind::Session,
            id: key(&s.token),
            value,
            expect: Expect::Any,
        }]) {
            Ok(_) => s.stored_at = Some(Instant::now()),
            Err(e) => tracing::debug!("session not shared: {e}"),
        }
    }

    /// Opens a session and returns its token.
    pub fn open(&self, user: &str, role: Role) -> Session {
        use rand::Rng;
        let token: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let mut s = Session {
            token: token.clone(),
            user: user.to_string(),
            role,
            last_used: Instant::now(),
            stored_at: None,
            checked_at: Instant::now(),
        };
        self.store(&mut s);
        self.inner.lock().insert(token, s.clone());
        s
    }

    /// A session opened on the other node of the pair, from the store.
    fn stored_session(&self, token: &str) -> Option<Session> {
        let store = self.shared.as_ref()?;
        let rec = store.get(Kind::Session, &key(token)).ok()??;
        let stored: Stored = serde_json::from_value(rec.value).ok()?;
        let idle = epoch_secs().saturating_sub(stored.last_used);
        if idle >= self.idle_timeout.as_secs() {
            let _ = store.apply(vec![Op::Delete {
                kind: Kind::Session,
                id: key(token),
                expect: Expect::Any,
            }]);
            return None;
        }
        Some(Session {
            token: token.to_string(),
            user: stored.user,
            role: stored.role,
            last_used: Instant::now(),
            stored_at: Some(Instant::now()),
            checked_at: Instant::now(),
        })
    }

    /// The session for `token` if it exists and has not been idle too long; touching it
    /// restarts the idle timer.
    pub fn touch(&self, token: &str) -> Option<Session> {
        if token.is_empty() {
            return None;
        }
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let known = {
            let mut map = self.inner.lock();
            map.retain(|_, s| now.duration_since(s.last_used) < timeout);
            map.get_mut(token).map(|s| {
                s.last_used = now;
                s.clone()
            })
        };
        let mut s = match known {
            // Shared and not checked lately: the store decides (a logout elsewhere).
            Some(s) if self.shared.is_some() && now.duration_since(s.checked_at) >= RECHECK => {
                if s.stored_at.is_some() && self.stored_session(token).is_none() {
                    self.inner.lock().remove(token);
                    return None;
                }
                if let Some(held) = self.inner.lock().get_mut(token) {
                    held.checked_at = now;
                }
                s
            }
            Some(s) => s,
            None => {
                let s = self.stored_session(token)?;
                self.inner.lock().insert(token.to_string(), s.clone());
                s
            }
        };
        let due = s
            .stored_at
            .is_none_or(|at| now.duration_since(at) >= timeout / 4);
        if self.shared.is_some() && due {
            self.store(&mut s);
            if let Some(held) = self.inner.lock().get_mut(token) {
                held.stored_at = s.stored_at;
            }
        }
        Some(s)
    }

    pub fn close(&self, token: &str) -> bool {
        let known = self.inner.lock().remove(token).is_some();
        if let Some(store) = &self.shared {
            let _ = store.apply(vec![Op::Delete {
                kind: Kind::Session,
                id: key(token),
                expect: Expect::Any,
            }]);
        }
        known
    }
}
