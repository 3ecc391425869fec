//! Shared helpers for the tests that drive the real `storaged` binary: start the daemon in a
//! temporary directory on a free port, run its CLI with `--json`, kill and restart it, and talk
//! NBD to it with a small synchronous raw client.

// Each test file uses a different part of this module.
#![allow(dead_code)]

pub mod pair;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

pub const BIN: &str = env!("CARGO_BIN_EXE_storaged");

/// The client binary, or `None` after saying why the test is skipped.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (Debian: qemu-utils / libnbd-bin)");
    }
    found
}

/// Runs `cmd`, echoing what it printed so a failing test shows it.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    eprintln!(
        "$ {cmd:?} -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` and returns its stdout; panics unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 127.0.0.1 port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// `sha256:<hex>`, the form the store records.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A deterministic, seeded generator (splitmix64): reproducible "random" rounds.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The golden image the tests import: 16 MiB, data in three extents, zeroes elsewhere.
pub const GOLDEN_SIZE: u64 = 16 * MIB;
pub const GOLDEN_EXTENTS: [(u64, u64); 3] = [(0, MIB), (4 * MIB, MIB), (9 * MIB, 64 * KIB)];

pub fn golden_content() -> Vec<u8> {
    let mut buf = vec![0u8; GOLDEN_SIZE as usize];
    let mut rng = Rng::new(0x601d);
    for (off, len) in GOLDEN_EXTENTS {
        rng.fill(&mut buf[off as usize..(off + len) as usize]);
    }
    buf
}

/// Writes [`golden_content`] to `path` as a raw file and returns the bytes.
pub fn write_golden(path: &Path) -> Vec<u8> {
    let content = golden_content();
    std::fs::write(path, &content).expect("write golden image");
    content
}

// --- Self-describing 4 KiB records, for checking what survived. ---

pub const RECORD: u64 = 4096;
pub const SLOTS: u64 = 1024;

