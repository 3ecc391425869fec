//! Hostile plan-script commands against the sandbox: each must fail safely or do no harm.
//! Needs root (CI is root); skips with a printed reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use plan_sandbox::{
    CancelFlag, Cgroups, LimitHit, Output, SandboxConfig, SandboxError, Scratch, Session,
    run_in_guest, run_local,
};

/// Each test gets its own host uid so process counts and cleanup checks do not interfere.
static NEXT_UID: AtomicU32 = AtomicU32::new(61000);

fn config() -> Option<SandboxConfig> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: the sandbox tests need root");
        return None;
    }
    if fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|s| s.trim() == "0") {
        eprintln!("skipping: user namespaces are disabled (user.max_user_namespaces = 0)");
        return None;
    }
    let cfg = SandboxConfig::default();
    if !cfg.busybox.is_file() {
        eprintln!(
            "skipping: {} missing (install busybox-static)",
            cfg.busybox.display()
        );
        return None;
    }
    let uid = NEXT_UID.fetch_add(1, Ordering::Relaxed);
    Some(SandboxConfig {
        host_uid: uid,
        host_gid: uid,
        timeout: Duration::from_secs(30),
        ..cfg
    })
}

struct Run {
    cfg: SandboxConfig,
    parent: tempfile::TempDir,
    scratch: Scratch,
}

fn setup(size: u64) -> Option<Run> {
    let cfg = config()?;
    let parent = tempfile::tempdir().ok()?;
    let scratch = Scratch::create_for(parent.path(), size, &cfg).ok()?;
    // Probe once: a kernel without user namespaces fails at a known step.
    match run_local(&cfg, &session(&cfg), &scratch, "true", None) {
        Err(SandboxError::Setup { step, source }) => {
            eprintln!("skipping: sandbox unavailable here ({step}: {source})");
            return None;
        }
        Err(e) => panic!("probe failed: {e:?}"),
        Ok(_) => {}
    }
    Some(Run {
        cfg,
        parent,
        scratch,
    })
}

/// A session with `cfg`'s limits, no deadline, not cancelled.
fn session(cfg: &SandboxConfig) -> Session {
    Session::open(cfg, None, CancelFlag::new()).expect("opening a sandbox session")
}

/// One command in a session of its own.
fn local(run: &Run, script: &str) -> Result<Output, SandboxError> {
    run_local(&run.cfg, &session(&run.cfg), &run.scratch, script, None)
}

fn guest_sh(
    cfg: &SandboxConfig,
    session: &Session,
    guest: &Path,
    script: &str,
) -> Result<Output, SandboxError> {
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
    run_in_guest(cfg, session, guest, &argv, None)
}

fn ok(run: &Run, script: &str) -> Output {
    match local(run, script) {
        Ok(out) => out,
        Err(e) => panic!("{script}: {e:?}"),
    }
}

fn output_of(result: Result<Output, SandboxError>) -> Output {
    match result {
        Ok(out) => out,
        Err(SandboxError::Limit { output, .. } | SandboxError::Timeout { output, .. }) => *output,
        Err(SandboxError::RunDeadline {
            output: Some(output),
        })
        | Err(SandboxError::Cancelled {
            output: Some(output),
        }) => *output,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn processes_of(uid: u32) -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .count()
}

fn wait_no_processes(uid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_of(uid) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_of(uid),
        0,
        "processes of sandbox uid {uid} survived the run"
    );
}

fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

// ---- positive behaviour ----

#[test]
fn echo_into_scratch_and_read_back() {
    let Some(run) = setup(16 << 20) else { return };
    let out = ok(&run, "echo hi > ./x; cat ./x; pwd; id -u; id -g");
    assert_eq!(out.stdout_text(), "hi\n/scratch\n65534\n65534\n");
    assert_eq!(
        fs::read_to_string(run.scratch.path().join("x")).unwrap(),
        "hi\n"
    );
    let meta = fs::metadata(run.scratch.path().join("x")).unwrap();
    assert_eq!(
        meta.uid(),
        run.cfg.host_uid,
        "files belong to the host sandbox uid"
    );
}

