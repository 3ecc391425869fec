//! Login rate limit: after too many failed attempts for one user name from one address, further
//! attempts are refused for a while, whatever the password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failed attempts allowed per window.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    first: Instant,
}

/// Counts failed logins per (client address, lower-cased user name).
#[derive(Debug, Clone, Default)]
pub struct LoginLimiter {
    inner: Arc<Mutex<HashMap<(IpAddr, String), Attempts>>>,
}

impl LoginLimiter {
    /// Whether another attempt is allowed now.
    pub fn allowed(&self, client: IpAddr, user: &str) -> bool {
        let mut map = self.inner.lock();
        let now = Instant::now();
        map.retain(|_, a| now.duration_since(a.first) < WINDOW);
        map.get(&(client, user.to_lowercase()))
            .is_none_or(|a| a.failures < MAX_FAILURES)
    }

    pub fn failed(&self, client: IpAddr, user: &str) {
        let mut map = self.inner.lock();
        let a = map
            .entry((client, user.to_lowercase()))
            .or_insert(Attempts {
                failures: 0,
                first: Instant::now(),
            });
        a.failures += 1;
    }

    pub fn succeeded(&self, client: IpAddr, user: &str) {
        self.inner.lock().remove(&(client, user.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_out_that_user_from_that_address() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(l.allowed(ip, "Administrator"));
            l.failed(ip, "administrator");
        }
        assert!(!l.allowed(ip, "Administrator"));
        assert!(l.allowed(ip, "other"));
        assert!(l.allowed("10.0.0.2".parse().unwrap(), "Administrator"));
    }
}
