//! `kill -9` of the real daemon: during a write workload with periodic flushes, during an
//! import and during a loop of clones. After a restart on the same data directory every write
//! acknowledged before the last completed flush reads back, nothing half-made is listed, and
//! `verify --deep` is clean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

const FLUSH_EVERY: u64 = 16;

/// What a writer knows about one volume's slots.
#[derive(Debug, Clone)]
struct Tracker {
    export: String,
    /// Byte offset of slot 0 in the volume.
    base: u64,
    /// Per slot: the record a completed flush made durable (0: never written).
    durable: Vec<u64>,
    /// Per slot: records sent since the last completed flush (acknowledged or in flight);
    /// any of them may or may not have survived.
    since_flush: Vec<Vec<u64>>,
    flushes: u64,
}

impl Tracker {
    fn new(export: &str, base: u64) -> Self {
        Self {
            export: export.to_string(),
            base,
            durable: vec![0; SLOTS as usize],
            since_flush: vec![Vec::new(); SLOTS as usize],
            flushes: 0,
        }
    }

    /// Writes random slots until the connection breaks, flushing every [`FLUSH_EVERY`] writes.
    fn run(
        mut self,
        port: u16,
        mut rng: Rng,
        mut seq: u64,
        stop: &AtomicBool,
        writes: &AtomicU64,
    ) -> Self {
        let Ok(mut c) = Nbd::connect(port, &self.export) else {
            return self;
        };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let slot = rng.range(0, SLOTS);
            self.since_flush[slot as usize].push(seq);
            if c.write(self.base + slot * RECORD, &record(slot, seq))
                .is_err()
            {
                break;
            }
            writes.fetch_add(1, Ordering::Relaxed);
            n += 1;
            if n.is_multiple_of(FLUSH_EVERY) {
                if c.flush().is_err() {
                    break;
                }
                for (slot, sent) in self.since_flush.iter_mut().enumerate() {
                    if let Some(&last) = sent.last() {
                        self.durable[slot] = last;
                    }
                    sent.clear();
                }
                self.flushes += 1;
            }
        }
        self
    }

    /// Reads every slot back after a restart, checks it against what was acknowledged, and
    /// makes what it found the new baseline.
    fn check(&mut self, d: &Daemon) {
        let mut c = d.nbd(&self.export);
        let all = c.read(self.base, (SLOTS * RECORD) as usize).unwrap();
        c.disconnect();
        for slot in 0..SLOTS {
            let found = seq_of(
                &all[(slot * RECORD) as usize..((slot + 1) * RECORD) as usize],
                slot,
            );
            let s = slot as usize;
            assert!(
                found == self.durable[s] || self.since_flush[s].contains(&found),
                "{} slot {slot}: found record {found}; flushed {}, sent since {:?}",
                self.export,
                self.durable[s],
                self.since_flush[s]
            );
            self.durable[s] = found;
            self.since_flush[s].clear();
        }
    }
}

#[test]
fn kill_9_during_writes_loses_nothing_flushed() {
    let mut d = Daemon::start();
    let src = d.dir.join("golden.raw");
    write_golden(&src);
    d.import(&src, "golden");
    d.clone_of("golden", "os1");
    d.create("base", "8M");
    d.create("bystander", "4M");
    for v in ["os1", "base", "bystander"] {
        d.export(v);
    }
    let mut bystander = vec![0u8; 4 * MIB as usize];
    Rng::new(7).fill(&mut bystander);
    let mut c = d.nbd("bystander");
    c.write(0, &bystander).unwrap();
    c.flush().unwrap();
    c.disconnect();

    // The clone writes at 10 MiB, where the golden image has a hole (reads as record 0).
    let mut trackers = vec![Tracker::new("os1", 10 * MIB), Tracker::new("base", 0)];
    let mut rng = Rng::new(0x5eed);
    let mut total_writes = 0;
    for round in 1..=5u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = trackers
            .drain(..)
            .enumerate()
            .map(|(i, t)| {
                let (port, stop, writes) = (d.port, Arc::clone(&stop), Arc::clone(&writes));
                let wrng = Rng::new(rng.next_u64());
                let seq = round * 1_000_000 + i as u64 * 100_000;
                std::thread::spawn(move || t.run(port, wrng, seq, &stop, &writes))
            })
            .collect();
        let delay = rng.range(100, 700);
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        trackers = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let n = writes.load(Ordering::Relaxed);
        eprintln!("round {round}: killed after {delay} ms, {n} writes acknowledged");
        total_writes += n;
        d.restart();
        for t in &mut trackers {
            t.check(&d);
        }
        d.verify_clean();
    }
    assert!(
        total_writes > 200,
        "the workload hardly ran ({total_writes} writes)"
    );
    assert!(
        trackers.iter().all(|t| t.flushes > 0),
        "no flush completed: {trackers:?}"
    );
    let mut c = d.nbd("bystander");
    assert_eq!(
        sha256(&c.read(0, bystander.len()).unwrap()),
        sha256(&bystander),
        "bystander changed"
    );
    c.disconnect();
    let report = d.verify_clean();
    assert_eq!(
        report["checksums_checked"], 1,
        "the golden image's checksum was compared"
    );
}

