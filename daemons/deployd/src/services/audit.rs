//! The audit log: one JSON line per change and per login attempt (who, what, when, result),
//! appended to `STATE_DIR/audit.log` and synced before the request completes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use parking_lot::Mutex;
use serde_json::json;

use super::clock::now_iso;

#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    fn write(&self, entry: serde_json::Value) {
        let mut line = entry.to_string();
        line.push('\n');
        let mut f = self.file.lock();
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
            tracing::error!("audit log write failed: {e}");
        }
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
