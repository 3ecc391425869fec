//! Runs jobs on a few threads, each only after the jobs it depends on have finished: how
//! boot loads kernel modules. Loading is mostly the kernel hashing and checking a module's
//! signature and linking it, which for independent modules (ext4 beside the NIC drivers)
//! runs in parallel on the appliance's CPUs. Of the jobs that may start, the one heading the
//! heaviest chain of jobs that wait for it goes first (list scheduling by critical path), so
//! the long chain (crc32c, jbd2, ext4) is not left for last.

use std::sync::{Condvar, Mutex};

struct Board<R> {
    started: Vec<bool>,
    finished: Vec<bool>,
    /// (job, result) in the order the jobs finished.
    results: Vec<(usize, R)>,
}

impl<R> Board<R> {
    /// Of the jobs not yet started whose dependencies have all finished, the one with the
    /// highest priority (the lowest index among equals).
    fn next_ready(&self, deps: &[Vec<usize>], priority: &[u64]) -> Option<usize> {
        (0..self.started.len())
            .filter(|&i| !self.started[i] && earlier(&deps[i], i).all(|&d| self.finished[d]))
            .max_by(|&a, &b| priority[a].cmp(&priority[b]).then(b.cmp(&a)))
    }
}

/// Each job's weight plus the heaviest chain of jobs that wait for it, directly or not.
fn critical_path(deps: &[Vec<usize>], weights: &[u64]) -> Vec<u64> {
    let n = deps.len();
    let weight = |i: usize| weights.get(i).copied().unwrap_or(0);
    let mut path: Vec<u64> = (0..n).map(weight).collect();
    // Dependents have higher indices: going down, each job's own path is final already.
    for i in (0..n).rev() {
        for &d in earlier(&deps[i], i) {
            path[d] = path[d].max(weight(d).saturating_add(path[i]));
        }
    }
    path
}

/// A job's dependencies that can hold it back: those with lower indices (see [`run`]).
fn earlier(deps: &[usize], i: usize) -> impl Iterator<Item = &usize> {
    deps.iter().filter(move |&&d| d < i)
}

