//! A compute module's view of the pair's storage, for the storage tests and `pair-bench`:
//! QEMU's NBD client (`qemu-io`, with `reconnect-delay`) running an FUA write-then-verify
//! workload in the witness's namespace, and what to check on the nodes afterwards.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Node;

/// The workload's unit: one 64 KiB slot of the volume.
pub const SLOT: u64 = 64 << 10;
/// Slots the workload spreads over (16 MiB).
pub const SLOTS: u64 = 256;

/// The byte written to `slot` by round `round` (never zero: a zero would read as a hole).
fn pattern(slot: u64, round: u64) -> u64 {
    (slot * 7 + round * 13) % 251 + 1
}

/// `qemu-io` commands: `rounds` FUA writes, each read back and checked, `pause_ms` apart;
/// and the (slot, pattern) written by each round, in order.
pub fn workload(rounds: u64, pause_ms: u64) -> (Vec<String>, Vec<(u64, u64)>) {
    let mut cmds = Vec::new();
    let mut written = Vec::new();
    for round in 0..rounds {
        let slot = (round * 37) % SLOTS;
        let p = pattern(slot, round);
        let off = slot * SLOT;
        cmds.push(format!("write -f -P {p} {off} {SLOT}"));
        cmds.push(format!("read -P {p} {off} {SLOT}"));
        if pause_ms > 0 {
            cmds.push(format!("sleep {pause_ms}"));
        }
        written.push((slot, p));
    }
    (cmds, written)
}

/// Runs `qemu-io` in namespace `ns` against `export` on `server`, through QEMU's NBD client
/// with a reconnect delay (30 s) and TCP keep-alive: it rides through a failover, resending
/// what was in flight.
pub fn qemu_io(ns: &str, server: &str, export: &str, cmds: &[String]) -> anyhow::Result<Child> {
    let opts = format!(
        "driver=nbd,server.type=inet,server.host={server},server.port=10809,export={export},\
         server.keep-alive=on,reconnect-delay=30"
    );
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "qemu-io", "--image-opts", &opts]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-io")
}

/// What a `qemu-io` run saw.
#[derive(Debug)]
pub struct Run {
    /// Lines reporting a failed request or a pattern that did not verify.
    pub errors: Vec<String>,
    /// Whether qemu-io exited with success.
    pub ok: bool,
    /// The longest request, seconds (the pause a guest would see).
    pub longest: f64,
    pub stderr: String,
}

/// Waits for a `qemu-io` run and reads what it printed.
pub fn finish(child: Child) -> anyhow::Result<Run> {
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| {
            l.contains("failed") || l.contains("error") || l.contains("Pattern verification")
        })
        .map(String::from)
        .collect();
    // "64 KiB, 1 ops; 00.00 sec (94.866 MiB/sec and 1517.8561 ops/sec)": one op each.
    let longest = stdout
        .lines()
        .filter_map(|l| l.split(" and ").nth(1))
        .filter_map(|t| t.trim_end_matches(" ops/sec)").parse::<f64>().ok())
        .filter(|ops| *ops > 0.0)
        .map(|ops| 1.0 / ops)
        .fold(0.0, f64::max);
    Ok(Run {
        errors,
        ok: out.status.success(),
        longest,
        stderr,
    })
}

/// [`finish`], failing if the run has not ended within `limit` (it is killed then: its I/O
/// hangs).
pub fn finish_within(child: Child, limit: Duration) -> anyhow::Result<Run> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(finish(child));
    });
    match rx.recv_timeout(limit) {
        Ok(run) => run,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            bail!("qemu-io still runs after {limit:?}: its I/O hangs")
        }
    }
}

/// Slows node `n`'s replication traffic (to the other node's port 10810) to `rate` (`tc`'s
/// notation, "40mbit"), or lets it run free again (`None`); nothing else it sends is slowed.
pub fn throttle_replication(n: &Node, rate: Option<&str>) -> anyhow::Result<()> {
    let tc = |args: &[&str]| {
        let mut all = vec!["ip", "netns", "exec", n.ns.as_str(), "tc"];
        all.extend_from_slice(args);
        crate::sh(&all)
    };
    let _ = tc(&["qdisc", "del", "dev", "eth0", "root"]);
    let Some(rate) = rate else { return Ok(()) };
    tc(&[
        "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "20",
    ])?;
    tc(&[
        "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", rate,
    ])?;
    tc(&[
        "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb", "rate", "10gbit",
    ])?;
    tc(&[
        "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
        "match", "ip", "dport", "10810", "0xffff", "flowid", "1:10",
    ])?;
    Ok(())
}

