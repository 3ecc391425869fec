//! Replicated vs unreplicated writes over NBD on loopback: two stores in one process, an NBD
//! server on each owner, `qemu-img bench -w` against both (sequential 1 MiB writes and 4 KiB
//! writes with a flush after each, queue depth as given), beside the named peer: QEMU's
//! synchronous mirror (`qemu-storage-daemon`, `blockdev-mirror copy-mode=write-blocking`
//! from a raw file to a second raw file served by `qemu-nbd`, the mirror's filter node
//! exported over NBD). Prints a Markdown table.
//!
//! `--second-copy DIR` puts the second copy (our replica's store, the mirror's target file)
//! under DIR, a device of its own, as on a pair where each node has its disk: with both
//! copies on one disk, a replicated write costs that disk twice the bytes, which says nothing
//! about replication.
//!
//! `--pin` gives each node a CPU of its own, as on a pair of machines: the client and the
//! serving node (our owner, the mirror's `qemu-storage-daemon`, the unreplicated store) on
//! CPU 0, the second copy's server (our replica, the mirror's `qemu-nbd`) on CPU 1. Without
//! it, everything shares the host's CPUs, and a replicated write's extra copies (the send,
//! the replica's receive and write) compete with the owner's.
//!
//! `--tls` replicates over mutual TLS with a pair's certificates, as the appliances of a pair
//! do (without it: plain TCP, as the tests on one host do).
//!
//! `cargo run --release -p storaged --example replicated_write -- [--count N] [--depth D]
//! [--second-copy DIR] [--pin] [--tls]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement: a failure ends it

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use storaged::replication::tls::TlsFiles;
use storaged::replication::{Hello, PeerReplica, ReplicaServer};
use storaged::store::Store;

const MIB: u64 = 1 << 20;
const VOL: &str = "0b7c7e0e-0000-4000-8000-0000000000b1";

