//! The pair on one host: network namespaces A, B and W on a bridge, Debian's etcd in each
//! (started as `clusterd etcd` / `clusterd witness`), clusterd on A and B. An observer polls
//! both nodes every 100 ms through their control sockets for the whole test and fails it if
//! it ever sees two active nodes, or if one node's reported active interval overlaps the
//! other's. Needs root, `ip` and etcd; skips with the reason otherwise (CI has all three).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clusterd::config::{ClusterConfig, Member, MemberRole, VirtualIp};
use clusterd::control::ClusterClient;
use clusterd::status::{Role, Status};
use parking_lot::Mutex;

const VIP: &str = "10.77.0.100";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn usable() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (network namespaces)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("needs ip (iproute2)".into());
    }
    if !etcd_member::etcd_binary().is_file() {
        return Err("needs etcd (Debian's etcd-server)".into());
    }
    Ok(())
}

struct Node {
    name: &'static str,
    ns: String,
    state: PathBuf,
    etcd: Option<Child>,
    clusterd: Option<Child>,
}

impl Node {
    fn socket(&self) -> PathBuf {
        self.state.join("control.sock")
    }

    fn spawn(&self, args: &[&str], log: &str) -> Child {
        let log = std::fs::File::create(self.state.join(log)).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_clusterd")])
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env("CLUSTERD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn start_etcd(&mut self) {
        let sub = if self.name == "witness" {
            "witness"
        } else {
            "etcd"
        };
        self.etcd = Some(self.spawn(&[sub], "etcd.log"));
    }

    fn start_clusterd(&mut self) {
        let sock = self.socket();
        let _ = std::fs::remove_file(&sock);
        let summary = self.state.join("summary.txt");
        self.clusterd = Some(self.spawn(
            &[
                "--control",
                sock.to_str().unwrap(),
                "--summary",
                summary.to_str().unwrap(),
            ],
            "clusterd.log",
        ));
    }

    fn signal(child: &Option<Child>, sig: nix::sys::signal::Signal) {
        if let Some(c) = child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    fn kill_all(&mut self) {
        for c in [&mut self.clusterd, &mut self.etcd] {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn link(&self, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    fn has_vip(&self) -> bool {
        sh(&["ip", "-n", &self.ns, "-4", "addr", "show", "dev", "eth0"])
            .contains(&format!("{VIP}/"))
    }

    fn mac(&self) -> String {
        let out = sh(&["ip", "-n", &self.ns, "link", "show", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap()
            .to_string()
    }
}

struct Pair {
    nodes: Vec<Node>,
    hub: String,
    _dir: tempfile::TempDir,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            Node::signal(&n.clusterd, nix::sys::signal::Signal::SIGCONT);
            n.kill_all();
            let _ = Command::new("ip").args(["netns", "del", &n.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .status();
    }
}

fn setup() -> Pair {
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let hub = format!("sh{id}");
    sh(&["ip", "netns", "add", &hub]);
    sh(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
    sh(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
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
        })
        .collect();
    let mut nodes = Vec::new();
    for (name, last) in names {
        let ns = format!("s{}{id}", &name[name.len() - 1..]);
        sh(&["ip", "netns", "add", &ns]);
        let outer = format!("v{}{id}", &name[name.len() - 1..]);
        sh(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        sh(&["ip", "link", "set", &outer, "netns", &hub]);
        sh(&[
            "ip", "-n", &hub, "link", "set", &outer, "master", "br0", "up",
        ]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.0.{last}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let state = dir.path().join(name);
        let cfg = ClusterConfig {
            cluster_id: format!("test-{id}"),
            me: name.into(),
            members: members.clone(),
            virtual_ip: (name != "witness").then(|| VirtualIp {
                address: VIP.parse().unwrap(),
                prefix_len: 24,
                interface: "eth0".into(),
            }),
            lease_ttl_seconds: 2,
            tls: None,
            join_existing: false,
        };
        cfg.save(&state).unwrap();
        nodes.push(Node {
            name,
            ns,
            state,
            etcd: None,
            clusterd: None,
        });
    }
    for n in &mut nodes {
        n.start_etcd();
    }
    for n in &mut nodes[..2] {
        n.start_clusterd();
    }
    Pair {
        nodes,
        hub,
        _dir: dir,
    }
}

/// What the observer saw.
#[derive(Default)]
struct Seen {
    /// Samples where both nodes said they were active (at that instant).
    both_active: Vec<String>,
    /// Per node: (active since, active until) intervals reported, `CLOCK_MONOTONIC` ns.
    intervals: [Vec<(u64, u64)>; 2],
    last: [Option<Status>; 2],
}

async fn status(sock: &Path) -> Option<Status> {
    let c = tokio::time::timeout(Duration::from_millis(300), ClusterClient::connect(sock))
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(Duration::from_millis(300), c.status())
        .await
        .ok()?
        .ok()
}

fn observe(socks: [PathBuf; 2], stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        while !stop.load(Ordering::SeqCst) {
            let a = status(&socks[0]).await;
            let b = status(&socks[1]).await;
            let now = clusterd::status::monotonic_ns();
            {
                let mut s = seen.lock();
                let active = |x: &Option<Status>| x.as_ref().is_some_and(|s| s.is_active_at(now));
                if active(&a) && active(&b) {
                    s.both_active.push(format!("{a:?} / {b:?}"));
                }
                for (i, st) in [a, b].into_iter().enumerate() {
                    if let Some(st) = &st
                        && let (Role::Active, Some(since), Some(until)) =
                            (st.role, st.active_since_ns, st.active_until_ns)
                    {
                        let iv = &mut s.intervals[i];
                        match iv.last_mut() {
                            Some(last) if last.0 == since => last.1 = last.1.max(until),
                            _ => iv.push((since, until)),
                        }
                    }
                    if st.is_some() {
                        s.last[i] = st;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Waits until `pred` holds for the observer's latest view.
fn wait_for(seen: &Mutex<Seen>, what: &str, limit: Duration, pred: impl Fn(&Seen) -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if pred(&seen.lock()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = seen.lock();
    panic!(
        "{what} did not happen within {limit:?}; last seen: {:?}",
        s.last
    );
}

fn role(s: &Seen, i: usize) -> Option<Role> {
    s.last[i].as_ref().map(|s| s.role)
}

fn active_index(s: &Seen) -> Option<usize> {
    (0..2).find(|&i| role(s, i) == Some(Role::Active))
}

#[test]
fn the_pair_elects_one_active_and_hands_over_on_stop_partition_and_kill() {
    if let Err(why) = usable() {
        eprintln!("skipping: {why}");
        return;
    }
    let mut pair = setup();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let socks = [pair.nodes[0].socket(), pair.nodes[1].socket()];
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        std::thread::spawn(move || observe(socks, stop, seen))
    };
    let limit = Duration::from_secs(30);

    // One active, one standby; the virtual IP on the active only.
    wait_for(&seen, "an election", limit, |s| {
        active_index(s).is_some()
            && (0..2).all(|i| matches!(role(s, i), Some(Role::Active | Role::Standby)))
    });
    let first = active_index(&seen.lock()).unwrap();
    let other = 1 - first;
    assert!(pair.nodes[first].has_vip());
    assert!(!pair.nodes[other].has_vip());
    // The witness learns the virtual IP's MAC (the active's).
    sh(&[
        "ip",
        "netns",
        "exec",
        &pair.nodes[2].ns,
        "ping",
        "-c1",
        "-W2",
        VIP,
    ]);

    // 1. Freeze the active's clusterd beyond its lease, then let it run again.
    Node::signal(
        &pair.nodes[first].clusterd,
        nix::sys::signal::Signal::SIGSTOP,
    );
    wait_for(&seen, "a takeover after SIGSTOP", limit, |s| {
        role(s, other) == Some(Role::Active)
    });
    assert!(pair.nodes[other].has_vip());
    Node::signal(
        &pair.nodes[first].clusterd,
        nix::sys::signal::Signal::SIGCONT,
    );
    wait_for(&seen, "the resumed node to stand by", limit, |s| {
        role(s, first) == Some(Role::Standby)
    });
    assert!(
        !pair.nodes[first].has_vip(),
        "the resumed node dropped the virtual IP"
    );
    // The neighbours were told: the witness's entry for the virtual IP is the new MAC.
    let new_mac = pair.nodes[other].mac();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let neigh = sh(&["ip", "-n", &pair.nodes[2].ns, "neigh", "show", VIP]);
        if neigh.contains(&new_mac) {
            break;
        }
        assert!(
            Instant::now() < end,
            "gratuitous ARP not applied: {neigh} (want {new_mac})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 2. Partition the active from the rest: it steps down, the other takes over; healed,
    //    it stands by.
    let active = other;
    let standby = first;
    pair.nodes[active].link(false);
    wait_for(&seen, "a takeover after a partition", limit, |s| {
        role(s, standby) == Some(Role::Active) && role(s, active) != Some(Role::Active)
    });
    pair.nodes[active].link(true);
    wait_for(&seen, "the healed node to stand by", limit, |s| {
        role(s, active) == Some(Role::Standby)
    });
    assert!(!pair.nodes[active].has_vip());

    // 3. Cut the active's link, then kill its etcd and clusterd (no FIN, no RST reaches
    //    anyone); the other takes over with an alert; the dead node restarts, rejoins as
    //    standby, and the alert clears.
    let (active, standby) = (standby, active);
    pair.nodes[active].link(false);
    pair.nodes[active].kill_all();
    wait_for(&seen, "a takeover after a kill", limit, |s| {
        role(s, standby) == Some(Role::Active)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let standby_socket = pair.nodes[standby].socket();
    let alerts = |_: usize| {
        rt.block_on(async {
            let c = ClusterClient::connect(&standby_socket).await.unwrap();
            c.alerts().await.unwrap()
        })
    };
    let dead = pair.nodes[active].name;
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = alerts(standby);
        if a.iter().any(|x| {
            x.alert_state == "Active"
                && x.alert_type_id == "Cluster.NodeUnavailable"
                && x.description.contains(dead)
        }) {
            assert!(
                a.iter().any(|x| x.alert_state == "Active"
                    && x.alert_type_id == "Cluster.NotHighlyAvailable")
            );
            // The serial console's summary says the same (written every second).
            std::thread::sleep(Duration::from_millis(1500));
            let summary =
                std::fs::read_to_string(pair.nodes[standby].state.join("summary.txt")).unwrap();
            assert!(
                summary.starts_with(&format!("{}: active node", pair.nodes[standby].name)),
                "{summary}"
            );
            assert!(
                summary.contains(&format!("Critical: Appliance node {dead} is unavailable")),
                "{summary}"
            );
            break;
        }
        assert!(Instant::now() < end, "no node-unavailable alert: {a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    pair.nodes[active].link(true);
    pair.nodes[active].start_etcd();
    pair.nodes[active].start_clusterd();
    wait_for(
        &seen,
        "the restarted node to rejoin as standby",
        limit,
        |s| role(s, active) == Some(Role::Standby) && role(s, standby) == Some(Role::Active),
    );
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = alerts(standby);
        if !a.is_empty() && a.iter().all(|x| x.alert_state == "Cleared") {
            break;
        }
        assert!(Instant::now() < end, "alerts did not clear: {a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    stop.store(true, Ordering::SeqCst);
    observer.join().unwrap();
    let s = seen.lock();
    assert!(
        s.both_active.is_empty(),
        "two active nodes seen: {:?}",
        s.both_active
    );
    // No reported active interval of one node overlaps one of the other's.
    for a in &s.intervals[0] {
        for b in &s.intervals[1] {
            assert!(
                a.1 <= b.0 || b.1 <= a.0,
                "active intervals overlap: node-a {a:?}, node-b {b:?}"
            );
        }
    }
    assert!(
        s.intervals[0].len() + s.intervals[1].len() >= 4,
        "four terms of office expected: {:?}",
        s.intervals
    );
}
