//! Reading a password from the terminal without echoing it.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;

/// Prompts on the terminal (standard error) and reads one line with echo off.
pub fn prompt(text: &str) -> std::io::Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    let mut term = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: `fd` is an open terminal owned by `tty` for this whole function, and `term`
    // points to writable memory of the right type; tcgetattr fills it or fails.
    if unsafe { libc::tcgetattr(fd, term.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: tcgetattr succeeded above, so it initialised `term`.
    let saved = unsafe { term.assume_init() };
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: `fd` is still open; `quiet` is a valid termios copied from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = &tty;
    let read = out.write_all(text.as_bytes()).and_then(|()| {
        let mut line = String::new();
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        Ok(line)
    });
    // SAFETY: restores the settings read above on the same open descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    Ok(read?.trim_end_matches(['\n', '\r']).to_string())
}