fn hello(node: &str) -> Hello {
    Hello {
        cluster_id: "bench".into(),
        node: node.into(),
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds `qemu-img bench` takes for `args` against `uri`.
/// Whether each node gets a CPU of its own (`--pin`).
fn pinned() -> bool {
    std::env::args().any(|a| a == "--pin")
}

/// Runs the calling thread (and the threads it starts) on `cpu` only, with `--pin`.
fn pin_thread(cpu: usize) {
    if !pinned() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it; the call
    // reads the set for the calling thread (0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
}

/// `program`, on `cpu` only with `--pin` (through `taskset`).
fn on_cpu(program: &str, cpu: usize) -> Command {
    if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", &cpu.to_string(), program]);
        c
    } else {
        Command::new(program)
    }
}

/// Where second copies go (`--second-copy DIR`; the temporary directory when not given).
fn second_copy() -> std::path::PathBuf {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--second-copy")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// CPU seconds (user + system) used so far by process `pid` ("self": this one, with both
/// stores and their NBD servers and replication threads).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a constant of the system.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn bench(uri: &str, args: &[&str]) -> f64 {
    // Each run starts with no other run's dirty pages to write back (the runs before it
    // would otherwise slow it down: the one disk is shared).
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let t = Instant::now();
    let out = on_cpu("qemu-img", 0)
        .args(["bench", "-f", "raw", "-w", "-q"])
        .args(args)
        .arg(uri)
        .output()
        .expect("qemu-img (apt-get install qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One QMP command and its answer (events skipped).
fn qmp(w: &mut UnixStream, r: &mut BufReader<UnixStream>, cmd: &str) -> serde_json::Value {
    w.write_all(cmd.as_bytes()).unwrap();
    w.write_all(b"\n").unwrap();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v.get("return").is_some() || v.get("error").is_some() {
            assert!(v.get("error").is_none(), "{cmd}: {v}");
            return v;
        }
    }
}

/// QEMU's synchronous mirror: a raw file mirrored (write-blocking) to a raw file behind
/// qemu-nbd; returns the NBD URI of the mirror's filter node and the processes.
fn qemu_mirror(dir: &Path, second: &Path, size: u64) -> (String, Vec<Killed>) {
    let (src, tgt) = (dir.join("src.raw"), second.join("tgt.raw"));
    for f in [&src, &tgt] {
        std::fs::File::create(f).unwrap().set_len(size).unwrap();
    }
    let tport = free_port();
    let target = on_cpu("qemu-nbd", 1)
        .args([
            "-f",
            "raw",
            "-t",
            "-x",
            "vol",
            "--cache=writeback",
            "-b",
            "127.0.0.1",
        ])
        .args(["-p", &tport.to_string()])
        .arg(&tgt)
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-nbd");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (eport, sock) = (free_port(), dir.join("qmp.sock"));
    let daemon = on_cpu("qemu-storage-daemon", 0)
        .arg("--blockdev")
        .arg(format!(
            "driver=file,filename={},node-name=src-file,cache.direct=off",
            src.display()
        ))
        .args(["--blockdev", "driver=raw,file=src-file,node-name=src"])
        .arg("--blockdev")
        .arg(format!(
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={tport},\
             export=vol,node-name=tgt"
        ))
        .arg("--chardev")
        .arg(format!(
            "socket,id=qmp,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["--monitor", "chardev=qmp"])
        .arg("--nbd-server")
        .arg(format!(
            "addr.type=inet,addr.host=127.0.0.1,addr.port={eport}"
        ))
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-storage-daemon");
    let procs = vec![Killed(target), Killed(daemon)];
    let mut w = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    let mut r = BufReader::new(w.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    qmp(&mut w, &mut r, r#"{"execute":"qmp_capabilities"}"#);
    qmp(
        &mut w,
        &mut r,
        r#"{"execute":"blockdev-mirror","arguments":{"job-id":"m","device":"src","target":"tgt","sync":"full","copy-mode":"write-blocking","filter-node-name":"mf"}}"#,
    );
    loop {
        let jobs = qmp(&mut w, &mut r, r#"{"execute":"query-jobs"}"#);
        if jobs["return"][0]["status"] == "ready" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    qmp(
        &mut w,
        &mut r,
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e","node-name":"mf","writable":true,"name":"vol"}}"#,
    );
    (format!("nbd://127.0.0.1:{eport}/vol"), procs)
}

/// A CA and two member certificates for 127.0.0.1, as pairing gives the nodes (`--tls`).
fn pair_certificates(dir: &Path) -> (TlsFiles, TlsFiles) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let member = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(d.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("key.pem"), key.serialize_pem()).unwrap();
        TlsFiles::in_dir(&d)
    };
    (member("a"), member("b"))
}

fn main() {
    let count = arg("--count", 512);
    let depth = arg("--depth", 8).to_string();
    // The owners' runtime and blocking threads start from here: CPU 0 with --pin.
    pin_thread(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let second = second_copy();
    let dirs: Vec<tempfile::TempDir> = vec![
        tempfile::tempdir_in(&second).unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    // The replica, and its server.
    let replica = Arc::new(Store::open(dirs[0].path()).unwrap());
    replica.create_as(VOL, None, 2048 * MIB, Some("a")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tls_dir = tempfile::tempdir().unwrap();
    let tls = std::env::args()
        .any(|a| a == "--tls")
        .then(|| pair_certificates(tls_dir.path()));
    let server = ReplicaServer::with_tls(
        replica,
        hello("b"),
        tls.as_ref()
            .map(|(_, b)| storaged::replication::tls::server_config(b).unwrap()),
    );
    std::thread::spawn(move || {
        // Its connections' threads start from here: CPU 1 with --pin.
        pin_thread(1);
        server.serve(listener)
    });
    // A replicated owner and an unreplicated one.
    let replicated = Arc::new(
        Store::open_with_replica(
            dirs[1].path(),
            Arc::new(PeerReplica::with_tls(
                addr,
                hello("a"),
                tls.as_ref()
                    .map(|(a, _)| storaged::replication::tls::client_config(a).unwrap()),
                Arc::new(storaged::ownership::Ownership::node("a", true)),
            )),
        )
        .unwrap(),
    );
    let single = Arc::new(Store::open(dirs[2].path()).unwrap());
    let mut uris = Vec::new();
    for s in [&single, &replicated] {
        s.create_as(VOL, None, 2048 * MIB, Some("a")).unwrap();
        s.export_add(VOL, Vec::new(), false).unwrap();
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = l.local_addr().unwrap().port();
        let c: Arc<dyn storaged::export::ExportCatalog> = s.clone();
        rt.spawn(storaged::nbd::serve(l, c));
        uris.push(format!("nbd://127.0.0.1:{port}/{VOL}"));
    }
    let mirror_dir = tempfile::tempdir().unwrap();
    let mirror_second = tempfile::tempdir_in(&second).unwrap();
    let (mirror, procs) = qemu_mirror(mirror_dir.path(), mirror_second.path(), 2048 * MIB);
    uris.push(mirror);
    let mirror_pids: Vec<String> = procs.iter().map(|p| p.0.id().to_string()).collect();
    // The CPU the servers use (the client's, qemu-img's, is the same for all three).
    let server_cpu = |i: usize| -> f64 {
        if i < 2 {
            cpu_seconds("self")
        } else {
            mirror_pids.iter().map(|p| cpu_seconds(p)).sum()
        }
    };
    let c = count.to_string();
    let c4k = (count * 4).to_string();
    let link = if tls.is_some() {
        "mutual TLS"
    } else {
        "plain TCP"
    };
    println!(
        "| writes over NBD | storaged unreplicated | storaged replicated ({link}) | QEMU mirror \
         (write-blocking) | replicated / unreplicated | replicated / mirror |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut cpu = Vec::new();
    let seq: Vec<f64> = uris
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let before = server_cpu(i);
            let t = bench(u, &["-c", &c, "-s", "1M", "-d", &depth]);
            cpu.push((server_cpu(i) - before) / (count as f64 / 1024.0));
            t
        })
        .collect();
    let mb = count as f64;
    println!(
        "| sequential 1 MiB, depth {depth}, MiB/s | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× |",
        mb / seq[0],
        mb / seq[1],
        mb / seq[2],
        seq[0] / seq[1],
        seq[2] / seq[1]
    );
    println!(
        "| the servers' CPU seconds per GiB written sequentially | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2}× |",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[1] / cpu[0],
        cpu[1] / cpu[2]
    );
    let sync: Vec<f64> = uris
        .iter()
        .map(|u| {
            bench(
                u,
                &["-c", &c4k, "-s", "4k", "-d", "1", "--flush-interval=1"],
            )
        })
        .collect();
    let n = (count * 4) as f64;
    println!(
        "| 4 KiB write + flush, depth 1, µs each | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× |",
        sync[0] / n * 1e6,
        sync[1] / n * 1e6,
        sync[2] / n * 1e6,
        sync[0] / sync[1],
        sync[2] / sync[1]
    );
}