#[test]
fn source_a_file() {
    let Some(run) = setup(16 << 20) else { return };
    fs::write(
        run.scratch.path().join("esxi_unpack"),
        "greet() { echo \"hello $1\"; }\nVAR=set\n",
    )
    .unwrap();
    let out = ok(
        &run,
        "source ./esxi_unpack; greet bob; . ./esxi_unpack; echo $VAR",
    );
    assert_eq!(out.stdout_text(), "hello bob\nset\n");
}

#[test]
fn text_tools_work() {
    let Some(run) = setup(16 << 20) else { return };
    let script = r#"
        printf 'alpha\nbeta\n' > f
        sed -i 's/alpha/ALPHA/' f
        awk '{ print NR ":" $0 }' f
        grep -c ALPHA f
        cat f | sed 's/beta/BETA/' > g
        tar czf t.tgz f g && mkdir d && tar xzf t.tgz -C d && cat d/g
        gzip -c f | gunzip | md5sum | cut -c1-8
        unix2dos f
    "#;
    let out = ok(&run, script);
    let stdout = out.stdout_text();
    assert!(
        stdout.starts_with("1:ALPHA\n2:beta\n1\nALPHA\nBETA\n"),
        "{stdout}"
    );
    let expected_md5 = md5_of(b"ALPHA\nbeta\n");
    assert!(
        stdout.contains(&expected_md5[..8]),
        "{stdout} lacks {expected_md5}"
    );
    assert_eq!(
        fs::read(run.scratch.path().join("f")).unwrap(),
        b"ALPHA\r\nbeta\r\n"
    );
}

fn md5_of(data: &[u8]) -> String {
    // Computed by the host's busybox so the test needs no md5 crate.
    let mut child = std::process::Command::new("/bin/busybox")
        .arg("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn stdin_and_exit_status() {
    let Some(run) = setup(16 << 20) else { return };
    let out = run_local(
        &run.cfg,
        &session(&run.cfg),
        &run.scratch,
        "wc -l; exit 7",
        Some(b"one\ntwo\nthree\n"),
    )
    .unwrap();
    assert_eq!(out.stdout_text().trim(), "3");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn output_is_capped() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    run.cfg.output_limit = 1 << 20;
    let out = ok(&run, "yes | head -c 5000000");
    assert!(out.stdout_truncated);
    assert!(out.stdout.len() < (1 << 20) + 200);
    assert!(
        out.stdout_text()
            .ends_with("output truncated at 1048576 bytes]\n")
    );
    assert!(out.limits_hit.contains(&LimitHit::Output));
}

// ---- hostile scripts ----

#[test]
fn cannot_read_appliance_secrets() {
    let Some(run) = setup(16 << 20) else { return };
    let state = tempfile::tempdir().unwrap();
    let secret = state.path().join("admin-password");
    fs::write(&secret, "TOP-SECRET-42").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let out = output_of(local(
        &run,
        &format!(
            "cat {}; cat /etc/shadow; cat /etc/hostname",
            secret.display()
        ),
    ));
    assert!(!out.success());
    assert!(!out.stdout_text().contains("TOP-SECRET"));
    assert!(
        out.stderr_text().contains("No such file"),
        "{}",
        out.stderr_text()
    );
    let out = ok(&run, "ls /; echo --; ls /dev");
    assert_eq!(
        out.stdout_text(),
        "bin\ndev\nproc\nscratch\ntmp\n--\nfd\nfull\nnull\nrandom\nstderr\nstdin\nstdout\nurandom\nzero\n"
    );
}

#[test]
fn no_network() {
    let Some(run) = setup(16 << 20) else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = output_of(local(
        &run,
        &format!(
            "wget -T 3 -O- http://127.0.0.1:{port}/; echo hi | nc -w 2 127.0.0.1 {port}; \
             busybox wget -T 3 http://10.0.2.2/; cat /proc/net/dev | tail -n +3 | cut -d: -f1"
        ),
    ));
    assert_eq!(
        out.stdout_text().trim(),
        "lo",
        "only a loopback interface exists"
    );
    assert!(
        out.stderr_text().contains("unreachable"),
        "{}",
        out.stderr_text()
    );
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the host listener saw a connection: {other:?}"),
    }
}

