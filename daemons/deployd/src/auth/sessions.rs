//! Login sessions: opaque tokens held in memory with an idle timeout.
//!
//! Sessions do not survive a restart of deployd (clients log in again, as they do after a
//! OneView failover).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Role;

/// An authenticated session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user: String,
    pub role: Role,
    last_used: Instant,
}

/// All open sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    idle_timeout: Duration,
}

impl Sessions {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            idle_timeout,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Opens a session and returns its token.
    pub fn open(&self, user: &str, role: Role) -> Session {
        use rand::Rng;
        let token: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let s = Session {
            token: token.clone(),
            user: user.to_string(),
            role,
            last_used: Instant::now(),
        };
        self.inner.lock().insert(token, s.clone());
        s
    }

    /// The session for `token` if it exists and has not been idle too long; touching it
    /// restarts the idle timer.
    pub fn touch(&self, token: &str) -> Option<Session> {
        let mut map = self.inner.lock();
        let now = Instant::now();
        let timeout = self.idle_timeout;
        map.retain(|_, s| now.duration_since(s.last_used) < timeout);
        let s = map.get_mut(token)?;
        s.last_used = now;
        Some(s.clone())
    }

    pub fn close(&self, token: &str) -> bool {
        self.inner.lock().remove(token).is_some()
    }
}