/// Runs `job(i)` for every `i` in `0..deps.len()` on at most `workers` threads and returns
/// the results in index order. Job `i` starts only after every job in `deps[i]` has finished,
/// whatever it returned (a module whose dependency failed is still tried, and the kernel
/// names what is missing). The jobs are in a dependency order already, so only lower
/// indices count as dependencies; that also means every job eventually runs. `weights`
/// estimate each job's cost (a module's size; missing ones count 0) and only set the order.
pub fn run<R: Send>(
    deps: &[Vec<usize>],
    weights: &[u64],
    workers: usize,
    job: impl Fn(usize) -> R + Sync,
) -> Vec<R> {
    let n = deps.len();
    let priority = critical_path(deps, weights);
    let board = Mutex::new(Board {
        started: vec![false; n],
        finished: vec![false; n],
        results: Vec::with_capacity(n),
    });
    let changed = Condvar::new();
    let worker = || {
        let mut b = board.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(i) = b.next_ready(deps, &priority) {
                b.started[i] = true;
                drop(b);
                let r = job(i);
                b = board.lock().unwrap_or_else(|p| p.into_inner());
                b.finished[i] = true;
                b.results.push((i, r));
                changed.notify_all();
            } else if b.started.iter().all(|&s| s) {
                return;
            } else {
                b = changed.wait(b).unwrap_or_else(|p| p.into_inner());
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..workers.clamp(1, n.max(1)) {
            s.spawn(worker);
        }
        worker();
    });
    // The workers returned only once every job had started, and the scope waited for them:
    // every job has its result here.
    let mut results = board
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .results;
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Which jobs have finished, for threads that wait for a few of them while the rest run (boot
/// mounts the config partition once the disk and FAT drivers are in, while ext4 loads). The
/// job itself marks its index when done.
#[derive(Debug)]
pub struct Finished {
    done: Mutex<Vec<bool>>,
    changed: Condvar,
}

impl Finished {
    pub fn new(jobs: usize) -> Self {
        Self {
            done: Mutex::new(vec![false; jobs]),
            changed: Condvar::new(),
        }
    }

    pub fn mark(&self, job: usize) {
        let mut d = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = d.get_mut(job) {
            *f = true;
        }
        self.changed.notify_all();
    }

    /// Blocks until every job in `jobs` is marked (indices out of range count as done).
    pub fn wait_for(&self, jobs: &[usize]) {
        let mut d = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !jobs.iter().all(|&j| d.get(j).is_none_or(|&f| f)) {
            d = self.changed.wait(d).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn every_job_runs_once_and_results_keep_their_order() {
        let runs = AtomicUsize::new(0);
        let out = run(&[vec![], vec![0], vec![], vec![1, 2]], &[], 3, |i| {
            runs.fetch_add(1, Ordering::SeqCst);
            i * 10
        });
        assert_eq!(out, vec![0, 10, 20, 30]);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert!(run(&[], &[], 4, |i| i).is_empty());
    }

    #[test]
    fn a_job_starts_only_after_its_dependencies_finished() {
        // 0 <- 1 <- 3, 2 <- 3, 4 alone; slow jobs give a wrong order every chance to show.
        let deps = vec![vec![], vec![0], vec![], vec![1, 2], vec![]];
        let log = Mutex::new(Vec::new());
        run(&deps, &[5, 1, 3, 2, 9], 4, |i| {
            log.lock().unwrap().push(("start", i));
            std::thread::sleep(Duration::from_millis(20));
            log.lock().unwrap().push(("end", i));
        });
        let log = log.into_inner().unwrap();
        let at = |what, i| log.iter().position(|e| *e == (what, i)).unwrap();
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                assert!(
                    at("end", d) < at("start", i),
                    "{i} started before {d} ended: {log:?}"
                );
            }
        }
    }

    #[test]
    fn independent_jobs_overlap_and_one_worker_runs_in_order() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        run(&[vec![], vec![], vec![], vec![]], &[], 2, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Stay until another job runs beside this one (a busy machine may be slow to
            // schedule the second worker), or give up after 2 s.
            let until = std::time::Instant::now() + Duration::from_secs(2);
            while most.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);

        let order = Mutex::new(Vec::new());
        run(&[vec![], vec![], vec![0], vec![]], &[], 1, |i| {
            order.lock().unwrap().push(i)
        });
        assert_eq!(order.into_inner().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn the_head_of_the_heaviest_chain_goes_first() {
        // Light modules 0..3 come first in the list; 4 (jbd2) -> 5 (ext4) is the long chain.
        let deps = vec![vec![], vec![], vec![], vec![], vec![], vec![4]];
        let weights = [10, 10, 10, 10, 300, 2000];
        assert_eq!(
            critical_path(&deps, &weights),
            vec![10, 10, 10, 10, 2300, 2000]
        );
        let order = Mutex::new(Vec::new());
        run(&deps, &weights, 1, |i| order.lock().unwrap().push(i));
        assert_eq!(order.into_inner().unwrap(), vec![4, 5, 0, 1, 2, 3]);
        // A job reached by two chains counts the heavier.
        let deps = vec![vec![], vec![0], vec![0], vec![1]];
        assert_eq!(critical_path(&deps, &[1, 2, 50, 4]), vec![51, 6, 50, 4]);
    }

    #[test]
    fn a_waiter_wakes_when_its_jobs_are_done_not_all_jobs() {
        let finished = Finished::new(3);
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                run(&[vec![], vec![], vec![]], &[], 1, |i| {
                    // Job 2 is slow: the waiter for 0 and 1 must not wait for it.
                    if i == 2 {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    order.lock().unwrap().push(format!("job {i}"));
                    finished.mark(i);
                })
            });
            finished.wait_for(&[0, 1, 7]);
            order.lock().unwrap().push("waiter".into());
        });
        assert_eq!(
            order.into_inner().unwrap(),
            ["job 0", "job 1", "waiter", "job 2"]
        );
        finished.wait_for(&[]);
    }

    #[test]
    fn a_dependency_on_a_later_job_cannot_deadlock() {
        // Not a dependency order: the forward edge is ignored rather than waited on forever.
        assert_eq!(run(&[vec![1], vec![0]], &[], 2, |i| i), vec![0, 1]);
    }
}