/// Reads every slot back through `server` and checks it holds the last pattern written.
pub fn verify(ns: &str, server: &str, export: &str, written: &[(u64, u64)]) -> anyhow::Result<()> {
    let mut last = BTreeMap::new();
    for (slot, p) in written {
        last.insert(*slot, *p);
    }
    let cmds: Vec<String> = last
        .iter()
        .map(|(slot, p)| format!("read -P {p} {} {SLOT}", slot * SLOT))
        .collect();
    let run = finish(qemu_io(ns, server, export, &cmds)?)?;
    if !run.ok || !run.errors.is_empty() {
        bail!(
            "an acknowledged write is not there: {:?} {}",
            run.errors,
            run.stderr
        );
    }
    Ok(())
}

/// The compute module's TCP keep-alive (its namespace's sysctls): a connection whose server
/// died with a request in flight (acknowledged by TCP, unanswered) has nothing left to
/// retransmit, so only a keep-alive probe finds out; it reaches the node that took the
/// address over, whose kernel resets it, and QEMU reconnects. (A server's iSCSI initiator
/// has NOP-Out pings for the same purpose.)
pub fn keep_alive(ns: &str) -> anyhow::Result<()> {
    crate::sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-w",
        "net.ipv4.tcp_keepalive_time=2",
        "net.ipv4.tcp_keepalive_intvl=1",
        "net.ipv4.tcp_keepalive_probes=3",
    ])
    .map(drop)
}

/// A volume of `size` (e.g. `32M`) on `n` (in its group), exported to the witness's host
/// (the client).
pub fn make_volume(n: &Node, name: &str, size: &str) -> anyhow::Result<()> {
    n.storaged(&["volume", "create", "--size", size, "--name", name])?;
    n.storaged(&["export", "add", name, "--allow", "10.77.0.3"])?;
    Ok(())
}

/// The SHA-256 of volume `name` as node `n` holds it.
pub fn content_hash(n: &Node, name: &str) -> anyhow::Result<String> {
    let file = n.dir.join(format!("{name}.raw"));
    n.storaged(&["volume", "export", name, file.to_str().unwrap_or_default()])?;
    let out = Command::new("sha256sum").arg(&file).output()?;
    let _ = std::fs::remove_file(&file);
    Ok(String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string())
}

/// The MiB (offset, byte on A, byte on B) at which volume `name` differs between the two
/// nodes (at most `most`), from both nodes' exports.
pub fn differences(a: &Node, b: &Node, name: &str, most: usize) -> anyhow::Result<Vec<String>> {
    let export = |n: &Node| -> anyhow::Result<Vec<u8>> {
        let file = n.dir.join(format!("{name}.diff.raw"));
        n.storaged(&["volume", "export", name, file.to_str().unwrap_or_default()])?;
        let data = std::fs::read(&file)?;
        let _ = std::fs::remove_file(&file);
        Ok(data)
    };
    let (x, y) = (export(a)?, export(b)?);
    let mut out = Vec::new();
    for (i, (p, q)) in x.chunks(1 << 20).zip(y.chunks(1 << 20)).enumerate() {
        if let Some(at) = p.iter().zip(q).position(|(u, v)| u != v) {
            out.push(format!(
                "MiB {i} (+{at}): {:#x} on A, {:#x} on B",
                p[at], q[at]
            ));
            if out.len() == most {
                break;
            }
        }
    }
    if x.len() != y.len() {
        out.push(format!("sizes {} and {}", x.len(), y.len()));
    }
    Ok(out)
}

/// Whether `n` has its peer's copies up to date (none outdated, no resync running, no
/// region the peer may lack).
pub fn in_sync(n: &Node) -> bool {
    n.pair_status().is_some_and(|s| {
        s["peerOutdated"] == false
            && s["resync"]["running"] == false
            && s["outOfSync"].as_array().is_some_and(|a| a.is_empty())
    })
}

/// Waits until `ok` holds, or fails after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + limit;
    while !ok() {
        if Instant::now() > end {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