/// Record number `seq` for `slot`: its header says what it is, the rest derives from both.
pub fn record(slot: u64, seq: u64) -> Vec<u8> {
    let mut b = vec![0u8; RECORD as usize];
    Rng::new(slot << 32 | seq).fill(&mut b);
    b[0..8].copy_from_slice(&slot.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b
}

/// The record number `slot` holds (0: never written); panics on a torn or foreign record.
pub fn seq_of(b: &[u8], slot: u64) -> u64 {
    let mut sb = [0; 8];
    sb.copy_from_slice(&b[8..16]);
    let seq = u64::from_le_bytes(sb);
    if b.iter().all(|&x| x == 0) {
        return 0;
    }
    assert_eq!(
        b,
        record(slot, seq),
        "slot {slot} holds a torn or foreign record"
    );
    seq
}

/// What a CLI invocation did.
#[derive(Debug)]
pub struct CliResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliResult {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// Runs the `storaged` binary with `args` (adding `--json` and the control socket).
pub fn cli_at(socket: &Path, args: &[&str]) -> CliResult {
    let out = Command::new(BIN)
        .args(args)
        .arg("--json")
        .env("STORAGED_CONTROL", socket)
        .stdin(Stdio::null())
        .output()
        .expect("run storaged");
    let r = CliResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ storaged {} --json -> {}\n{}{}",
        args.join(" "),
        r.code,
        r.stdout,
        r.stderr
    );
    r
}

/// A `storaged serve` process on its own data directory, control socket and NBD port.
#[derive(Debug)]
pub struct Daemon {
    /// Holds the data directory, socket and log; removed on drop.
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    /// More `serve` arguments (the pair's replication).
    pub extra: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon in a new temporary directory.
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut d = Self::start_in(&dir, &dir.join("data"));
        d._tmp = Some(tmp);
        d
    }

    /// Starts a daemon whose socket and log are in `dir` and whose store is `data_dir`.
    pub fn start_in(dir: &Path, data_dir: &Path) -> Self {
        let mut d = Self {
            _tmp: None,
            dir: dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            socket: dir.join("storaged.sock"),
            port: free_port(),
            log: dir.join("daemon.log"),
            extra: Vec::new(),
            child: None,
        };
        d.spawn();
        d
    }

    /// Starts a daemon in a new temporary directory with more `serve` arguments, on NBD
    /// port `port`.
    pub fn start_with(port: u16, extra: Vec<String>) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut d = Self {
            _tmp: Some(tmp),
            data_dir: dir.join("data"),
            socket: dir.join("storaged.sock"),
            port,
            log: dir.join("daemon.log"),
            extra,
            child: None,
            dir,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(&self.data_dir)
            .arg("--nbd-listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--control")
            .arg(&self.socket)
            .args(&self.extra)
            .env("STORAGED_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn storaged serve");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("storaged serve exited with {status}:\n{}", self.log_text());
            }
            let control = UnixStream::connect(&self.socket).is_ok();
            let nbd = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if control && nbd {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "storaged did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let status = child.wait().expect("wait for storaged");
            assert!(status.success(), "storaged exited with {status}");
        }
    }

    /// Starts the daemon again on the same data directory (after [`Daemon::kill9`] or stop).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> CliResult {
        cli_at(&self.socket, args)
    }

    /// Runs a CLI command that must succeed and returns its JSON output.
    pub fn ok(&self, args: &[&str]) -> Value {
        let r = self.cli(args);
        assert_eq!(r.code, 0, "storaged {args:?} failed: {}", r.stderr);
        r.json()
    }

    /// Runs a CLI command that must fail with `code`; returns its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let r = self.cli(args);
        assert_eq!(r.code, code, "storaged {args:?}: {r:?}");
        r.stderr
    }

    /// Creates a writable volume; returns its id.
    pub fn create(&self, name: &str, size: &str) -> String {
        let v = self.ok(&["volume", "create", "--size", size, "--name", name]);
        v["id"].as_str().expect("id").to_string()
    }

    /// Imports `file` as a golden image (frozen); returns its info.
    pub fn import(&self, file: &Path, name: &str) -> Value {
        let f = file.to_str().expect("utf-8 path");
        self.ok(&["volume", "import", f, "--name", name])
    }

    pub fn clone_of(&self, parent: &str, name: &str) -> String {
        let v = self.ok(&["volume", "clone", parent, "--name", name]);
        v["id"].as_str().expect("id").to_string()
    }

    /// Exports `volume` to any client.
    pub fn export(&self, volume: &str) {
        self.ok(&["export", "add", volume]);
    }

    pub fn names(&self) -> Vec<String> {
        let list = self.ok(&["volume", "list"]);
        list.as_array()
            .expect("list is an array")
            .iter()
            .map(|v| v["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// `volume verify --deep` must find nothing; returns the report.
    pub fn verify_clean(&self) -> Value {
        let r = self.cli(&["volume", "verify", "--deep"]);
        assert_eq!(r.code, 0, "verify found problems: {}", r.stdout);
        let report = r.json();
        assert_eq!(report["problems"], serde_json::json!([]), "{report}");
        report
    }

    pub fn uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.port)
    }

    pub fn nbd(&self, export: &str) -> Nbd {
        Nbd::connect(self.port, export).unwrap_or_else(|e| panic!("NBD open {export}: {e}"))
    }

    /// Files in the store's `layers/` directory.
    pub fn layer_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data_dir.join("layers"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

// --- A raw, synchronous NBD client: fixed newstyle, OPT_GO, simple replies. ---

use nbd_wire::{
    CMD_DISC, CMD_FLAG_FUA, CMD_FLUSH, CMD_READ, CMD_WRITE, ExportInfo, GREETING_LEN, OPT_GO,
    OPTION_REPLY_HEADER_LEN, OPTION_REPLY_MAGIC, OptionReply, REP_ACK, REP_INFO, REQUEST_LEN,
    Request, SIMPLE_REPLY_LEN, SIMPLE_REPLY_MAGIC, SimpleReply, go_data, option_request,
    parse_greeting,
};

/// Why an NBD exchange failed.
#[derive(Debug)]
pub enum NbdError {
    /// The connection broke (the daemon died, for instance).
    Io(std::io::Error),
    /// The server refused an option with this reply type.
    Option(u32),
    /// The server answered a request with this errno.
    Errno(u32),
}

impl std::fmt::Display for NbdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl From<std::io::Error> for NbdError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// One NBD connection in the transmission phase, one request at a time.
#[derive(Debug)]
pub struct Nbd {
    s: TcpStream,
    pub size: u64,
    pub flags: u16,
    cookie: u64,
}

fn bad(what: &str) -> NbdError {
    NbdError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        what.to_string(),
    ))
}

