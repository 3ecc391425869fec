//! Replicated vs unreplicated writes over NBD on loopback: two stores in one process, an NBD
//! server on each owner, `qemu-img bench -w` against both (sequential 1 MiB writes and 4 KiB
//! writes with a flush after each, queue depth as given). Prints a Markdown table.
//!
//! `cargo run --release -p storaged --example replicated_write -- [--count N] [--depth D]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement: a failure ends it

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

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
fn bench(uri: &str, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new("qemu-img")
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

fn main() {
    let count = arg("--count", 512);
    let depth = arg("--depth", 8).to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The replica, and its server.
    let replica = Arc::new(Store::open(dirs[0].path()).unwrap());
    replica.create_as(VOL, None, 2048 * MIB).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ReplicaServer::new(replica, hello("b"));
    std::thread::spawn(move || server.serve(listener));
    // A replicated owner and an unreplicated one.
    let replicated = Arc::new(
        Store::open_with_replica(dirs[1].path(), Arc::new(PeerReplica::new(addr, hello("a"))))
            .unwrap(),
    );
    let single = Arc::new(Store::open(dirs[2].path()).unwrap());
    let mut uris = Vec::new();
    for s in [&single, &replicated] {
        s.create_as(VOL, None, 2048 * MIB).unwrap();
        s.export_add(VOL, Vec::new(), false).unwrap();
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = l.local_addr().unwrap().port();
        let c: Arc<dyn storaged::export::ExportCatalog> = s.clone();
        rt.spawn(storaged::nbd::serve(l, c));
        uris.push(format!("nbd://127.0.0.1:{port}/{VOL}"));
    }
    let c = count.to_string();
    let c4k = (count * 4).to_string();
    println!("| writes over NBD | unreplicated | replicated | ratio |");
    println!("|---|---:|---:|---:|");
    let seq: Vec<f64> = uris
        .iter()
        .map(|u| bench(u, &["-c", &c, "-s", "1M", "-d", &depth]))
        .collect();
    let mb = count as f64;
    println!(
        "| sequential 1 MiB, depth {depth}, MiB/s | {:.0} | {:.0} | {:.2}× |",
        mb / seq[0],
        mb / seq[1],
        seq[0] / seq[1]
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
        "| 4 KiB write + flush, depth 1, µs each | {:.0} | {:.0} | {:.2}× |",
        sync[0] / n * 1e6,
        sync[1] / n * 1e6,
        sync[0] / sync[1]
    );
}