#[test]
fn fork_bomb_is_contained() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    run.cfg.max_processes = 64;
    run.cfg.timeout = Duration::from_secs(15);
    let start = Instant::now();
    let result = local(&run, "f(){ f|f& };f; sleep 3; echo done");
    let elapsed = start.elapsed();
    eprintln!("fork bomb after {elapsed:?}: {result:?}");
    assert!(elapsed < Duration::from_secs(25), "took {elapsed:?}");
    match &result {
        Err(SandboxError::Timeout { .. }) => {}
        Err(SandboxError::Limit {
            limit: LimitHit::Processes,
            ..
        }) => {}
        Ok(out) => assert!(out.limits_hit.contains(&LimitHit::Processes), "{out:?}"),
        Err(e) => panic!("{e:?}"),
    }
    wait_no_processes(run.cfg.host_uid);
    // The host (and the sandbox) still work.
    assert_eq!(ok(&run, "echo alive").stdout_text(), "alive\n");
}

#[test]
fn filling_the_disk_stops_at_the_scratch_limit() {
    let Some(run) = setup(8 << 20) else { return };
    let host = nix::sys::statvfs::statvfs(run.parent.path()).unwrap();
    let before = host.blocks_available() * host.fragment_size();
    let result = local(&run, "dd if=/dev/zero of=./big bs=1M count=10000");
    let Err(SandboxError::Limit {
        limit: LimitHit::ScratchFull,
        output,
    }) = result
    else {
        panic!("expected ENOSPC: {result:?}");
    };
    assert!(output.stderr_text().contains("No space left on device"));
    let size = fs::metadata(run.scratch.path().join("big")).unwrap().len();
    assert!(size <= 8 << 20, "big is {size} bytes");
    let host = nix::sys::statvfs::statvfs(run.parent.path()).unwrap();
    let after = host.blocks_available() * host.fragment_size();
    assert!(
        before.saturating_sub(after) < 1 << 30,
        "host disk lost {} bytes",
        before - after
    );
    // /tmp is bounded too.
    let out = output_of(local(&run, "dd if=/dev/zero of=/tmp/big bs=1M count=10000"));
    assert!(out.stderr_text().contains("No space left on device"));
}

