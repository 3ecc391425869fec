//! One QEMU process (TCG: this machine's KVM is not usable) with its serial console on
//! stdin/stdout and QMP on a Unix socket. Dropping a [`Vm`] kills QEMU, so a failed test
//! never leaves a VM behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::console::Console;
use crate::qmp::Qmp;

/// UEFI firmware from Debian's `ovmf`.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// What to start; `args` are added after the common ones.
#[derive(Debug)]
pub struct VmSpec {
    pub name: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub args: Vec<String>,
    /// Working directory for the QMP socket, the console log and firmware variables.
    pub dir: PathBuf,
    /// Echo the console to our stdout.
    pub echo: bool,
    /// Run QEMU in this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Descriptors QEMU inherits, at 3, 4, ... in this order (taps).
    fds: Vec<std::os::fd::OwnedFd>,
}

/// A running VM.
#[derive(Debug)]
pub struct Vm {
    pub name: String,
    child: Option<Child>,
    pub console: Console,
    qmp: Qmp,
    pub started: Instant,
}

impl VmSpec {
    pub fn new(name: &str, dir: &Path) -> VmSpec {
        VmSpec {
            name: name.to_owned(),
            memory_mib: 2048,
            cpus: 2,
            args: Vec::new(),
            dir: dir.to_owned(),
            echo: false,
            netns: None,
            fds: Vec::new(),
        }
    }

    /// Hands `fd` to QEMU; returns the number it has there (for `-netdev tap,fd=N`).
    pub fn pass_fd(&mut self, fd: std::os::fd::OwnedFd) -> i32 {
        assert!(self.fds.len() < 16, "at most 16 descriptors");
        self.fds.push(fd);
        2 + self.fds.len() as i32
    }

    pub fn arg(&mut self, a: impl Into<String>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    /// UEFI firmware: OVMF's code read-only and a private copy of its variables.
    pub fn uefi(&mut self) -> Result<&mut Self> {
        let vars = self.dir.join(format!("{}-OVMF_VARS.fd", self.name));
        if !vars.exists() {
            std::fs::copy(OVMF_VARS, &vars)
                .with_context(|| format!("cannot copy {OVMF_VARS} (apt-get install ovmf)"))?;
        }
        self.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        Ok(self)
    }

    pub fn start(&self) -> Result<Vm> {
        std::fs::create_dir_all(&self.dir)?;
        let qmp_path = self.dir.join(format!("{}.qmp", self.name));
        let _ = std::fs::remove_file(&qmp_path);
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        inherit_fds(&mut cmd, &self.fds);
        cmd.args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args([
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ])
        .args([
            "-chardev",
            "stdio,id=con0,signal=off",
            "-serial",
            "chardev:con0",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
        .args(&self.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: Ctrl-C at our terminal is ours to handle (a clean
        // power-off), not an immediate kill of QEMU.
        .process_group(0);
        let mut child = cmd
            .spawn()
            .context("cannot start qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
        let (Some(out), Some(inp)) = (child.stdout.take(), child.stdin.take()) else {
            bail!("qemu's stdio is not piped");
        };
        let log = self.dir.join(format!("{}.console.log", self.name));
        let console = Console::start(&self.name, out, inp, &log, self.echo)?;
        let qmp = match Qmp::connect(&qmp_path, Duration::from_secs(20)) {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                return Err(e.context(format!("qemu ended or never listened: {status:?}")));
            }
        };
        Ok(Vm {
            name: self.name.clone(),
            child: Some(child),
            console,
            qmp,
            started: Instant::now(),
        })
    }
}

impl Vm {
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// Presses the ACPI power button and waits for QEMU to exit (the guest powered off).
    pub fn power_down(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.press_power_button()?;
        self.wait_exit(timeout)
    }

    /// Presses the ACPI power button and returns at once.
    pub fn press_power_button(&mut self) -> Result<()> {
        self.qmp
            .execute("system_powerdown", serde_json::json!({}))
            .context("system_powerdown")?;
        Ok(())
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("already stopped")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not power off within {} s (console log {})",
                    self.name,
                    timeout.as_secs(),
                    self.console.log_path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills QEMU at once (the power cord).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes `fds` the child's descriptors 3, 4, ... (without close-on-exec).
fn inherit_fds(cmd: &mut Command, fds: &[std::os::fd::OwnedFd]) {
    use std::os::fd::AsRawFd;
    if fds.is_empty() {
        return;
    }
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: between fork and exec, only fcntl and dup2 (async-signal-safe) on descriptors
    // that are open in the parent; `raw` was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // First all out of the way (above any target number), then into place, so a
            // descriptor that already sits at a target number is not overwritten early.
            let mut tmp = [0i32; 16];
            for (i, fd) in raw.iter().enumerate().take(16) {
                tmp[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if tmp[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, t) in tmp.iter().enumerate().take(raw.len().min(16)) {
                // dup2 clears close-on-exec on the new descriptor.
                if libc::dup2(*t, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for QEMU's host forwarding).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
