//! Times `Store::clone_volume`, the library call behind `storaged volume clone`, for frozen
//! parents of the sizes given on the command line. Used by `scripts/bench-storaged.sh`.
//!
//! ```text
//! clone_time STORE_DIR RUNS SIZE...     (sizes in bytes; STORE_DIR must not be in use)
//! ```
//!
//! For each size it makes a frozen parent (create, then snapshot: both O(1)), clones it RUNS
//! times, deletes the clones and the parent again, and prints one line per size:
//! `size=<bytes> runs=<n> min_us=.. median_us=.. p90_us=.. max_us=..`. Each clone is timed
//! alone, including its fsyncs and catalog commit, exactly as the daemon runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use storaged::store::Store;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clone_time: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: clone_time STORE_DIR RUNS SIZE...";
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let runs: usize = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let sizes = args
        .map(|s| s.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(runs > 0 && !sizes.is_empty(), usage);

    let store = Store::open(&dir)?;
    for size in sizes {
        let writable = store.create(None, size)?;
        let parent = store.snapshot(&writable.record.id, None)?;
        let mut times_us = Vec::with_capacity(runs);
        let mut clones = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let clone = store.clone_volume(&parent.record.id, None)?;
            times_us.push(start.elapsed().as_secs_f64() * 1e6);
            clones.push(clone.record.id);
        }
        for id in clones
            .iter()
            .chain([&writable.record.id, &parent.record.id])
        {
            store.delete(id)?;
        }
        times_us.sort_by(f64::total_cmp);
        let pick = |q: f64| times_us[((times_us.len() - 1) as f64 * q).round() as usize];
        println!(
            "size={size} runs={runs} min_us={:.0} median_us={:.0} p90_us={:.0} max_us={:.0}",
            pick(0.0),
            pick(0.5),
            pick(0.9),
            pick(1.0)
        );
    }
    Ok(())
}
