//! The HA pair on one host, as an enclosure network would hold it: network namespaces for
//! node A, node B and the witness W on a bridge (10.77.0.0/24; the management virtual IP is
//! 10.77.0.100), Debian's etcd in all three, and in A and B the real storaged, clusterd and
//! deployd (one `pair-node` binary, as the appliance's multi-call binary). Clients run in a
//! thread that joined W's namespace, as an operator's host on the enclosure network.
//!
//! Used by `tests/takeover.rs` and by `pair-bench` (`make bench`). Needs root, `ip` and etcd.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod storage;

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clusterd::config::{ClusterConfig, Member, MemberRole, VirtualIp};
use clusterd::control::ClusterClient;
use clusterd::status::{Role, Status};

/// The management virtual IP.
pub const VIP: &str = "10.77.0.100";
/// The storage addresses of node A's and node B's volumes (with storage, see
/// [`Enclosure::start_storage`]).
pub const STORAGE_IPS: [&str; 2] = ["10.77.0.11", "10.77.0.12"];
/// The API's port on every node.
pub const API_PORT: u16 = 8443;
/// The Administrator's password in the harness.
pub const PASSWORD: &str = "pair-admin-password";

/// Why the harness cannot run here, if so.
pub fn unusable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("needs ip (iproute2)".into());
    }
    if !etcd_member::etcd_binary().is_file() {
        return Some("needs etcd (Debian's etcd-server)".into());
    }
    None
}

/// Runs a command, its standard output as text; fails with its standard error.
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("{args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` in a thread inside network namespace `ns` (threads it starts inherit it).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("opening the namespace");
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("joining the namespace");
        f()
    })
    .join()
    .expect("the thread in the namespace panicked")
}

/// One appliance (or the witness) of the enclosure.
#[derive(Debug)]
pub struct Node {
    pub name: &'static str,
    pub ns: String,
    pub address: IpAddr,
    pub dir: PathBuf,
    procs: Vec<(&'static str, Child)>,
    /// Whether its storaged replicates and clusterd drives it (the storage role).
    storage: bool,
    /// The multi-call binary (`pair-node`).
    bin: PathBuf,
}

impl Node {
    pub fn clusterd_dir(&self) -> PathBuf {
        self.dir.join("clusterd")
    }

    pub fn control(&self) -> PathBuf {
        self.dir.join("clusterd.sock")
    }

    pub fn storaged_control(&self) -> PathBuf {
        self.dir.join("storaged.sock")
    }

