//! Applies the restart policy to real child processes. The owner's loop reaps children
//! (init reaps every zombie with `waitpid(-1)`, so this module never waits on a pid itself)
//! and passes each exit to `child_exited`, then calls `tick` to start what is due.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::alert;
use super::state::{Policy, Supervision};
use crate::services::{GraphError, Output, ServiceSpec, start_order};
use crate::sys::{self, ExitKind};

#[derive(Debug)]
struct Managed {
    spec: ServiceSpec,
    sup: Supervision,
    pid: Option<i32>,
    ready: bool,
    starts: u64,
    last_exit: Option<ExitKind>,
}

/// Events kept in memory (PID 1 runs for months; the console service restarts often).
const MAX_EVENTS: usize = 1000;

#[derive(Debug)]
pub struct Runtime {
    services: Vec<Managed>,
    alert_dir: PathBuf,
    origin: Instant,
    /// False once shutdown began: nothing is started any more.
    wanted: bool,
    events: Vec<String>,
}

impl Runtime {
    /// Services are kept in dependency order; stop order is the reverse.
    pub fn new(
        services: &[ServiceSpec],
        policy: Policy,
        alert_dir: PathBuf,
    ) -> Result<Self, GraphError> {
        let services = start_order(services)?
            .into_iter()
            .map(|spec| Managed {
                spec,
                sup: Supervision::new(policy.clone()),
                pid: None,
                ready: false,
                starts: 0,
                last_exit: None,
            })
            .collect();
        Ok(Runtime {
            services,
            alert_dir,
            origin: Instant::now(),
            wanted: true,
            events: Vec::new(),
        })
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn log(&mut self, line: String) {
        crate::log::say(&line);
        if self.events.len() >= MAX_EVENTS {
            self.events.drain(..MAX_EVENTS / 2);
        }
        self.events.push(line);
    }

    /// What happened so far, one line per start, exit, alert and stop.
    pub fn events(&self) -> &[String] {
        &self.events
    }

    fn find(&self, name: &str) -> Option<&Managed> {
        self.services.iter().find(|m| m.spec.name == name)
    }

    pub fn pid_of(&self, name: &str) -> Option<i32> {
        self.find(name).and_then(|m| m.pid)
    }

    pub fn starts(&self, name: &str) -> u64 {
        self.find(name).map_or(0, |m| m.starts)
    }

    pub fn last_exit(&self, name: &str) -> Option<ExitKind> {
        self.find(name).and_then(|m| m.last_exit)
    }

    pub fn is_ready(&self, name: &str) -> bool {
        self.find(name).is_some_and(|m| m.ready)
    }

    /// Whether `name` has been started at least once (it may be running, ready or not, or
    /// waiting to be restarted).
    pub fn was_started(&self, name: &str) -> bool {
        self.find(name).is_some_and(|m| m.starts > 0)
    }

    pub fn all_ready(&self) -> bool {
        self.services.iter().all(|m| m.ready)
    }

    /// One line per service for the console's details: name, state, pid, restarts.
    pub fn status_text(&self) -> String {
        let mut out = String::new();
        for m in &self.services {
            let state = match (m.pid, m.ready, m.sup.in_crash_loop()) {
                (_, _, true) => "CRASH-LOOP",
                (Some(_), true, _) => "running",
                (Some(_), false, _) => "starting",
                (None, _, _) if m.starts == 0 => "waiting",
                (None, _, _) => "restarting",
            };
            let pid = m.pid.map_or("-".to_owned(), |p| p.to_string());
            out.push_str(&format!(
                "{:<10} {state:<11} pid {pid:<7} restarts {}\n",
                m.spec.name,
                m.starts.saturating_sub(1)
            ));
        }
        out
    }

    /// Probes readiness of started services and starts those whose dependencies are ready
    /// and whose first start or backoff is due.
    pub fn tick(&mut self) {
        let now = self.now();
        for i in 0..self.services.len() {
            let m = &self.services[i];
            if m.pid.is_some() {
                if !m.ready && m.spec.readiness.probe() {
                    self.services[i].ready = true;
                    let name = self.services[i].spec.name.clone();
                    self.log(format!("{name} is ready"));
                }
                continue;
            }
            let first = m.starts == 0;
            let due = self.wanted && (first || m.sup.restart_due(now));
            let deps_ready = m.spec.after.iter().all(|d| self.is_ready(d))
                && m.spec.after_started.iter().all(|d| self.was_started(d));
            if due && deps_ready {
                self.spawn(i, now);
            }
        }
    }

    fn spawn(&mut self, i: usize, now: Duration) {
        let m = &mut self.services[i];
        m.starts += 1;
        m.ready = false;
        m.sup.started(now);
        let name = m.spec.name.clone();
        let mut cmd = Command::new(&m.spec.argv[0]);
        cmd.args(&m.spec.argv[1..]).stdin(Stdio::null());
        let output = m.spec.output.clone();
        sys::clear_signal_mask_on_exec(&mut cmd);
        let result = connect_output(&mut cmd, &output).and_then(|()| cmd.spawn());
        match result {
            Ok(child) => {
                // The Child handle is dropped without waiting: the owner's reaper collects
                // the exit status through waitpid(-1).
                let pid = i32::try_from(child.id()).unwrap_or(-1);
                self.services[i].pid = Some(pid);
                self.log(format!("started {name} (pid {pid})"));
            }
            Err(e) => {
                self.log(format!("cannot start {name}: {e}"));
                self.crashed(i, now, format!("cannot start: {e}"));
            }
        }
    }

    fn crashed(&mut self, i: usize, now: Duration, how: String) {
        let name = self.services[i].spec.name.clone();
        if let Some(a) = self.services[i].sup.exited(now, &how) {
            let line = alert::log_line(&name, &a);
            crate::log::announce(&line);
            self.events.push(line);
            if let Err(e) = alert::record(&self.alert_dir, &name, &a) {
                self.log(format!("cannot write alert for {name}: {e}"));
            }
        }
        if let Some(at) = self.services[i].sup.restart_at() {
            let delay = at.saturating_sub(now);
            self.log(format!("restarting {name} in {} ms", delay.as_millis()));
        }
    }

    /// Routes a reaped child's exit; `false` if it was not one of ours (an orphan).
    pub fn child_exited(&mut self, pid: i32, kind: ExitKind) -> bool {
        let Some(i) = self.services.iter().position(|m| m.pid == Some(pid)) else {
            return false;
        };
        let now = self.now();
        let m = &mut self.services[i];
        m.pid = None;
        m.ready = false;
        m.last_exit = Some(kind);
        let name = m.spec.name.clone();
        self.log(format!("{name} (pid {pid}) ended: {kind}"));
        self.crashed(i, now, kind.to_string());
        true
    }

    /// Reaps every exited child and routes the exits; then starts what is due.
    pub fn pump(&mut self) {
        for (pid, kind) in sys::reap_all() {
            self.child_exited(pid, kind);
        }
        self.tick();
    }

    /// The next time `tick` has something scheduled (a restart), if any.
    pub fn next_restart(&self) -> Option<Instant> {
        self.services
            .iter()
            .filter_map(|m| m.sup.restart_at())
            .min()
            .map(|d| self.origin + d)
    }

    /// Sends `signal` to the running services among `names`.
    pub fn signal(&mut self, names: &[&str], signal: libc::c_int) {
        let running: Vec<(String, i32)> = self
            .services
            .iter()
            .filter(|m| names.contains(&m.spec.name.as_str()))
            .filter_map(|m| m.pid.map(|p| (m.spec.name.clone(), p)))
            .collect();
        for (name, pid) in running {
            match sys::kill(pid, signal) {
                Ok(()) => self.log(format!("signal {signal} forwarded to {name}")),
                Err(e) => self.log(format!("cannot signal {name}: {e}")),
            }
        }
    }

    /// Stops every service in reverse start order: SIGTERM, then SIGKILL after `grace`.
    /// Reaps as it waits, so other zombies are collected too.
    pub fn stop_all(&mut self, grace: Duration) {
        self.wanted = false;
        for i in (0..self.services.len()).rev() {
            self.services[i].sup.stop_requested();
            let Some(pid) = self.services[i].pid else {
                continue;
            };
            let name = self.services[i].spec.name.clone();
            self.log(format!("stopping {name} (pid {pid})"));
            if matches!(self.services[i].spec.output, Output::Terminal(_)) {
                // Its exit hangs the terminal up, which discards unsent console lines.
                crate::log::drain(CONSOLE_DRAIN);
            }
            let _ = sys::kill(pid, libc::SIGTERM);
            if !self.wait_exit(i, grace) {
                self.log(format!(
                    "{name} did not stop in {} ms; killing",
                    grace.as_millis()
                ));
                let _ = sys::kill(pid, libc::SIGKILL);
                self.wait_exit(i, Duration::from_secs(5));
            }
        }
    }

    fn wait_exit(&mut self, i: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            for (pid, kind) in sys::reap_all() {
                self.child_exited(pid, kind);
            }
            if self.services[i].pid.is_none() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Longest wait for the console to send init's lines before a terminal service is stopped.
const CONSOLE_DRAIN: Duration = Duration::from_secs(2);

/// Largest log kept as is at a (re)start; a larger one is moved to `<name>.log.1`.
const LOG_ROTATE_BYTES: u64 = 4 << 20;

/// Points the command's standard streams where the service's output goes.
fn connect_output(cmd: &mut Command, output: &Output) -> std::io::Result<()> {
    use std::fs::OpenOptions;
    match output {
        Output::Inherit => {}
        Output::Log(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
                let mut old = path.clone().into_os_string();
                old.push(".1");
                std::fs::rename(path, old)?;
            }
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            cmd.stdout(f.try_clone()?).stderr(f);
        }
        Output::Terminal(tty) => {
            let f = OpenOptions::new().read(true).write(true).open(tty)?;
            cmd.stdin(f.try_clone()?).stdout(f.try_clone()?).stderr(f);
            sys::new_session_on_stdin_tty(cmd);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{Output, Readiness};
    use std::sync::Mutex;

    /// waitpid(-1) reaps any child of the test process: one runtime test at a time.
    static CHILDREN: Mutex<()> = Mutex::new(());

    fn sh(name: &str, script: &str, after: &[&str], readiness: Readiness) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            after_started: vec![],
            readiness,
            output: Output::Inherit,
        }
    }

    fn fast_policy() -> Policy {
        Policy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            reset_after: Duration::from_secs(60),
            crash_loop_count: 4,
            crash_loop_window: Duration::from_secs(30),
        }
    }

    fn pump_until(rt: &mut Runtime, limit: Duration, done: impl Fn(&Runtime) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            rt.pump();
            if done(rt) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_crash_is_restarted_after_the_backoff_and_a_loop_alerts() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let alerts = tempfile::tempdir().unwrap();
        let svc = sh("crasher", "exit 1", &[], Readiness::Started);
        let mut rt = Runtime::new(&[svc], fast_policy(), alerts.path().to_owned()).unwrap();
        let t0 = Instant::now();
        rt.pump();
        assert_eq!(rt.starts("crasher"), 1);
        assert!(pump_until(&mut rt, Duration::from_secs(5), |rt| rt
            .starts("crasher")
            >= 2));
        // The second start waited for the 100 ms backoff.
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(rt.last_exit("crasher"), Some(ExitKind::Code(1)));

        assert!(pump_until(&mut rt, Duration::from_secs(10), |rt| rt
            .events()
            .iter()
            .any(|e| e.contains("ALERT crasher is crash-looping"))));
        let files: Vec<_> = std::fs::read_dir(alerts.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(text.contains("service=crasher\ncrashes=4\n"), "{text}");
        assert!(
            rt.status_text().starts_with("crasher    CRASH-LOOP"),
            "{}",
            rt.status_text()
        );
        assert!(text.contains("last_exit=exit status 1"), "{text}");
        // 100 + 200 + 400 ms of backoff at least before the 4th crash.
        assert!(t0.elapsed() >= Duration::from_millis(700));
        rt.stop_all(Duration::from_millis(500));
    }

    #[test]
    fn dependents_wait_for_readiness_and_stop_in_reverse_order() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ready");
        let first = sh(
            "first",
            &format!("sleep 0.3; touch {}; exec sleep 30", sock.display()),
            &[],
            Readiness::Socket(sock.clone()),
        );
        let second = sh("second", "exec sleep 30", &["first"], Readiness::Started);
        let mut rt =
            Runtime::new(&[second, first], fast_policy(), dir.path().join("alerts")).unwrap();
        rt.pump();
        assert!(rt.pid_of("first").is_some());
        assert!(
            rt.pid_of("second").is_none(),
            "started before its dependency was ready"
        );
        let status = rt.status_text();
        let pid = rt.pid_of("first").unwrap();
        assert!(
            status.contains(&format!("first      starting    pid {pid:<7} restarts 0")),
            "{status}"
        );
        assert!(
            status.contains("second     waiting     pid -       restarts 0"),
            "{status}"
        );
        assert!(pump_until(
            &mut rt,
            Duration::from_secs(5),
            Runtime::all_ready
        ));
        assert!(sock.exists());

        let t0 = Instant::now();
        rt.stop_all(Duration::from_secs(5));
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(
            rt.last_exit("second"),
            Some(ExitKind::Signal(libc::SIGTERM))
        );
        let stops: Vec<&String> = rt
            .events()
            .iter()
            .filter(|e| e.starts_with("stopping"))
            .collect();
        assert!(stops[0].starts_with("stopping second") && stops[1].starts_with("stopping first"));
        // Nothing comes back after a stop.
        std::thread::sleep(Duration::from_millis(200));
        rt.pump();
        assert_eq!((rt.starts("first"), rt.starts("second")), (1, 1));
    }

    #[test]
    fn a_service_after_another_started_runs_beside_its_start_up() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ready");
        // `first` is ready only after 0.5 s; `second` waits for it itself.
        let first = sh(
            "first",
            &format!("sleep 0.5; touch {}; exec sleep 30", sock.display()),
            &[],
            Readiness::Socket(sock.clone()),
        );
        let mut second = sh("second", "exec sleep 30", &[], Readiness::Started);
        second.after_started = vec!["first".into()];
        let mut rt =
            Runtime::new(&[second, first], fast_policy(), dir.path().join("alerts")).unwrap();
        rt.pump();
        assert!(rt.pid_of("first").is_some() && rt.pid_of("second").is_some());
        assert!(
            !rt.is_ready("first"),
            "the test needs `first` still starting"
        );
        assert!(
            rt.events()[0].starts_with("started first"),
            "{:?}",
            rt.events()
        );
        rt.stop_all(Duration::from_secs(5));
    }