#[test]
fn kill_9_during_an_import_leaves_nothing_half_made() {
    let mut d = Daemon::start();
    let before = d.layer_files();
    let big = d.dir.join("big.raw");
    let mut data = vec![0u8; 256 * MIB as usize];
    Rng::new(99).fill(&mut data);
    std::fs::write(&big, &data).unwrap();
    drop(data);
    let import = Command::new(BIN)
        .args(["volume", "import"])
        .arg(&big)
        .args(["--name", "big", "--json"])
        .env("STORAGED_CONTROL", &d.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once the new layer holds some data, i.e. in the middle of the copy.
    let layers = d.data_dir.join("layers");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let started = std::fs::read_dir(&layers)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                use std::os::unix::fs::MetadataExt;
                e.metadata().map(|m| m.blocks() > 2048).unwrap_or(false)
            });
        if started {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    let out = import.wait_with_output().unwrap();
    eprintln!("import: {out:?}");
    assert!(
        !out.status.success(),
        "the import finished before the kill; the test proves nothing"
    );
    assert_ne!(
        d.layer_files(),
        before,
        "the kill left no partial layer to clean up"
    );
    d.restart();
    assert!(
        !d.names().contains(&"big".to_string()),
        "a half-imported volume is listed"
    );
    assert_eq!(
        d.layer_files(),
        before,
        "leftover layer files after restart"
    );
    d.verify_clean();
    // And the store still imports.
    let small = d.dir.join("small.raw");
    write_golden(&small);
    d.import(&small, "big");
    d.verify_clean();
}

#[test]
fn kill_9_during_a_clone_loop_leaves_nothing_half_made() {
    let mut d = Daemon::start();
    let src = d.dir.join("golden.raw");
    let golden = write_golden(&src);
    d.import(&src, "golden");
    let socket = d.socket.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let looper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut made = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = cli_at(
                    &socket,
                    &[
                        "volume",
                        "clone",
                        "golden",
                        "--name",
                        &format!("clone-{made}"),
                    ],
                );
                if r.code != 0 {
                    return made;
                }
                made += 1;
            }
            made
        })
    };
    std::thread::sleep(Duration::from_millis(Rng::new(3).range(300, 600)));
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    let made = looper.join().unwrap();
    assert!(made > 0, "no clone was made before the kill");
    d.restart();
    let clones: Vec<String> = d
        .names()
        .into_iter()
        .filter(|n| n.starts_with("clone-"))
        .collect();
    // Every acknowledged clone is there; at most the one in flight may be too.
    assert!(
        clones.len() == made || clones.len() == made + 1,
        "{made} made, listed {clones:?}"
    );
    for i in 0..made {
        assert!(
            clones.contains(&format!("clone-{i}")),
            "clone-{i} was acknowledged but is gone"
        );
    }
    // The golden image's data file plus a data file and a map per clone; nothing else.
    assert_eq!(
        d.layer_files().len(),
        1 + 2 * clones.len(),
        "{:?}",
        d.layer_files()
    );
    d.verify_clean();
    let last = clones.last().unwrap();
    d.export(last);
    let mut c = d.nbd(last);
    assert_eq!(c.read(0, GOLDEN_SIZE as usize).unwrap(), golden);
    c.write(0, &[1; 4096]).unwrap();
    c.flush().unwrap();
    c.disconnect();
}
