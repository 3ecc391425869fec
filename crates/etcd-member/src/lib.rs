//! How Streamer runs an etcd member (Debian's `etcd-server`, 3.4): on each node of a pair and
//! on the witness. One place decides etcd's command line, so the nodes, the witness, init and
//! the tests all run etcd the same way.
//!
//! Limits that differ from etcd's defaults, and why:
//! * `--max-txn-ops` [`MAX_TXN_OPS`]: deployd writes a whole artifact bundle (hundreds of
//!   records, their name and reference index records) in one transaction; etcd's default of
//!   128 operations would refuse a bundle of 200 artifacts.
//! * `--max-request-bytes` [`MAX_REQUEST_BYTES`]: the same bundle's plan scripts in one
//!   request (etcd's default is 1.5 MiB).
//! * `--heartbeat-interval` 100 ms and `--election-timeout` 1000 ms (etcd's defaults, named
//!   here because the management lease's TTL is chosen against them).
//! * `--pre-vote`: a member that was cut off (or frozen) and comes back does not force an
//!   election with the terms it counted up alone (etcd 3.4 leaves this off; 3.5 turns it on).
//!   Without it, a node catching up after a partition kept the witness from being elected
//!   for seconds when the other node failed next (seen in the pair tests).
//! * Compaction every hour keeps the history that `If-Match` needs no longer than that.
//! * Logs at `warn` (`STREAMER_ETCD_LOG=info` for more).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Operations allowed in one transaction (etcd's default: 128).
pub const MAX_TXN_OPS: u32 = 16_384;
/// Bytes allowed in one request (etcd's default: 1.5 MiB).
pub const MAX_REQUEST_BYTES: u32 = 32 << 20;
/// etcd's Raft heartbeat, milliseconds.
pub const HEARTBEAT_MS: u32 = 100;
/// etcd's Raft election timeout, milliseconds. A new etcd leader extends every lease by
/// this much, so the management lease's fencing margin accounts for it.
pub const ELECTION_TIMEOUT_MS: u32 = 1000;
/// Where Debian installs etcd.
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// Whether the cluster is being created or this member joins an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// The certificate files of a member: one CA (the pair's), one certificate and key used
/// both as server and as client (peer and client traffic are mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One etcd member's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub data_dir: PathBuf,
    /// Where clients connect.
    pub client: SocketAddr,
    /// Where the other members connect.
    pub peer: SocketAddr,
    /// Every member (this one included) by name and peer address.
    pub cluster: Vec<(String, SocketAddr)>,
    pub state: ClusterState,
    /// Distinguishes this cluster's members from another's (etcd's `--initial-cluster-token`).
    pub token: String,
    pub tls: Option<Tls>,
}

impl Member {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The URL clients use.
    pub fn client_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.client)
    }

    fn peer_url(&self, addr: SocketAddr) -> String {
        format!("{}://{addr}", self.scheme())
    }

    /// etcd's arguments for this member.
    pub fn args(&self) -> Vec<String> {
        let cluster = self
            .cluster
            .iter()
            .map(|(name, addr)| format!("{name}={}", self.peer_url(*addr)))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", self.client_url()),
            format!("--advertise-client-urls={}", self.client_url()),
            format!("--listen-peer-urls={}", self.peer_url(self.peer)),
            format!("--initial-advertise-peer-urls={}", self.peer_url(self.peer)),
            format!("--initial-cluster={cluster}"),
            format!(
                "--initial-cluster-state={}",
                match self.state {
                    ClusterState::New => "new",
                    ClusterState::Existing => "existing",
                }
            ),
            format!("--initial-cluster-token={}", self.token),
            format!("--max-txn-ops={MAX_TXN_OPS}"),
            format!("--max-request-bytes={MAX_REQUEST_BYTES}"),
            format!("--heartbeat-interval={HEARTBEAT_MS}"),
            format!("--election-timeout={ELECTION_TIMEOUT_MS}"),
            "--pre-vote=true".into(),
            "--auto-compaction-mode=periodic".into(),
            "--auto-compaction-retention=1h".into(),
            "--logger=zap".into(),
            format!(
                "--log-level={}",
                std::env::var("STREAMER_ETCD_LOG").unwrap_or_else(|_| "warn".into())
            ),
        ];
        if let Some(tls) = &self.tls {
            for (flag, path) in [
                ("cert-file", &tls.cert),
                ("key-file", &tls.key),
                ("trusted-ca-file", &tls.ca),
                ("peer-cert-file", &tls.cert),
                ("peer-key-file", &tls.key),
                ("peer-trusted-ca-file", &tls.ca),
            ] {
                args.push(format!("--{flag}={}", path.display()));
            }
            args.push("--client-cert-auth".into());
            args.push("--peer-client-cert-auth".into());
        }
        args
    }

    /// The command that runs this member with the etcd at `etcd`.
    pub fn command(&self, etcd: &Path) -> Command {
        let mut cmd = Command::new(etcd);
        cmd.args(self.args());
        cmd
    }
}