#[test]
fn symlink_to_root_sees_only_the_sandbox() {
    let Some(run) = setup(16 << 20) else { return };
    let out = output_of(local(
        &run,
        "ln -s / ./root; cat ./root/etc/hostname; ls ./root/; ls ./root/scratch/root/",
    ));
    assert!(
        out.stderr_text()
            .contains("can't open './root/etc/hostname'"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(
        out.stdout_text(),
        "bin\ndev\nproc\nscratch\ntmp\nbin\ndev\nproc\nscratch\ntmp\n"
    );
}

#[test]
fn cannot_open_other_volumes() {
    let Some(run) = setup(16 << 20) else { return };
    let out = output_of(local(
        &run,
        "mknod ./sda b 8 0; mount -t proc proc /tmp; \
         cat /dev/loop0; cat /dev/nbd0; cat /dev/vda; cat /dev/sda",
    ));
    assert!(!out.success());
    assert!(out.stdout.is_empty());
    assert!(!run.scratch.path().join("sda").exists());
    let stderr = out.stderr_text();
    for dev in ["loop0", "nbd0", "vda", "sda"] {
        assert!(
            stderr.contains(&format!("can't open '/dev/{dev}'")),
            "{stderr}"
        );
    }
}

#[test]
fn kill_reaches_only_the_sandbox() {
    let Some(run) = setup(16 << 20) else { return };
    let mut sentinel = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let out = output_of(local(
        &run,
        "kill -9 -1; kill -9 1; ls /proc | grep -c '^[0-9]'; echo still-here",
    ));
    assert!(out.stdout_text().ends_with("still-here\n"), "{out:?}");
    let visible: u32 = out
        .stdout_text()
        .lines()
        .next()
        .unwrap_or("99")
        .parse()
        .unwrap_or(99);
    assert!(visible <= 3, "the sandbox saw {visible} processes");
    assert!(
        sentinel.try_wait().unwrap().is_none(),
        "a host process was killed"
    );
    let _ = sentinel.kill();
    let _ = sentinel.wait();
}

#[test]
fn time_bomb_is_killed() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    run.cfg.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let result = local(&run, "sleep 100000");
    assert!(
        matches!(result, Err(SandboxError::Timeout { secs: 2, .. })),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    wait_no_processes(run.cfg.host_uid);
    // A background process cannot outlive the script either.
    run.cfg.timeout = Duration::from_secs(30);
    assert_eq!(
        ok(&run, "sleep 100000 & echo started").stdout_text(),
        "started\n"
    );
    wait_no_processes(run.cfg.host_uid);
}

#[test]
fn memory_bomb_is_stopped() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    run.cfg.memory_limit = 256 << 20;
    let start = Instant::now();
    let result = local(&run, "awk 'BEGIN { s = \"x\"; while (1) s = s s }'");
    let Err(SandboxError::Limit {
        limit: LimitHit::Memory,
        output,
    }) = result
    else {
        panic!("expected a memory error: {result:?}");
    };
    // With a cgroup the kernel's OOM killer ends awk (SIGKILL); without one, awk's allocation
    // fails under RLIMIT_AS and it says so.
    assert!(
        output.status.signal() == Some(libc::SIGKILL)
            || output.stderr_text().contains("out of memory"),
        "{output:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

// ---- guest commands ----

fn tiny_guest() -> tempfile::TempDir {
    let guest = tempfile::tempdir().unwrap();
    let root = guest.path();
    for dir in ["bin", "proc", "dev", "tmp", "etc", "mnt"] {
        fs::create_dir(root.join(dir)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "ls", "cat", "echo", "id", "touch", "mknod", "mount", "chown", "stat", "sleep",
        "awk", "wc", "seq",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/hostname"), "guest-host\n").unwrap();
    guest
}

#[test]
fn guest_command_is_confined_to_the_guest() {
    let Some(cfg) = config() else { return };
    let guest = tiny_guest();
    let argv = |s: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let result = run_in_guest(
        &cfg,
        &session(&cfg),
        guest.path(),
        &argv("echo $$; ls /; cat /etc/hostname; id -u; ls /dev"),
        None,
    );
    let out = match result {
        Err(SandboxError::Setup { step, source }) => {
            eprintln!("skipping: sandbox unavailable here ({step}: {source})");
            return;
        }
        other => other.unwrap(),
    };
    assert_eq!(
        out.stdout_text(),
        "1\nbin\ndev\netc\nmnt\nproc\ntmp\nguest-host\n0\nfd\nfull\nnull\nrandom\nstderr\nstdin\nstdout\nurandom\nzero\n"
    );
    // Root inside the guest can personalise it: create and chown files.
    let out = run_in_guest(
        &cfg,
        &session(&cfg),
        guest.path(),
        &argv("echo x > /etc/new; chown 1000:1000 /etc/new; cat"),
        Some(b"piped\n"),
    )
    .unwrap();
    assert_eq!(out.stdout_text(), "piped\n");
    let meta = fs::metadata(guest.path().join("etc/new")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    // ...but cannot reach the host.
    let out = run_in_guest(
        &cfg,
        &session(&cfg),
        guest.path(),
        &argv(
            "mknod /tmp/sda b 8 0 && cat /tmp/sda; mount -t tmpfs t /mnt; echo h > /proc/sys/kernel/hostname; \
             cat /dev/vda; exit 3",
        ),
        None,
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let stderr = out.stderr_text();
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(
        mounts_under(guest.path()).is_empty(),
        "mounts left in the guest: {:?}",
        mounts_under(guest.path())
    );
    assert!(
        fs::read_dir(guest.path().join("dev"))
            .unwrap()
            .next()
            .is_none(),
        "the guest's /dev was written to"
    );
    assert!(
        fs::read_dir(guest.path().join("proc"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn leftovers_of_a_crash_are_cleaned_up() {
    let Some(cfg) = config() else { return };
    let parent = tempfile::tempdir().unwrap();
    let scratch = Scratch::create_for(parent.path(), 1 << 20, &cfg).unwrap();
    fs::write(scratch.path().join("f"), "x").unwrap();
    // A crash: the scratch is never dropped.
    std::mem::forget(scratch);
    assert_eq!(mounts_under(parent.path()).len(), 1);
    assert_eq!(plan_sandbox::cleanup_leftovers(parent.path()).unwrap(), 1);
    assert!(mounts_under(parent.path()).is_empty());
    assert!(fs::read_dir(parent.path()).unwrap().next().is_none());
}

// ---- limits per run ----

/// A run's processes, all in one cgroup: guest `sh` runs as the host's uid 0, which
/// RLIMIT_NPROC does not bind, so only the cgroup's pids.max stops a fork loop there.
#[test]
fn guest_processes_are_bounded_for_the_run() {
    let Some(mut cfg) = config() else { return };
    if let Cgroups::Unavailable(why) = &cfg.cgroups {
        eprintln!("skipping: no cgroup here ({why})");
        return;
    }
    cfg.max_processes = 64;
    cfg.timeout = Duration::from_secs(20);
    let guest = tiny_guest();
    let session = session(&cfg);
    let out = output_of(guest_sh(
        &cfg,
        &session,
        guest.path(),
        "n=0; while [ $n -lt 300 ]; do sleep 30 & n=$((n+1)); done; echo started $n",
    ));
    assert!(
        out.limits_hit.contains(&LimitHit::Processes),
        "300 guest processes under a limit of 64: {out:?}"
    );
    // The next command of the run works.
    let out = guest_sh(&cfg, &session, guest.path(), "echo next").unwrap();
    assert_eq!(out.stdout_text(), "next\n");
}

/// Six processes of 100 MB each fit under a per-process limit of 256 MiB, not under a
/// run-wide one.
#[test]
fn memory_is_bounded_for_the_whole_run() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    if let Cgroups::Unavailable(why) = &run.cfg.cgroups {
        eprintln!("skipping: no cgroup here ({why})");
        return;
    }
    run.cfg.memory_limit = 256 << 20;
    let hog =
        "awk 'BEGIN { s = \"x\"; while (length(s) < 100000000) s = s s; system(\"sleep 3\") }'";
    let script = format!("for i in 1 2 3 4 5 6; do {hog} & done; wait; echo done");
    let out = output_of(local(&run, &script));
    assert!(
        out.limits_hit.contains(&LimitHit::Memory),
        "six 128 MB strings under a run limit of 256 MiB: {out:?}"
    );
    // The guest side shares the bound.
    let guest = tiny_guest();
    let session = session(&run.cfg);
    let out = output_of(guest_sh(&run.cfg, &session, guest.path(), &script));
    assert!(out.limits_hit.contains(&LimitHit::Memory), "{out:?}");
}

#[test]
fn no_descriptor_of_the_host_is_inherited() {
    let Some(run) = setup(16 << 20) else { return };
    // A descriptor without close-on-exec, as a careless library (or deployd's parent) leaves.
    let (r, w) = nix::unistd::pipe().unwrap();
    let leaked = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_DUPFD(200)).unwrap();
    let out = ok(&run, "ls /proc/self/fd/");
    let fds: Vec<String> = out.stdout_text().lines().map(str::to_owned).collect();
    assert!(
        !fds.contains(&leaked.to_string()),
        "descriptor {leaked} reached the sandbox: {fds:?}"
    );
    // 0, 1, 2 and the directory ls is reading.
    assert!(fds.len() <= 4, "{fds:?}");
    let guest = tiny_guest();
    if !matches!(run.cfg.cgroups, Cgroups::Unavailable(_)) {
        let out = guest_sh(
            &run.cfg,
            &session(&run.cfg),
            guest.path(),
            "ls /proc/self/fd/",
        )
        .unwrap();
        assert!(
            out.stdout_text().lines().count() <= 4,
            "{}",
            out.stdout_text()
        );
    }
    drop((r, w));
    nix::unistd::close(leaked).unwrap();
}

#[test]
fn proc_does_not_show_the_host() {
    let Some(run) = setup(16 << 20) else { return };
    let out = ok(
        &run,
        "for f in cmdline config.gz partitions diskstats modules swaps devices; do \
           echo $f $(cat /proc/$f 2>/dev/null | wc -c); done",
    );
    for line in out.stdout_text().lines() {
        assert!(line.ends_with(" 0"), "/proc shows the host: {line}");
    }
    assert!(!fs::read_to_string("/proc/cmdline").unwrap().is_empty());
}

#[test]
fn cancel_stops_the_running_command() {
    let Some(run) = setup(16 << 20) else { return };
    let cancel = CancelFlag::new();
    let session = Session::open(&run.cfg, None, cancel.clone()).unwrap();
    let flag = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.cancel();
    });
    let start = Instant::now();
    let result = run_local(
        &run.cfg,
        &session,
        &run.scratch,
        "echo begun; sleep 1000",
        None,
    );
    canceller.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        start.elapsed()
    );
    let Err(SandboxError::Cancelled { output: Some(out) }) = result else {
        panic!("{result:?}");
    };
    assert_eq!(out.stdout_text(), "begun\n");
    wait_no_processes(run.cfg.host_uid);
    // The session refuses to start anything more.
    let next = run_local(&run.cfg, &session, &run.scratch, "echo more", None);
    assert!(
        matches!(next, Err(SandboxError::Cancelled { output: None })),
        "{next:?}"
    );
}

#[test]
fn the_run_deadline_cuts_every_command() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    run.cfg.timeout = Duration::from_secs(600);
    let deadline = Instant::now() + Duration::from_secs(1);
    let session = Session::open(&run.cfg, Some(deadline), CancelFlag::new()).unwrap();
    let result = run_local(&run.cfg, &session, &run.scratch, "sleep 1000", None);
    assert!(
        matches!(result, Err(SandboxError::RunDeadline { output: Some(_) })),
        "{result:?}"
    );
    assert!(Instant::now() < deadline + Duration::from_secs(4));
    wait_no_processes(run.cfg.host_uid);
    let next = run_local(&run.cfg, &session, &run.scratch, "echo more", None);
    assert!(
        matches!(next, Err(SandboxError::RunDeadline { output: None })),
        "{next:?}"
    );
}

#[test]
fn without_a_cgroup_guest_commands_are_refused() {
    let Some(mut run) = setup(16 << 20) else {
        return;
    };
    run.cfg.cgroups = Cgroups::Unavailable("none in this test".into());
    let session = session(&run.cfg);
    assert!(session.cgroup().is_none());
    let guest = tiny_guest();
    let result = guest_sh(&run.cfg, &session, guest.path(), "echo hi");
    let Err(e @ SandboxError::NoCgroup(_)) = result else {
        panic!("{result:?}");
    };
    assert!(e.to_string().contains("none in this test"), "{e}");
    // Local commands still run, as the unprivileged sandbox user.
    assert_eq!(ok(&run, "id -u").stdout_text(), "65534\n");
}
