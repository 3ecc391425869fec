//! Console lines that cannot panic: PID 1 may run with no console attached, and
//! `println!` panics when its write fails.

use std::io::Write;

/// Writes `streamer-init: <line>` to stderr (the console), ignoring write errors.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "streamer-init: {line}");
}

/// Writes `line` as is to stdout (the console), ignoring write errors.
pub fn announce(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
