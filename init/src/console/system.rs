//! The console menu's actions on the appliance: files PID 1 and the daemons keep under
//! /run and /data, busybox for paging, archiving and the shell, and signals to PID 1 for
//! reboot and power-off (the same path as ctrl-alt-del and the power button).

use std::ffi::CStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use super::Actions;
use crate::services::{self, ADMIN_PASSWORD_RESET, DEPLOYD_STATE, LOG_DIR, STATUS_FILE};
use crate::supervisor::alert::ALERT_DIR;
use crate::{config, storage, sys};

/// Support dumps go to the data partition.
pub const SUPPORT_DIR: &str = "/data/support";
const BUSYBOX: &str = "/bin/busybox";
/// The API's command-line client (a name of the multi-call binary).
const STREAMERCTL: &str = "/usr/bin/streamerctl";
/// How long a password reset waits for deployd to apply it.
const RESET_WAIT: Duration = Duration::from_secs(60);

/// The appliance behind the menu.
pub struct Appliance {
    /// The terminal's settings before echo was turned off.
    saved_termios: Option<libc::termios>,
}

impl Appliance {
    pub fn new() -> Self {
        Appliance {
            saved_termios: None,
        }
    }
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("echo_off", &self.saved_termios.is_some())
            .finish()
    }
}

impl Default for Appliance {
    fn default() -> Self {
        Self::new()
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `(interface, address/prefix)` of every configured address except loopback's.
fn addresses() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list freed below with freeifaddrs; each
    // node's pointers are valid until then and are only read.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut p = list;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            let ip = sockaddr_ip(ifa.ifa_addr);
            let prefix = if ifa.ifa_netmask.is_null() {
                None
            } else {
                sockaddr_ip(ifa.ifa_netmask).map(|m| match m {
                    std::net::IpAddr::V4(m) => u32::from(m).count_ones(),
                    std::net::IpAddr::V6(m) => u128::from(m).count_ones(),
                })
            };
            if let (Some(ip), Some(prefix)) = (ip, prefix) {
                out.push((name, format!("{ip}/{prefix}")));
            }
        }
        libc::freeifaddrs(list);
    }
    out
}

/// SAFETY: `sa` points to a valid sockaddr of the family it declares.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<std::net::IpAddr> {
    // SAFETY: the caller guarantees `sa` is valid; the family says which struct it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*(sa as *const libc::sockaddr_in);
                Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
            }
            libc::AF_INET6 => {
                let sin6 = &*(sa as *const libc::sockaddr_in6);
                Some(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
            }
            _ => None,
        }
    }
}

fn uptime() -> String {
    let secs = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    format!(
        "{}d {}h {}m",
        secs / 86400,
        secs / 3600 % 24,
        secs / 60 % 60
    )
}

fn kernel_release() -> String {
    read("/proc/sys/kernel/osrelease").trim().to_owned()
}

fn data_usage() -> String {
    let Ok(path) = std::ffi::CString::new(storage::DATA_DIR) else {
        return String::new();
    };
    // SAFETY: a zeroed statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into `st`; the path is a valid C string.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    let block = st.f_frsize;
    let total = (st.f_blocks * block) >> 20;
    let free = (st.f_bavail * block) >> 20;
    format!("{} MiB, {} MiB free", total, free)
}

/// The pid PID 1 reports for `service` in the status file.
fn pid_of(service: &str) -> Option<i32> {
    read(STATUS_FILE).lines().find_map(|l| {
        let mut words = l.split_whitespace();
        if words.next() != Some(service) {
            return None;
        }
        let mut words = words.skip_while(|w| *w != "pid");
        words.next();
        words.next().and_then(|p| p.parse().ok())
    })
}

fn run_capture(cmd: &mut Command) -> String {
    match cmd.output() {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        }
        Err(e) => format!("cannot run {:?}: {e}\n", cmd.get_program()),
    }
}

fn storaged_listing(what: &str) -> String {
    run_capture(Command::new("/usr/bin/storaged").args([
        what,
        "list",
        "--control",
        services::STORAGED_SOCKET,
    ]))
}