impl Nbd {
    pub fn connect(port: u16, export: &str) -> Result<Self, NbdError> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        Self::handshake(s, export)
    }

    /// Connects to 127.0.0.1:`port` from source address `from` (any 127.x address works on
    /// Linux loopback), so allow-lists can be tested without a second host.
    pub fn connect_from(from: Ipv4Addr, port: u16, export: &str) -> Result<Self, NbdError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let stream = rt.block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddrV4::new(from, 0).into())?;
            sock.connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into())
                .await
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Self::handshake(stream, export)
    }

    fn handshake(mut s: TcpStream, export: &str) -> Result<Self, NbdError> {
        s.set_nodelay(true)?;
        let mut greeting = [0; GREETING_LEN];
        s.read_exact(&mut greeting)?;
        if parse_greeting(&greeting).is_none() {
            return Err(bad("not an NBD newstyle server"));
        }
        // FIXED_NEWSTYLE | NO_ZEROES
        s.write_all(&3u32.to_be_bytes())?;
        s.write_all(&option_request(OPT_GO, &go_data(export, &[])))?;
        let (mut size, mut flags) = (None, 0);
        loop {
            let mut h = [0; OPTION_REPLY_HEADER_LEN];
            s.read_exact(&mut h)?;
            let r = OptionReply::parse(&h);
            if r.magic != OPTION_REPLY_MAGIC || r.option != OPT_GO {
                return Err(bad("bad option reply"));
            }
            let mut data = vec![0; r.len as usize];
            s.read_exact(&mut data)?;
            match r.kind {
                REP_ACK => break,
                REP_INFO => {
                    if let Some(info) = ExportInfo::parse(&data) {
                        size = Some(info.size);
                        flags = info.flags;
                    }
                }
                _ if r.is_error() => return Err(NbdError::Option(r.kind)),
                _ => return Err(bad("unexpected option reply")),
            }
        }
        let size = size.ok_or_else(|| bad("no NBD_INFO_EXPORT"))?;
        Ok(Self {
            s,
            size,
            flags,
            cookie: 0,
        })
    }

    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<(), NbdError> {
        self.cookie += 1;
        let mut b = Vec::with_capacity(REQUEST_LEN + payload.len());
        b.extend_from_slice(&Request::new(kind, flags, self.cookie, offset, len).encode());
        b.extend_from_slice(payload);
        self.s.write_all(&b)?;
        Ok(())
    }

    /// Reads a simple reply; returns `Ok(())` or the errno.
    fn reply(&mut self, data: &mut [u8]) -> Result<(), NbdError> {
        let mut h = [0; SIMPLE_REPLY_LEN];
        self.s.read_exact(&mut h)?;
        let r = SimpleReply::parse(&h);
        if r.magic != SIMPLE_REPLY_MAGIC {
            return Err(bad("bad reply magic"));
        }
        if r.cookie != self.cookie {
            return Err(bad("reply for another request"));
        }
        if r.error != 0 {
            return Err(NbdError::Errno(r.error));
        }
        self.s.read_exact(data)?;
        Ok(())
    }

    pub fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, NbdError> {
        let mut out = vec![0; len];
        // Keep each request well under the server's 32 MiB maximum.
        for (i, chunk) in out.chunks_mut(8 << 20).enumerate() {
            let at = offset + (i as u64) * (8 << 20);
            self.request(CMD_READ, 0, at, chunk.len() as u32, &[])?;
            self.reply(chunk)?;
        }
        Ok(out)
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), NbdError> {
        self.request(CMD_WRITE, 0, offset, data.len() as u32, data)?;
        self.reply(&mut [])
    }

    pub fn write_fua(&mut self, offset: u64, data: &[u8]) -> Result<(), NbdError> {
        self.request(CMD_WRITE, CMD_FLAG_FUA, offset, data.len() as u32, data)?;
        self.reply(&mut [])
    }

    pub fn flush(&mut self) -> Result<(), NbdError> {
        self.request(CMD_FLUSH, 0, 0, 0, &[])?;
        self.reply(&mut [])
    }

    /// NBD_CMD_DISC (no reply) and close.
    pub fn disconnect(mut self) {
        let _ = self.request(CMD_DISC, 0, 0, 0, &[]);
        let _ = self.s.shutdown(std::net::Shutdown::Both);
    }
}
