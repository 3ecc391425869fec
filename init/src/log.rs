//! Console lines that cannot panic: PID 1 may run with no console attached, and
//! `println!` panics when its write fails.

use std::io::Write;

use std::sync::{Mutex, OnceLock};

/// A copy of init's lines, once PID 1 has opened it (`/run/log/init.log`).
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Also appends every later `say` line to `path`.
pub fn copy_to(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let _ = FILE.set(Mutex::new(f));
    Ok(())
}

/// Writes `streamer-init: <line>` to stderr (the console) and to the log file, ignoring
/// write errors.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "streamer-init: {line}");
    if let Some(f) = FILE.get() {
        // The log carries the kernel clock, as dmesg does, to see where boot time goes.
        let t = crate::sys::boottime().as_secs_f64();
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "[{t:9.3}] {line}");
    }
}

/// Writes `line` as is to stdout (the console), ignoring write errors.
pub fn announce(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
