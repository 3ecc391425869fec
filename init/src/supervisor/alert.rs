//! Crash-loop alert records: one small `key=value` file per alert under
//! /run/streamer/alerts (where the daemons' health reporting picks them up) and a log line.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::state::Alert;

pub const ALERT_DIR: &str = "/run/streamer/alerts";

/// Writes the alert record for `service` into `dir` and returns its path.
pub fn record(dir: &Path, service: &str, alert: &Alert) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut path = dir.join(format!("{service}-crash-loop-{wall}.alert"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{service}-crash-loop-{wall}-{n}.alert"));
        n += 1;
    }
    let body = format!(
        "kind=crash-loop\nservice={service}\ncrashes={}\nwindow_seconds={}\nlast_exit={}\ntime={wall}\n",
        alert.crashes,
        alert.window.as_secs(),
        alert.last_exit,
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The console/log line for an alert.
pub fn log_line(service: &str, alert: &Alert) -> String {
    format!(
        "streamer-init: ALERT {service} is crash-looping: {} crashes in {} s (last: {})",
        alert.crashes,
        alert.window.as_secs(),
        alert.last_exit
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_are_readable_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let alert = Alert {
            crashes: 5,
            window: Duration::from_secs(120),
            at: Duration::from_secs(9),
            last_exit: "exit status 1".into(),
        };
        let a = record(dir.path(), "deployd", &alert).unwrap();
        let b = record(dir.path(), "deployd", &alert).unwrap();
        assert_ne!(a, b);
        let text = std::fs::read_to_string(&a).unwrap();
        assert!(text.starts_with("kind=crash-loop\nservice=deployd\ncrashes=5\nwindow_seconds=120\nlast_exit=exit status 1\n"), "{text}");
        assert_eq!(
            log_line("deployd", &alert),
            "streamer-init: ALERT deployd is crash-looping: 5 crashes in 120 s (last: exit status 1)"
        );
    }
}