    /// `storaged ARGS` against this node's storaged (its output when it succeeds).
    pub fn storaged(&self, args: &[&str]) -> anyhow::Result<String> {
        let sock = self.storaged_control();
        let mut all = vec!["storaged"];
        all.extend_from_slice(args);
        all.extend(["--control", sock.to_str().unwrap_or_default()]);
        let out = Command::new(&self.bin).args(&all).output()?;
        if !out.status.success() {
            bail!(
                "storaged {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// This node's storaged's replication state, if it answers.
    pub fn pair_status(&self) -> Option<serde_json::Value> {
        let text = self.storaged(&["pair", "status"]).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the node holds storage address `ip` now.
    pub fn holds(&self, ip: &str) -> bool {
        sh(&["ip", "-n", &self.ns, "-4", "addr", "show", "dev", "eth0"])
            .unwrap_or_default()
            .contains(&format!("{ip}/"))
    }

    /// Runs `program ARGS` in the node's namespace, its output in `DIR/<what>.log`; killed
    /// with the node.
    pub fn spawn(
        &mut self,
        program: &Path,
        what: &'static str,
        args: &[&str],
        env: &[(&str, &str)],
    ) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{what}.log")))
            .unwrap();
        // A process group of its own: a daemon that forks (keepalived) dies whole.
        let child = Command::new("ip")
            .process_group(0)
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((what, child));
    }

    /// Starts this member's etcd (`clusterd etcd`, the witness's `clusterd witness`).
    pub fn start_etcd(&mut self, bin: &Path) {
        let dir = self.clusterd_dir();
        let sub = if self.name == "witness" {
            "witness"
        } else {
            "etcd"
        };
        self.spawn(
            bin,
            "etcd",
            &["clusterd", "--state-dir", dir.to_str().unwrap(), sub],
            &[],
        );
    }

    /// Starts clusterd, its console summary in `DIR/summary.txt`.
    pub fn start_clusterd(&mut self, bin: &Path) {
        let (dir, sock) = (self.clusterd_dir(), self.control());
        let summary = self.dir.join("summary.txt");
        let storaged = self.storaged_control();
        let _ = std::fs::remove_file(&sock);
        let mut args = vec![
            "clusterd",
            "--state-dir",
            dir.to_str().unwrap(),
            "--control",
            sock.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ];
        if self.storage {
            args.extend(["--storaged", storaged.to_str().unwrap()]);
        }
        self.spawn(bin, "clusterd", &args, &[]);
    }

    /// Starts storaged: with the storage role, replicating as the pair's description says
    /// (as init starts it on a paired appliance) and serving NBD on every address.
    pub fn start_storaged(&mut self, bin: &Path) {
        let (data, sock) = (self.dir.join("storaged"), self.storaged_control());
        let pair_dir = self.clusterd_dir();
        let _ = std::fs::remove_file(&sock);
        let mut args = vec![
            "storaged",
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--control",
            sock.to_str().unwrap(),
        ];
        if self.storage {
            args.extend([
                "--nbd-listen",
                "0.0.0.0:10809",
                "--pair-dir",
                pair_dir.to_str().unwrap(),
            ]);
        } else {
            args.extend(["--nbd-listen", "127.0.0.1:10809"]);
        }
        self.spawn(bin, "storaged", &args, &[]);
    }

    /// Starts deployd: a pair member's (its store the pair's etcd, through clusterd) or a
    /// single appliance's.
    pub fn start_deployd_as(&mut self, bin: &Path, paired: bool) {
        let state = self.dir.join("deployd");
        let (storaged, clusterd) = (self.dir.join("storaged.sock"), self.control());
        let cluster_state = self.clusterd_dir();
        let listen = format!("0.0.0.0:{API_PORT}");
        let mut args = vec![
            "deployd",
            "--state-dir",
            state.to_str().unwrap(),
            "--listen",
            &listen,
            "--storaged",
            storaged.to_str().unwrap(),
            "--nbd",
            "127.0.0.1:10809",
            "--cluster-state",
            cluster_state.to_str().unwrap(),
        ];
        if paired {
            args.extend(["--clusterd", clusterd.to_str().unwrap()]);
        }
        self.spawn(
            bin,
            "deployd",
            &args,
            &[("STREAMER_ADMIN_PASSWORD", PASSWORD)],
        );
    }

    fn start_deployd(&mut self, bin: &Path) {
        self.start_deployd_as(bin, true);
    }

    /// Starts a single appliance: storaged and deployd, no etcd, no clusterd.
    pub fn start_single(&mut self, bin: &Path) {
        self.start_storaged(bin);
        self.start_deployd_as(bin, false);
    }

    /// Starts a pair member's services, as init does on a paired appliance: etcd, clusterd,
    /// then deployd once clusterd's socket is there (storaged if it is not running).
    pub fn start_member(&mut self, bin: &Path) {
        self.start_etcd(bin);
        self.start_clusterd(bin);
        if !self.running("storaged") {
            self.start_storaged(bin);
        }
        let end = Instant::now() + Duration::from_secs(10);
        while !self.control().exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.start_deployd(bin);
    }

    /// Whether the last `what` started is still running.
    pub fn running(&mut self, what: &str) -> bool {
        self.procs
            .iter_mut()
            .rev()
            .find(|(w, _)| *w == what)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until the last `what` started has exited; its exit status.
    pub fn wait_exit(&mut self, what: &str, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            let status = self
                .procs
                .iter_mut()
                .rev()
                .find(|(w, _)| *w == what)
                .and_then(|(_, c)| c.try_wait().ok().flatten());
            if let Some(st) = status {
                return st.code();
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops (SIGKILL) every running `what`.
    pub fn stop(&mut self, what: &str) {
        for (w, c) in &mut self.procs {
            if *w == what {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = c.wait();
            }
        }
    }

    /// Sends `sig` to every process of the node (each started one's whole group).
    pub fn signal_all(&self, sig: nix::sys::signal::Signal) {
        for (_, c) in &self.procs {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// Sends `sig` to the node's `what` process (its whole group).
    pub fn signal(&self, what: &str, sig: nix::sys::signal::Signal) {
        for (w, c) in &self.procs {
            if *w == what {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            }
        }
    }

    /// The hardware address of the node's link.
    pub fn mac(&self) -> String {
        let out = sh(&["ip", "-n", &self.ns, "link", "show", "eth0"]).unwrap();
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// SIGKILLs every process of the node and reaps them.
    pub fn kill_all(&mut self) {
        self.signal_all(nix::sys::signal::Signal::SIGKILL);
        for (_, mut c) in self.procs.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Cuts (or restores) the traffic between this node and `other` alone: routes to the
    /// other's addresses (its own and its storage address) go to a blackhole.
    pub fn cut_from(&self, other: &Node, cut: bool) {
        let mut to = vec![other.address.to_string()];
        if let Some(i) = ["node-a", "node-b"].iter().position(|n| *n == other.name) {
            to.push(STORAGE_IPS[i].to_string());
        }
        for ip in to {
            let _ = sh(&[
                "ip",
                "-n",
                &self.ns,
                "route",
                if cut { "add" } else { "del" },
                "blackhole",
                &format!("{ip}/32"),
            ]);
        }
    }

    /// Brings the node's link to the enclosure network up or down.
    pub fn link(&self, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }

    pub fn has_vip(&self) -> bool {
        sh(&["ip", "-n", &self.ns, "-4", "addr", "show", "dev", "eth0"])
            .unwrap()
            .contains(&format!("{VIP}/"))
    }

    /// clusterd's view of this node, if it answers within 300 ms.
    pub fn status(&self) -> Option<Status> {
        let sock = self.control();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let c = tokio::time::timeout(Duration::from_millis(300), ClusterClient::connect(&sock))
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(Duration::from_millis(300), c.status())
                .await
                .ok()?
                .ok()
        })
    }
}

/// What runs against the seed's storaged while it is still a single appliance.
pub type BeforePairing = dyn Fn(&Node) -> anyhow::Result<()>;

/// The enclosure: nodes A and B (indexes 0 and 1) and the witness (2).
#[derive(Debug)]
pub struct Enclosure {
    pub nodes: Vec<Node>,
    pub bin: PathBuf,
    hub: String,
    _dir: tempfile::TempDir,
}

impl Drop for Enclosure {
    fn drop(&mut self) {
        // A failed test keeps the daemons' logs for reading (PAIR_LOGS=1: always).
        if std::thread::panicking() || std::env::var_os("PAIR_LOGS").is_some() {
            let keep =
                std::env::temp_dir().join(format!("pair-logs-{}-{}", std::process::id(), self.hub));
            for n in &self.nodes {
                let to = keep.join(n.name);
                let _ = std::fs::create_dir_all(&to);
                for log in [
                    "etcd",
                    "clusterd",
                    "storaged",
                    "deployd",
                    "keepalived",
                    "http",
                ] {
                    let _ = std::fs::copy(
                        n.dir.join(format!("{log}.log")),
                        to.join(format!("{log}.log")),
                    );
                }
            }
            eprintln!("the daemons' logs are in {}", keep.display());
        }
        for n in &mut self.nodes {
            n.signal_all(nix::sys::signal::Signal::SIGCONT);
            n.kill_all();
            let _ = Command::new("ip").args(["netns", "del", &n.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .status();
    }
}

impl Enclosure {
    /// Makes the network and starts everything: etcd on the three, clusterd and storaged on
    /// both nodes, deployd on the active node first (it makes the Administrator), then on the
    /// standby with the pair's secrets key. Returns when both APIs answer.
    pub fn start(bin: &Path) -> anyhow::Result<Enclosure> {
        let mut enc = Enclosure::network(bin)?;
        let bin = enc.bin.clone();
        for n in &mut enc.nodes {
            n.start_etcd(&bin);
        }
        for n in &mut enc.nodes[..2] {
            n.start_clusterd(&bin);
            n.start_storaged(&bin);
        }
        let first = enc.wait_for_active(None, Duration::from_secs(60))?;
        enc.nodes[first].start_deployd(&bin);
        enc.wait_api(first, Duration::from_secs(90))?;
        let key = "deployd/secrets.key";
        std::fs::create_dir_all(enc.nodes[1 - first].dir.join("deployd"))?;
        std::fs::copy(
            enc.nodes[first].dir.join(key),
            enc.nodes[1 - first].dir.join(key),
        )?;
        enc.nodes[1 - first].start_deployd(&bin);
        enc.wait_api(1 - first, Duration::from_secs(90))?;
        enc.wait_for_active(None, Duration::from_secs(60))?;
        Ok(enc)
    }

    /// The election alone: etcd on the three members, clusterd on both nodes (no storaged,
    /// no deployd).
    pub fn start_elections(bin: &Path) -> anyhow::Result<Enclosure> {
        let mut enc = Enclosure::network(bin)?;
        let bin = enc.bin.clone();
        for n in &mut enc.nodes {
            n.start_etcd(&bin);
        }
        for n in &mut enc.nodes[..2] {
            n.start_clusterd(&bin);
        }
        Ok(enc)
    }

    /// The network and the pair's description on each member, nothing running.
    pub fn network(bin: &Path) -> anyhow::Result<Enclosure> {
        Enclosure::make(bin, true, false)
    }

    /// The storage role alone: etcd on the three members, storaged (replicating to each
    /// other) and clusterd (driving it) on both nodes, no deployd. Returns once each node
    /// serves its own group on its storage address ([`STORAGE_IPS`]).
    pub fn start_storage(bin: &Path) -> anyhow::Result<Enclosure> {
        Enclosure::start_storage_seeded(bin, None)
    }

    /// [`Enclosure::start_storage`] for a pair made on node A (its seed), which was a single
    /// appliance before: `before` runs against A's storaged alone (its volumes from before
    /// the pair), then the pair starts.
    pub fn start_storage_seeded(
        bin: &Path,
        before: Option<&BeforePairing>,
    ) -> anyhow::Result<Enclosure> {
        let seed = before.is_some().then_some("node-a");
        let mut enc = Enclosure::make_with(bin, true, true, seed)?;
        let bin = enc.bin.clone();
        if let Some(before) = before {
            let a = &mut enc.nodes[0];
            a.storage = false;
            a.start_storaged(&bin);
            let end = Instant::now() + Duration::from_secs(10);
            while !a.storaged_control().exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            before(a)?;
            a.stop("storaged");
            a.storage = true;
        }
        for n in &mut enc.nodes {
            n.start_etcd(&bin);
        }
        for n in &mut enc.nodes[..2] {
            n.start_storaged(&bin);
            n.start_clusterd(&bin);
        }
        let end = Instant::now() + Duration::from_secs(60);
        while !(enc.nodes[0].holds(STORAGE_IPS[0]) && enc.nodes[1].holds(STORAGE_IPS[1])) {
            if Instant::now() > end {
                bail!("the nodes did not take their storage addresses within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(enc)
    }

    /// The network with two single appliances and a witness host, nothing running and
    /// nobody paired yet.
    pub fn unpaired(bin: &Path) -> anyhow::Result<Enclosure> {
        Enclosure::make(bin, false, false)
    }

    fn make(bin: &Path, described: bool, storage: bool) -> anyhow::Result<Enclosure> {
        Enclosure::make_with(bin, described, storage, None)
    }

    fn make_with(
        bin: &Path,
        described: bool,
        storage: bool,
        seed: Option<&str>,
    ) -> anyhow::Result<Enclosure> {
        // Unique per process and per enclosure (a benchmark makes several, one after another).
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 10;
        let id = (std::process::id() % 10_000) * 10 + made;
        let dir = tempfile::tempdir()?;
        let hub = format!("ph{id}");
        sh(&["ip", "netns", "add", &hub])?;
        sh(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        let names = [("node-a", 1u8), ("node-b", 2), ("witness", 3)];
        let members: Vec<Member> = names
            .iter()
            .map(|(name, last)| Member {
                name: (*name).into(),
                role: if *name == "witness" {
                    MemberRole::Witness
                } else {
                    MemberRole::Node
                },
                address: IpAddr::from([10, 77, 0, *last]),
                etcd_client_port: 2379,
                etcd_peer_port: 2380,
                storage_ip: (storage && *name != "witness").then(|| VirtualIp {
                    address: STORAGE_IPS[usize::from(*last) - 1].parse().unwrap(),
                    prefix_len: 24,
                    interface: "eth0".into(),
                }),
                replication_port: clusterd::config::REPLICATION_PORT,
            })
            .collect();
        // The pair's CA, as pairing makes it: every member's etcd speaks mutual TLS.
        let ca = clusterd::pairing::Ca::new(&format!("pair-{id}"))?;
        let mut enc = Enclosure {
            nodes: Vec::new(),
            bin: bin.to_path_buf(),
            hub: hub.clone(),
            _dir: dir,
        };
        for (name, last) in names {
            let tag = &name[name.len() - 1..];
            let ns = format!("p{tag}{id}");
            sh(&["ip", "netns", "add", &ns])?;
            let outer = format!("w{tag}{id}");
            sh(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            sh(&["ip", "link", "set", &outer, "netns", &hub])?;
            sh(&[
                "ip", "-n", &hub, "link", "set", &outer, "master", "br0", "up",
            ])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{last}/24"),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            let node_dir = enc._dir.path().join(name);
            let cfg = ClusterConfig {
                cluster_id: format!("pair-{id}"),
                me: name.into(),
                members: members.clone(),
                virtual_ip: (name != "witness").then(|| VirtualIp {
                    address: VIP.parse().unwrap(),
                    prefix_len: 24,
                    interface: "eth0".into(),
                }),
                lease_ttl_seconds: 2,
                tls: described
                    .then(|| member_certificate(&ca, name, last, &node_dir.join("clusterd")))
                    .transpose()?,
                join_existing: false,
                seed: seed.map(String::from),
            };
            std::fs::create_dir_all(&node_dir)?;
            if described {
                cfg.save(&node_dir.join("clusterd"))?;
            }
            enc.nodes.push(Node {
                name,
                ns,
                address: IpAddr::from([10, 77, 0, last]),
                dir: node_dir,
                procs: Vec::new(),
                storage,
                bin: bin.to_path_buf(),
            });
        }
        Ok(enc)
    }

    /// The namespace clients run in (the witness's host).
    pub fn client_ns(&self) -> String {
        self.nodes[2].ns.clone()
    }

    /// Which node clusterd says is active, waiting until one is (and is not `not`).
    pub fn wait_for_active(&self, not: Option<usize>, limit: Duration) -> anyhow::Result<usize> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            for i in 0..2 {
                if Some(i) != not
                    && self.nodes[i]
                        .status()
                        .is_some_and(|s| s.role == Role::Active)
                {
                    return Ok(i);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("no active node within {limit:?}")
    }

    /// Waits until node `i`'s API answers /rest/version (from the client namespace).
    pub fn wait_api(&self, i: usize, limit: Duration) -> anyhow::Result<()> {
        let url = format!("https://{}:{API_PORT}/rest/version", self.nodes[i].address);
        let ns = self.client_ns();
        let ok = in_ns(&ns, move || {
            let c = client();
            let end = Instant::now() + limit;
            while Instant::now() < end {
                if c.get(&url).send().is_ok_and(|r| r.status().is_success()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        });
        if !ok {
            bail!(
                "{}'s API did not answer within {limit:?}",
                self.nodes[i].name
            );
        }
        Ok(())
    }

    /// Node `i` dies as a pulled power cord does: its link goes first (no FIN or RST reaches
    /// anyone), then every process is SIGKILLed.
    pub fn pull_the_plug(&mut self, i: usize) {
        self.nodes[i].link(false);
        self.nodes[i].kill_all();
    }

    /// Node `i` boots again: link up, etcd (its data kept: it rejoins), clusterd, storaged,
    /// deployd.
    pub fn power_on(&mut self, i: usize) {
        let bin = self.bin.clone();
        let n = &mut self.nodes[i];
        n.link(true);
        n.start_etcd(&bin);
        n.start_clusterd(&bin);
        n.start_storaged(&bin);
        if n.storage {
            return;
        }
        // As init does: deployd once clusterd's socket is there.
        let end = Instant::now() + Duration::from_secs(10);
        while !n.control().exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        n.start_deployd(&bin);
    }

    /// Makes the etcd member of node `i` the etcd leader.
    pub fn make_etcd_leader(&self, i: usize) -> anyhow::Result<()> {
        let endpoints: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("https://{}:2379", n.address))
            .collect();
        let target = self.nodes[i].name.to_string();
        let certs = self.nodes[2].clusterd_dir();
        in_ns(&self.client_ns(), move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut any = etcd_at(&certs, endpoints.clone()).await?;
                let members = any.member_list().await?;
                let target_id = members
                    .members()
                    .iter()
                    .find(|m| m.name() == target)
                    .map(|m| m.id())
                    .context("no such etcd member")?;
                let leader = any.status().await?.leader();
                if leader == target_id {
                    return Ok(());
                }
                let leader_url = members
                    .members()
                    .iter()
                    .find(|m| m.id() == leader)
                    .and_then(|m| m.client_urls().first().cloned())
                    .context("the leader has no client URL")?;
                let mut c = etcd_at(&certs, vec![leader_url]).await?;
                c.move_leader(target_id).await?;
                Ok(())
            })
        })
    }

    /// Whether node `i`'s etcd member leads the etcd cluster.
    pub fn is_etcd_leader(&self, i: usize) -> bool {
        let url = format!("https://{}:2379", self.nodes[i].address);
        let certs = self.nodes[2].clusterd_dir();
        in_ns(&self.client_ns(), move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut c) = etcd_at(&certs, vec![url]).await else {
                    return false;
                };
                match c.status().await {
                    Ok(s) => s.header().is_some_and(|h| h.member_id() == s.leader()),
                    Err(_) => false,
                }
            })
        })
    }
}

/// Issues member `name`'s certificate (address 10.77.0.`last`) and writes it with its key
/// and the CA into `dir`'s `tls/`.
fn member_certificate(
    ca: &clusterd::pairing::Ca,
    name: &str,
    last: u8,
    dir: &Path,
) -> anyhow::Result<clusterd::config::TlsFiles> {
    let creds = clusterd::pairing::credentials(name)?;
    let cert = ca.issue(&creds.csr_pem, name, IpAddr::from([10, 77, 0, last]))?;
    let files = clusterd::pairing::tls_files(dir);
    std::fs::create_dir_all(files.ca.parent().context("no tls dir")?)?;
    std::fs::write(&files.ca, &ca.cert_pem)?;
    std::fs::write(&files.cert, cert)?;
    std::fs::write(&files.key, creds.key_pem)?;
    Ok(files)
}

/// An etcd client of the pair (the witness's certificate) at `endpoints`.
async fn etcd_at(enc: &Path, endpoints: Vec<String>) -> anyhow::Result<etcd_client::Client> {
    let tls = clusterd::pairing::connect_options(&clusterd::pairing::tls_files(enc))?;
    let opts = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2));
    Ok(etcd_client::Client::connect(endpoints, Some(opts)).await?)
}

/// An HTTPS client for the appliance's self-signed certificate.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Logs in at `base` and returns the session token (retrying for 30 s while nothing
/// answers there).
pub fn login(c: &reqwest::blocking::Client, base: &str) -> anyhow::Result<String> {
    let end = Instant::now() + Duration::from_secs(30);
    let r = loop {
        match c
            .post(format!("{base}/rest/login-sessions"))
            .header("X-API-Version", "1000")
            .json(&serde_json::json!({"userName": "Administrator", "password": PASSWORD}))
            .send()
        {
            Ok(r) => break r,
            Err(e) if Instant::now() >= end => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    if !r.status().is_success() {
        bail!("login at {base}: {}", r.status());
    }
    let v: serde_json::Value = r.json()?;
    Ok(v["sessionID"].as_str().context("no sessionID")?.to_string())
}

/// Asks `url` (GET) every `every` until `stop` says so, recording each answer as a
/// [`Write`]: the peer benchmark's client (an address that moves, no store behind it).
pub fn prober_loop(
    ns: &str,
    url: String,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Writes, std::thread::JoinHandle<()>) {
    let path = format!("/var/run/netns/{ns}");
    let writes: Writes = Default::default();
    let out = std::sync::Arc::clone(&writes);
    let thread = std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let c = client();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let sent = Instant::now();
            let status = c.get(&url).send().ok().map(|r| r.status().as_u16());
            out.lock().unwrap().push(Write {
                name: String::new(),
                sent,
                at: Instant::now(),
                status,
                etag: None,
            });
            std::thread::sleep(every);
        }
    });
    (writes, thread)
}

/// One write the writer loop made.
#[derive(Debug, Clone)]
pub struct Write {
    pub name: String,
    /// When the request went out, and when its answer (or failure) came.
    pub sent: Instant,
    pub at: Instant,
    /// The HTTP status, or none (no answer).
    pub status: Option<u16>,
    /// The eTag of an acknowledged write.
    pub etag: Option<String>,
}

/// What the writer loop recorded so far, shared with the test.
pub type Writes = std::sync::Arc<std::sync::Mutex<Vec<Write>>>;

/// Writes plan scripts through the virtual IP every `every` until `stop` says so; every
/// answer is recorded in the returned list as it comes. Runs in the client namespace.
pub fn writer_loop(
    ns: &str,
    token: String,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Writes, std::thread::JoinHandle<()>) {
    let path = format!("/var/run/netns/{ns}");
    let writes: Writes = Default::default();
    let out = std::sync::Arc::clone(&writes);
    let thread = std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let c = client();
        let base = format!("https://{VIP}:{API_PORT}");
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            n += 1;
            let name = format!("w-{n:06}");
            let sent = Instant::now();
            let r = c
                .post(format!("{base}/rest/plan-scripts"))
                .header("X-API-Version", "1000")
                .header("auth", &token)
                .json(&serde_json::json!({
                    "name": name, "type": "PlanScript", "planType": "deploy",
                    "content": "echo hi\n", "description": ""
                }))
                .send();
            let at = Instant::now();
            let (status, etag) = match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let etag = r
                        .json::<serde_json::Value>()
                        .ok()
                        .and_then(|v| v["eTag"].as_str().map(String::from));
                    (Some(status), etag)
                }
                Err(_) => (None, None),
            };
            out.lock().unwrap().push(Write {
                name,
                sent,
                at,
                status,
                etag,
            });
            std::thread::sleep(every);
        }
    });
    (writes, thread)
}

/// Waits until the writer has an acknowledged write sent after `cut`.
pub fn wait_acked_after(writes: &Writes, cut: Instant, limit: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + limit;
    loop {
        if writes
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.sent > cut && w.status.is_some_and(|s| (200..300).contains(&s)))
        {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("no acknowledged write through the virtual IP within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The takeover seen by the writer around `cut`: from the last acknowledgement of a write
/// sent before it (the old active's) to the first acknowledgement of a write sent after it
/// (the new active's).
pub fn takeover(writes: &[Write], cut: Instant) -> Option<Duration> {
    let ok = |w: &&Write| w.status.is_some_and(|s| (200..300).contains(&s));
    let last = writes
        .iter()
        .filter(ok)
        .filter(|w| w.sent <= cut)
        .map(|w| w.at)
        .max()?;
    let first = writes
        .iter()
        .filter(ok)
        .filter(|w| w.sent > cut)
        .map(|w| w.at)
        .min()?;
    Some(first.saturating_duration_since(last))
}

/// What the observer saw of both nodes.
#[derive(Debug, Default)]
pub struct Seen {
    /// Samples where both nodes said they were active at that instant.
    pub both_active: Vec<String>,
    /// Per node: the terms of office (active since, active until) it reported, in
    /// `CLOCK_MONOTONIC` ns.
    pub terms: [Vec<(u64, u64)>; 2],
    /// Per node: the last status it answered with.
    pub last: [Option<Status>; 2],
}

impl Seen {
    pub fn role(&self, i: usize) -> Option<Role> {
        self.last[i].as_ref().map(|s| s.role)
    }

    pub fn active(&self) -> Option<usize> {
        (0..2).find(|&i| self.role(i) == Some(Role::Active))
    }
}

/// Polls both nodes' clusterd every 100 ms for as long as it lives, recording what it sees.
#[derive(Debug)]
pub struct Observer {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    pub fn start(enc: &Enclosure) -> Observer {
        let nodes: Vec<Node> = enc.nodes[..2]
            .iter()
            .map(|n| Node {
                name: n.name,
                ns: n.ns.clone(),
                address: n.address,
                dir: n.dir.clone(),
                procs: Vec::new(),
                storage: n.storage,
                bin: n.bin.clone(),
            })
            .collect();
        let seen: std::sync::Arc<std::sync::Mutex<Seen>> = Default::default();
        let stop: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (s, st) = (std::sync::Arc::clone(&seen), std::sync::Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                let now: Vec<Option<Status>> = nodes.iter().map(Node::status).collect();
                let at = clusterd::status::monotonic_ns();
                let mut seen = s.lock().unwrap();
                if now
                    .iter()
                    .all(|x| x.as_ref().is_some_and(|x| x.is_active_at(at)))
                {
                    seen.both_active.push(format!("{now:?}"));
                }
                for (i, x) in now.into_iter().enumerate() {
                    if let Some(x) = &x
                        && let (Role::Active, Some(since), Some(until)) =
                            (x.role, x.active_since_ns, x.active_until_ns)
                    {
                        match seen.terms[i].last_mut() {
                            Some(t) if t.0 == since => t.1 = t.1.max(until),
                            _ => seen.terms[i].push((since, until)),
                        }
                    }
                    if x.is_some() {
                        seen.last[i] = x;
                    }
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Observer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `pred` holds for what was seen; panics naming `what` after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&Seen) -> bool) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if pred(&self.seen.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{what} did not happen within {limit:?}; last seen: {:?}",
            self.seen.lock().unwrap().last
        );
    }

    /// The node seen active last, if any.
    pub fn active(&self) -> Option<usize> {
        self.seen.lock().unwrap().active()
    }

    /// Stops observing and checks that two nodes were never active at once and that no
    /// term of one node overlapped a term of the other; returns how many terms were seen.
    pub fn never_two_actives(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let s = self.seen.lock().unwrap();
        assert!(
            s.both_active.is_empty(),
            "two active nodes seen: {:?}",
            s.both_active
        );
        for a in &s.terms[0] {
            for b in &s.terms[1] {
                assert!(
                    a.1 <= b.0 || b.1 <= a.0,
                    "terms overlap: node-a {a:?}, node-b {b:?}"
                );
            }
        }
        s.terms[0].len() + s.terms[1].len()
    }
}