impl Actions for Appliance {
    fn details(&mut self) -> String {
        let mut s = String::new();
        let hostname = read("/proc/sys/kernel/hostname");
        let _ = writeln!(
            s,
            "Streamer {} (kernel {}, up {})",
            env!("CARGO_PKG_VERSION"),
            kernel_release(),
            uptime()
        );
        let _ = writeln!(s, "Hostname   {}", hostname.trim());
        let addrs = addresses();
        if addrs.is_empty() {
            let _ = writeln!(s, "Addresses  none");
        }
        for (name, a) in &addrs {
            let _ = writeln!(s, "Address    {name} {a}");
        }
        if let Some((_, a)) = addrs.first() {
            let ip = a.split('/').next().unwrap_or(a);
            let _ = writeln!(s, "API        https://{ip}/rest (log in as Administrator)");
        }
        let initial = Path::new(DEPLOYD_STATE).join(appliance_layout::INITIAL_PASSWORD_FILE);
        if let Ok(p) = std::fs::read_to_string(&initial) {
            let _ = writeln!(
                s,
                "Password   Administrator / {} (first-start password; change it)",
                p.trim()
            );
        }
        // clusterd's summary: this node's role, then the pair's active alerts.
        let summary = read(appliance_layout::CLUSTER_SUMMARY);
        let mut lines = summary.lines();
        let role = lines.next().unwrap_or("single appliance").to_owned();
        let _ = writeln!(s, "Role       {role}");
        let pair_alerts: Vec<String> = lines
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let _ = writeln!(s, "Data       {} {}", storage::DATA_DIR, data_usage());
        let _ = writeln!(s, "Services:\n{}", read(STATUS_FILE));
        let mut alerts: Vec<String> = std::fs::read_dir(ALERT_DIR)
            .map(|d| {
                d.flatten()
                    .map(|e| read(&e.path().to_string_lossy()).trim().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        alerts.extend(pair_alerts);
        if alerts.is_empty() {
            let _ = writeln!(s, "Alerts     none");
        } else {
            for a in alerts {
                let _ = writeln!(s, "ALERT      {a}");
            }
        }
        let _ = write!(s, "Volumes:\n{}", storaged_listing("volume"));
        let _ = write!(s, "Exports:\n{}", storaged_listing("export"));
        s
    }

    fn log_names(&mut self) -> Vec<String> {
        let mut names = vec!["kernel".to_owned()];
        if let Ok(dir) = std::fs::read_dir(LOG_DIR) {
            let mut logs: Vec<String> = dir
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".log"))
                        .map(str::to_owned)
                })
                .collect();
            logs.sort();
            names.extend(logs);
        }
        names
    }

    fn show_log(&mut self, name: &str) -> Result<(), String> {
        let status = if name == "kernel" {
            Command::new(BUSYBOX)
                .args(["sh", "-c", "dmesg | busybox less"])
                .status()
        } else {
            let path = Path::new(LOG_DIR).join(format!("{name}.log"));
            Command::new(BUSYBOX).arg("less").arg(path).status()
        };
        status
            .map(|_| ())
            .map_err(|e| format!("cannot run less: {e}"))
    }

    fn config_text(&mut self) -> Result<String, String> {
        match std::fs::read_to_string(config::CONFIG_FILE) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(format!("cannot read {}: {e}", config::CONFIG_FILE)),
        }
    }

    fn save_config(&mut self, text: &str) -> Result<(), String> {
        if !Path::new(storage::CONFIG_DIR).join(".").exists() {
            return Err(format!("{} is not mounted", storage::CONFIG_DIR));
        }
        storage::with_config_writable(|| {
            crate::net::write_atomic(Path::new(config::CONFIG_FILE), text)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .map_err(|e| e.to_string())
    }

    fn echo(&mut self, on: bool) {
        // SAFETY: tcgetattr/tcsetattr on stdin with a struct we own.
        unsafe {
            if on {
                if let Some(t) = self.saved_termios.take() {
                    libc::tcsetattr(0, libc::TCSANOW, &t);
                }
                return;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return;
            }
            self.saved_termios = Some(t);
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
    }

    fn reset_password(&mut self, password: &str) -> Result<String, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let reset = Path::new(ADMIN_PASSWORD_RESET);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(reset)?;
            f.write_all(format!("{password}\n").as_bytes())
        };
        write().map_err(|e| format!("cannot write {}: {e}", reset.display()))?;
        // deployd applies the file when it starts: restart it through PID 1's supervisor.
        match pid_of("deployd") {
            Some(pid) => sys::kill(pid, libc::SIGTERM)
                .map_err(|e| format!("cannot restart deployd (pid {pid}): {e}"))?,
            None => {
                return Ok("deployd is not running; the password applies when it starts".into());
            }
        }
        let start = Instant::now();
        while reset.exists() {
            if start.elapsed() > RESET_WAIT {
                return Err(format!(
                    "deployd did not apply the password in {} s; see the deployd log",
                    RESET_WAIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok("Administrator password reset; API sessions were closed (deployd restarted)".into())
    }

    fn support_dump(&mut self) -> Result<String, String> {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        std::fs::create_dir_all(SUPPORT_DIR).map_err(|e| format!("{SUPPORT_DIR}: {e}"))?;
        let stage = PathBuf::from(format!("/tmp/support-{secs}"));
        let name = format!("streamer-support-{secs}");
        let root = stage.join(&name);
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let save = |file: &str, text: String| {
            let _ = std::fs::write(root.join(file), text);
        };
        save("details.txt", self.details());
        save("dmesg.txt", run_capture(Command::new(BUSYBOX).arg("dmesg")));
        save(
            "ip-addr.txt",
            run_capture(Command::new(BUSYBOX).args(["ip", "addr"])),
        );
        save(
            "ip-route.txt",
            run_capture(Command::new(BUSYBOX).args(["ip", "route"])),
        );
        save(
            "ps.txt",
            run_capture(Command::new(BUSYBOX).args(["ps", "-o", "pid,ppid,rss,args"])),
        );
        for f in [
            "/proc/cmdline",
            "/proc/meminfo",
            "/proc/mounts",
            "/proc/partitions",
        ] {
            save(&f[6..].replace('/', "-"), read(f));
        }
        // The configuration, but not the deployd state (it holds password hashes).
        save("streamer.conf", read(config::CONFIG_FILE));
        let _ = Command::new(BUSYBOX)
            .args(["cp", "-r", LOG_DIR])
            .arg(root.join("logs"))
            .status();
        let archive = Path::new(SUPPORT_DIR).join(format!("{name}.tar.gz"));
        let status = Command::new(BUSYBOX)
            .arg("tar")
            .arg("czf")
            .arg(&archive)
            .arg("-C")
            .arg(&stage)
            .arg(&name)
            .status();
        let _ = std::fs::remove_dir_all(&stage);
        match status {
            Ok(s) if s.success() => {
                sys::sync();
                Ok(archive.display().to_string())
            }
            Ok(s) => Err(format!("tar failed ({s})")),
            Err(e) => Err(format!("cannot run tar: {e}")),
        }
    }

    fn factory_reset(&mut self) -> Result<(), String> {
        storage::with_config_writable(|| {
            std::fs::write(
                storage::FACTORY_RESET_MARKER,
                "requested from the serial console\n",
            )
        })
        .map_err(|e| format!("cannot write {}: {e}", storage::FACTORY_RESET_MARKER))?;
        self.reboot()
    }

    fn reboot(&mut self) -> Result<(), String> {
        sys::kill(1, libc::SIGUSR1).map_err(|e| format!("cannot signal init: {e}"))
    }

    fn power_off(&mut self) -> Result<(), String> {
        sys::kill(1, libc::SIGUSR2).map_err(|e| format!("cannot signal init: {e}"))
    }

    fn streamerctl(&mut self, password: &str, args: &[String]) -> Result<String, String> {
        use std::io::Write;
        // A session of its own, in a private file, ended when done.
        let session = "/run/streamer/console-session.json";
        let ctl = |args: &[&str], stdin: &str| -> Result<String, String> {
            let mut child = Command::new(STREAMERCTL)
                .args(args)
                .env("STREAMERCTL_SESSION", session)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {STREAMERCTL}: {e}"))?;
            if let Some(mut i) = child.stdin.take() {
                let _ = i.write_all(stdin.as_bytes());
            }
            let o = child
                .wait_with_output()
                .map_err(|e| format!("{STREAMERCTL}: {e}"))?;
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() {
                Ok(text)
            } else {
                Err(format!(
                    "{text}{}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        };
        let url = format!("https://127.0.0.1:{}", appliance_layout::API_PORT);
        ctl(
            &["login", "--url", &url, "--insecure", "--password-stdin"],
            &format!("{password}\n"),
        )?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = ctl(&args, "");
        let _ = ctl(&["logout"], "");
        let _ = std::fs::remove_file(session);
        result
    }

    fn shell(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("/bin/sh");
        cmd.env("PS1", "streamer# ").env("HOME", "/").arg("-l");
        // SAFETY: between fork and exec, only signal(), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGQUIT, libc::SIG_DFL);
                Ok(())
            });
        }
        cmd.status()
            .map(|_| ())
            .map_err(|e| format!("cannot start /bin/sh: {e}"))
    }
}

/// `streamer-init console`: the menu on this process's terminal, for ever.
pub fn main() -> std::io::Result<()> {
    // Ctrl-C at the menu must not end it; the shell gets the default back.
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    super::run(&mut input, &mut out, &mut Appliance::new())
}
