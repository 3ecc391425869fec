//! A VM's serial console: everything the guest prints is kept in memory (for expect-style
//! waits), appended to a log file (kept for post-mortems), and optionally echoed to our
//! stdout; input is written to QEMU's stdin.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

#[derive(Debug, Default)]
struct Shared {
    text: Vec<u8>,
    closed: bool,
}

/// The console of one VM.
#[derive(Debug)]
pub struct Console {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Where in `text` the next `expect` starts looking.
    cursor: usize,
    input: Option<ChildStdin>,
    log: PathBuf,
    name: String,
}

impl Console {
    /// Starts copying `output` into memory and into `log`; `echo` also copies it to stdout.
    pub fn start(
        name: &str,
        mut output: ChildStdout,
        input: ChildStdin,
        log: &Path,
        echo: bool,
    ) -> Result<Console> {
        let mut file = std::fs::File::create(log)
            .with_context(|| format!("cannot create the console log {}", log.display()))?;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match output.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let _ = file.write_all(&buf[..n]);
                if echo {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                let (m, cv) = &*s;
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .text
                    .extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
            let (m, cv) = &*s;
            m.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            cv.notify_all();
        });
        Ok(Console {
            shared,
            cursor: 0,
            input: Some(input),
            log: log.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        let (m, _) = &*self.shared;
        String::from_utf8_lossy(&m.lock().unwrap_or_else(|e| e.into_inner()).text).into_owned()
    }

    /// About the last `bytes` bytes the console printed.
    pub fn tail(&self, bytes: usize) -> String {
        let (m, _) = &*self.shared;
        last_bytes(&m.lock().unwrap_or_else(|e| e.into_inner()).text, bytes)
    }

    /// Waits until `pattern` matches output printed after the previous match, for at most
    /// `timeout`; returns the capture groups (0 = the whole match). The error shows the
    /// end of the console.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<Vec<String>> {
        let re = Regex::new(pattern).with_context(|| format!("bad pattern {pattern:?}"))?;
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let text =
                String::from_utf8_lossy(&g.text[self.cursor.min(g.text.len())..]).into_owned();
            if let Some(c) = re.captures(&text) {
                let whole = c.get(0).map_or(0..0, |m| m.range());
                // Byte offsets of the lossy copy match the original for our ASCII patterns;
                // clamp anyway.
                self.cursor = (self.cursor + whole.end).min(g.text.len());
                return Ok(c
                    .iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_owned()))
                    .collect());
            }
            let now = Instant::now();
            if g.closed || now >= deadline {
                let tail = last_bytes(&g.text, 3000);
                bail!(
                    "{}: {} waiting for /{pattern}/ (console log {}); last output:\n{tail}",
                    self.name,
                    if g.closed { "VM ended" } else { "timed out" },
                    self.log.display()
                );
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Types `text` on the console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let input = self.input.as_mut().context("console input closed")?;
        input.write_all(text.as_bytes())?;
        input.flush()?;
        Ok(())
    }

    /// Runs `command` in the shell at the console and returns its output; `prompt` (a
    /// regex) is the shell's prompt, waited for after the command. Fails when the command
    /// exits non-zero.
    pub fn shell(&mut self, command: &str, prompt: &str, timeout: Duration) -> Result<String> {
        // One line: the terminal echoes all of it before the command runs, and the markers
        // are assembled by printf, so the echo (however the terminal wraps it) never
        // matches them; `$?` is the command's status.
        self.send(&format!(
            "printf '__%s__\\n' begin; {command}; printf '__%s__%d\\n' end $?\n"
        ))?;
        let got = self.expect(r"(?s)__begin__\r?\n(.*?)__end__(\d+)", timeout)?;
        self.expect(prompt, Duration::from_secs(10))?;
        // Without terminal control sequences (bash's bracketed-paste switches, colours).
        let plain = Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]")
            .map(|re| re.replace_all(&got[1], "").into_owned())
            .unwrap_or_else(|_| got[1].clone());
        let out = plain.replace('\r', "");
        if got[2] != "0" {
            bail!("`{command}` exited with {}: {out}", got[2]);
        }
        Ok(out)
    }

    /// Takes the input side (for forwarding our own stdin to the VM).
    pub fn take_input(&mut self) -> Option<ChildStdin> {
        self.input.take()
    }
}

/// The end of `text` (at most `bytes` of it, from a character boundary), as a string.
fn last_bytes(text: &[u8], bytes: usize) -> String {
    let all = String::from_utf8_lossy(text);
    let start = all.len().saturating_sub(bytes);
    let start = (start..all.len())
        .find(|&i| all.is_char_boundary(i))
        .unwrap_or(all.len());
    all[start..].to_owned()
}
