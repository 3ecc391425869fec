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

/// Waits, at most `limit`, until the console has sent every line written so far.
///
/// When the console service (a session leader on the serial port) exits, the kernel hangs
/// the terminal up and discards what its driver has not sent yet: at 115200 baud a few
/// lines of init's own. So init drains before it stops that service and before it powers
/// off. Bounded: hardware flow control with no cable attached would otherwise block forever.
pub fn drain(limit: std::time::Duration) -> bool {
    wait_until_sent(|| crate::sys::output_queued(libc::STDERR_FILENO), limit)
}

/// Polls `queued` until it reports nothing left (or no terminal), or `limit` passes.
fn wait_until_sent(mut queued: impl FnMut() -> Option<usize>, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match queued() {
            None | Some(0) => return true,
            Some(_) if std::time::Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// Writes `line` as is to stdout (the console), ignoring write errors.
pub fn announce(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn waits_while_the_terminal_still_holds_output() {
        let mut left = vec![0, 12, 40];
        let mut polls = 0;
        let sent = wait_until_sent(
            || {
                polls += 1;
                left.pop()
            },
            Duration::from_secs(5),
        );
        assert!(sent);
        assert_eq!(polls, 3);
    }

    #[test]
    fn gives_up_when_the_output_never_leaves() {
        let start = Instant::now();
        assert!(!wait_until_sent(|| Some(7), Duration::from_millis(60)));
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn a_pipe_is_not_a_terminal_a_pty_is() {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert_eq!(crate::sys::output_queued(fds[1]), None);
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the name and settings pointers may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        assert!(crate::sys::output_queued(slave).is_some());
        for fd in [fds[0], fds[1], master, slave] {
            // SAFETY: each descriptor was opened above and is closed once.
            unsafe { libc::close(fd) };
        }
    }
}