    #[test]
    fn signals_are_forwarded_to_running_services() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got-hup");
        let svc = sh(
            "hup",
            &format!(
                "trap 'touch {}' HUP; while :; do sleep 0.05; done",
                got.display()
            ),
            &[],
            Readiness::Started,
        );
        let other = sh("other", "exec sleep 30", &[], Readiness::Started);
        let mut rt = Runtime::new(&[svc, other], fast_policy(), dir.path().join("alerts")).unwrap();
        rt.pump();
        std::thread::sleep(Duration::from_millis(300));
        rt.signal(&["hup"], libc::SIGHUP);
        assert!(pump_until(&mut rt, Duration::from_secs(5), |_| got.exists()));
        assert_eq!(rt.starts("hup"), 1, "the service kept running");
        // Only the named service got it: SIGHUP would have ended `other`.
        std::thread::sleep(Duration::from_millis(200));
        rt.pump();
        assert!(rt.pid_of("other").is_some() && rt.starts("other") == 1);
        rt.stop_all(Duration::from_secs(2));
    }

    #[test]
    fn stop_kills_after_the_grace_period() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        // An ignored SIGTERM stays ignored across exec.
        let armed = dir.path().join("armed");
        let stubborn = sh(
            "stubborn",
            &format!("trap '' TERM; touch {}; exec sleep 30", armed.display()),
            &[],
            Readiness::Socket(armed),
        );
        let mut rt = Runtime::new(&[stubborn], fast_policy(), dir.path().into()).unwrap();
        assert!(pump_until(
            &mut rt,
            Duration::from_secs(5),
            Runtime::all_ready
        ));
        let t0 = Instant::now();
        rt.stop_all(Duration::from_millis(300));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            rt.last_exit("stubborn"),
            Some(ExitKind::Signal(libc::SIGKILL))
        );
        assert!(
            rt.events()
                .iter()
                .any(|e| e.contains("did not stop in 300 ms"))
        );
    }

    #[test]
    fn children_do_not_inherit_the_signals_init_blocks() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        // PID 1 blocks these to read them with sigtimedwait; a daemon must still die of
        // SIGTERM, or shutdown would always wait for the grace period.
        sys::block_signals(crate::pid1::SIGNALS).unwrap();
        let svc = sh("daemon", "exec sleep 30", &[], Readiness::Started);
        let mut rt = Runtime::new(&[svc], fast_policy(), dir.path().into()).unwrap();
        rt.pump();
        std::thread::sleep(Duration::from_millis(100));
        rt.stop_all(Duration::from_secs(5));
        sys::unblock_signals(crate::pid1::SIGNALS).unwrap();
        assert_eq!(
            rt.last_exit("daemon"),
            Some(ExitKind::Signal(libc::SIGTERM))
        );
        assert!(!rt.events().iter().any(|e| e.contains("did not stop")));
    }

    #[test]
    fn a_missing_binary_is_a_crash_not_a_panic() {
        let _g = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let svc = ServiceSpec {
            name: "ghost".into(),
            argv: vec!["/nonexistent/ghost".into()],
            after: vec![],
            after_started: vec![],
            readiness: Readiness::Started,
            output: Output::Inherit,
        };
        let mut rt = Runtime::new(&[svc], fast_policy(), dir.path().into()).unwrap();
        rt.pump();
        assert!(rt.events()[0].starts_with("cannot start ghost"));
        assert!(rt.next_restart().is_some());
        assert!(pump_until(&mut rt, Duration::from_secs(3), |rt| rt
            .starts("ghost")
            >= 2));
    }
}