/// The etcd binary: `$STREAMER_ETCD`, else Debian's, else the appliance's.
pub fn etcd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMER_ETCD") {
        return PathBuf::from(p);
    }
    if Path::new(DEFAULT_ETCD).exists() {
        return PathBuf::from(DEFAULT_ETCD);
    }
    // Where init unpacks the etcd the image carries, on a pair member.
    PathBuf::from(appliance_layout::ETCD_BINARY)
}

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for tests).
pub fn free_loopback() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let end = Instant::now() + timeout;
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= end => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing listens at {addr} after {timeout:?}: {e}"),
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A throw-away single-member etcd on loopback, plain TCP, killed on drop: for tests and
/// benchmarks.
#[derive(Debug)]
pub struct Scratch {
    child: Child,
    member: Member,
    _dir: tempfile::TempDir,
}

impl Scratch {
    /// Starts one; `Err` says why (no etcd installed, it did not come up).
    pub fn start() -> io::Result<Scratch> {
        let etcd = etcd_binary();
        if !etcd.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: install Debian's etcd-server (scripts/install-deps.sh)",
                    etcd.display()
                ),
            ));
        }
        let dir = tempfile::tempdir()?;
        let peer = free_loopback()?;
        let member = Member {
            name: "scratch".into(),
            data_dir: dir.path().join("etcd"),
            client: free_loopback()?,
            peer,
            cluster: vec![("scratch".into(), peer)],
            state: ClusterState::New,
            token: "scratch".into(),
            tls: None,
        };
        let child = member
            .command(&etcd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut scratch = Scratch {
            child,
            member,
            _dir: dir,
        };
        if let Err(e) = wait_listening(scratch.member.client, Duration::from_secs(20)) {
            let _ = scratch.child.kill();
            return Err(e);
        }
        Ok(scratch)
    }

    /// Where clients connect (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        self.member.client_url()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_member_runs_mutual_tls_with_our_limits() {
        let addr = |p: u16| SocketAddr::from(([10, 0, 0, 1], p));
        let m = Member {
            name: "node-a".into(),
            data_dir: "/data/etcd".into(),
            client: addr(2379),
            peer: addr(2380),
            cluster: vec![
                ("node-a".into(), addr(2380)),
                ("witness".into(), SocketAddr::from(([10, 0, 0, 3], 2380))),
            ],
            state: ClusterState::New,
            token: "pair-1".into(),
            tls: Some(Tls {
                ca: "/c/ca.pem".into(),
                cert: "/c/node.pem".into(),
                key: "/c/node.key".into(),
            }),
        };
        let args = m.args();
        for want in [
            "--listen-client-urls=https://10.0.0.1:2379",
            "--initial-cluster=node-a=https://10.0.0.1:2380,witness=https://10.0.0.3:2380",
            "--initial-cluster-state=new",
            "--max-txn-ops=16384",
            "--pre-vote=true",
            "--client-cert-auth",
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file=/c/ca.pem",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
    }
}
