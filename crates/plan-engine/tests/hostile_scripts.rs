//! Plan scripts written to hurt the appliance, run for real against a disk image: each must
//! end (never block deployd), within its bounds, with an error that says what happened, and
//! leave the engine able to run the next script. Needs root; skips with a reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plan_engine::exec::Source;
use plan_engine::run::{CancelFlag, Outcome, RunConfig, run_on_file};
use plan_sandbox::Cgroups;

mod common;
use common::{can_run, config, linux_image, with_ext4_root};

/// Runs `script` on `image` on another thread; a run that does not end within `limit` fails
/// the test instead of hanging it (the bug this file guards against is a run that blocks).
fn run_within(
    cfg: RunConfig,
    image: &Path,
    script: &str,
    cancel: CancelFlag,
    limit: Duration,
) -> (Outcome, Duration) {
    let (tx, rx) = mpsc::channel();
    let image = image.to_path_buf();
    let sources = vec![Source {
        name: "hostile".into(),
        text: script.to_string(),
    }];
    let start = Instant::now();
    std::thread::spawn(move || {
        let out = run_on_file(&cfg, &image, &sources, vec![], &cancel);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the run did not end within {limit:?}: it blocks"))
        .expect("the run could not start");
    (out, start.elapsed())
}

struct Rig {
    dir: tempfile::TempDir,
    image: std::path::PathBuf,
}

fn rig() -> Option<Rig> {
    if !can_run() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = linux_image(dir.path())?;
    Some(Rig { dir, image })
}

impl Rig {
    fn config(&self) -> RunConfig {
        config(self.dir.path())
    }

    fn run(&self, cfg: RunConfig, script: &str) -> (Outcome, Duration) {
        run_within(
            cfg,
            &self.image,
            script,
            CancelFlag::new(),
            Duration::from_secs(120),
        )
    }

    /// A normal script still works afterwards.
    fn assert_next_run_works(&self) {
        let (out, _) = self.run(
            self.config(),
            "mount /dev/sda2 /\nwrite /etc/next \"ok\"\ncat /etc/next\n",
        );
        out.result
            .as_ref()
            .unwrap_or_else(|f| panic!("{f}\n{}", out.log));
        assert!(out.log.contains("ok"), "{}", out.log);
        assert!(out.cleanup_errors.is_empty(), "{:?}", out.cleanup_errors);
    }
}

fn has_cgroup() -> bool {
    match Cgroups::detect() {
        Cgroups::Unavailable(why) => {
            eprintln!("SKIPPED: no cgroup here ({why})");
            false
        }
        _ => true,
    }
}

#[test]
fn fifos_in_the_guest_and_in_scratch_are_refused_by_name() {
    let Some(rig) = rig() else { return };
    if !has_cgroup() {
        return;
    }
    let script = r#"
mount /dev/sda2 /
sh "mkfifo /p"
-cat /p
-download /p ./copy
-cp /p /etc/p2
-copy-out /p ./
!mkfifo ./f
-upload ./f /etc/x
-copy-in ./f /etc
-compress-out gzip /p ./p.gz
write /etc/done "yes"
"#;
    let (out, _) = rig.run(rig.config(), script);
    out.result
        .as_ref()
        .unwrap_or_else(|f| panic!("{f}\n{}", out.log));
    let log = &out.log;
    assert!(
        log.contains("/p: is a FIFO (named pipe), not a regular file"),
        "{log}"
    );
    assert!(
        log.contains("f: is a FIFO (named pipe), not a regular file"),
        "{log}"
    );
    assert_eq!(
        log.matches("is a FIFO").count(),
        7,
        "each of the seven reads and writes refused: {log}"
    );
    rig.assert_next_run_works();
}

#[test]
fn output_is_bounded_per_command_and_per_run() {
    let Some(rig) = rig() else { return };
    let mut cfg = rig.config();
    cfg.limits.command_output = 64 << 10;
    cfg.limits.run_log = 512 << 10;
    cfg.sandbox.output_limit = 1 << 20;
    let line = "!head -c 3000000 /dev/zero | tr '\\0' x\n";
    let (out, _) = rig.run(cfg.clone(), &line.repeat(12));
    out.result
        .as_ref()
        .unwrap_or_else(|f| panic!("{f}\n{}", &out.log[..2000]));
    assert!(
        out.log.len() <= cfg.limits.run_log + 1024,
        "log of {} bytes",
        out.log.len()
    );
    assert!(
        out.log
            .contains("more bytes of this command's output are not kept"),
        "no per-command marker"
    );
    assert!(
        out.log
            .contains("the activity log reached its limit of 524288 bytes"),
        "no per-run marker"
    );
    rig.assert_next_run_works();
}

#[test]
fn glob_counts_its_combinations_before_expanding_them() {
    let Some(rig) = rig() else { return };
    let script = r#"
mount /dev/sda2 /
mkdir /d
<!for i in $(seq 100); do echo "touch /d/f$i"; done
glob echo /d/* /d/* /d/*
"#;
    let (out, took) = rig.run(rig.config(), script);
    let failure = out
        .result
        .as_ref()
        .expect_err("a million combinations must be refused");
    assert!(
        failure.message.contains("100 × 100 × 100") && failure.message.contains("1000000"),
        "{failure}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    // A glob within the bound still runs every combination.
    let (out, _) = rig.run(
        rig.config(),
        "mount /dev/sda2 /\nmkdir /e\ntouch /e/a\ntouch /e/b\nglob echo /e/* /e/*\n",
    );
    out.result.as_ref().unwrap_or_else(|f| panic!("{f}"));
    for pair in ["/e/a /e/a", "/e/a /e/b", "/e/b /e/a", "/e/b /e/b"] {
        assert!(out.log.contains(pair), "{pair}: {}", out.log);
    }
}

#[test]
fn mounts_are_bounded_and_all_undone() {
    let Some(rig) = rig() else { return };
    // Other tests run beside this one: count only mounts under this test's directory.
    let mounts_here = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(rig.dir.path().to_str().unwrap()))
            .count()
    };
    let script = r#"
mount /dev/sda2 /
<!for i in $(seq 40); do echo "mkdir-p /m$i"; echo "mount /dev/sda2 /m$i"; done
"#;
    let (out, _) = rig.run(rig.config(), script);
    let failure = out
        .result
        .as_ref()
        .expect_err("40 nested mounts must be refused");
    assert!(out.log.contains("mount /dev/sda2 /m31\n"), "{}", out.log);
    assert!(
        failure
            .message
            .contains("mounts at most 32 filesystems at once"),
        "{failure}"
    );
    assert!(out.cleanup_errors.is_empty(), "{:?}", out.cleanup_errors);
    assert_eq!(mounts_here(), 0, "mounts left behind");
    rig.assert_next_run_works();
}

#[test]
fn the_whole_run_has_a_wall_clock_limit() {
    let Some(rig) = rig() else { return };
    let mut cfg = rig.config();
    cfg.run_timeout = Duration::from_secs(2);
    cfg.sandbox.timeout = Duration::from_secs(600);
    // `-` ignores each command's failure, but not the run's deadline.
    let (out, took) = rig.run(cfg, "-!sleep 100000\n-!sleep 100000\n-!sleep 100000\n");
    let failure = out
        .result
        .as_ref()
        .expect_err("the run must stop at its deadline");
    assert!(
        failure.message.contains("wall-clock limit of 2 s"),
        "{failure}\n{}",
        out.log
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    rig.assert_next_run_works();
}

#[test]
fn a_cancelled_run_stops_within_seconds() {
    let Some(rig) = rig() else { return };
    let cancel = CancelFlag::new();
    let flag = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        flag.cancel();
    });
    let (out, took) = run_within(
        rig.config(),
        &rig.image,
        "mount /dev/sda2 /\n!sleep 100000\nwrite /etc/never \"x\"\n",
        cancel,
        Duration::from_secs(120),
    );
    let failure = out.result.as_ref().expect_err("a cancelled run fails");
    assert!(failure.message.contains("cancelled"), "{failure}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(!out.log.contains("/etc/never \"x\"\n["), "{}", out.log);
    rig.assert_next_run_works();
}

#[test]
fn guest_sh_processes_are_bounded_for_the_run() {
    let Some(rig) = rig() else { return };
    if !has_cgroup() {
        return;
    }
    let mut cfg = rig.config();
    cfg.sandbox.max_processes = 32;
    let script = r#"
mount /dev/sda2 /
-sh "i=0; while [ $i -lt 300 ]; do sleep 60 & i=$((i+1)); done; echo started $i"
sh "echo after > /etc/after"
"#;
    let (out, took) = rig.run(cfg, script);
    out.result
        .as_ref()
        .unwrap_or_else(|f| panic!("{f}\n{}", out.log));
    assert!(out.log.contains("process limit"), "{}", out.log);
    assert!(!out.log.contains("started 300"), "{}", out.log);
    assert!(took < Duration::from_secs(60), "took {took:?}");
    rig.assert_next_run_works();
}

/// Runs end with their writes on the volume, even while other runs' sandboxes start and
/// stop: a sandbox's copy of the host's mounts once kept a finished run's filesystem alive
/// past its unmount, and the run's last writes never reached the volume.
#[test]
fn concurrent_runs_write_everything_before_they_end() {
    let Some(rig) = rig() else { return };
    let images: Vec<std::path::PathBuf> = (0..4)
        .map(|i| {
            let copy = rig.dir.path().join(format!("copy{i}.raw"));
            std::fs::copy(&rig.image, &copy).unwrap();
            copy
        })
        .collect();
    for round in 0..3 {
        let threads: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let (cfg, image) = (rig.config(), image.clone());
                std::thread::spawn(move || {
                    let script = format!(
                        "mount /dev/sda2 /\n!sleep 0.{i}\nwrite /etc/marker \"run {i} round {round}\"\n\
                         !sleep 0.{}\n",
                        3 - i
                    );
                    let (out, _) =
                        run_within(cfg, &image, &script, CancelFlag::new(), Duration::from_secs(120));
                    out.result.unwrap_or_else(|f| panic!("{f}\n{}", out.log));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for (i, image) in images.iter().enumerate() {
            let got = with_ext4_root(image, rig.dir.path(), |root| {
                std::fs::read_to_string(root.join("etc/marker")).unwrap_or_default()
            });
            assert_eq!(got, format!("run {i} round {round}"), "image {i}");
        }
    }
}
