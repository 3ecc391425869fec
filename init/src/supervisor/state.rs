//! The restart policy of one service, with time passed in (a `Duration` since any fixed
//! origin) so that tests drive it with a fake clock.
//!
//! Every exit of a supervised daemon is a crash: they are meant to run until stopped.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Delay before the first restart.
    pub initial_backoff: Duration,
    /// The delay doubles up to this.
    pub max_backoff: Duration,
    /// A run at least this long resets the delay to `initial_backoff`.
    pub reset_after: Duration,
    /// This many crashes within `crash_loop_window` is a crash loop.
    pub crash_loop_count: usize,
    pub crash_loop_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            crash_loop_count: 5,
            crash_loop_window: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet, or stopped on request: nothing is scheduled.
    Idle,
    Running {
        since: Duration,
    },
    /// Crashed; to be restarted at `at`.
    Backoff {
        at: Duration,
    },
    /// A stop was requested; the exit that follows is not a crash.
    Stopping,
}

/// A crash loop, raised once when it begins (again only after it has ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub crashes: usize,
    pub window: Duration,
    pub at: Duration,
    pub last_exit: String,
}

#[derive(Debug, Clone)]
pub struct Supervision {
    policy: Policy,
    phase: Phase,
    next_backoff: Duration,
    crashes: VecDeque<Duration>,
    in_loop: bool,
    restarts: u64,
}

impl Supervision {
    pub fn new(policy: Policy) -> Self {
        Supervision {
            next_backoff: policy.initial_backoff,
            policy,
            phase: Phase::Idle,
            crashes: VecDeque::new(),
            in_loop: false,
            restarts: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Restarts done so far (the first start is not one).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Whether the service is in a crash loop right now.
    pub fn in_crash_loop(&self) -> bool {
        self.in_loop
    }

    /// The service was started at `now`.
    pub fn started(&mut self, now: Duration) {
        if matches!(self.phase, Phase::Backoff { .. }) {
            self.restarts += 1;
        }
        self.phase = Phase::Running { since: now };
    }

    /// Whether a restart is due at `now`.
    pub fn restart_due(&self, now: Duration) -> bool {
        matches!(self.phase, Phase::Backoff { at } if now >= at)
    }

    /// When the next restart is scheduled, if one is.
    pub fn restart_at(&self) -> Option<Duration> {
        match self.phase {
            Phase::Backoff { at } => Some(at),
            _ => None,
        }
    }

    /// A stop was requested: the coming exit is expected and nothing is restarted.
    pub fn stop_requested(&mut self) {
        self.phase = match self.phase {
            Phase::Running { .. } | Phase::Stopping => Phase::Stopping,
            Phase::Idle | Phase::Backoff { .. } => Phase::Idle,
        };
    }

    /// The process exited at `now` (`how` describes the status, for the alert). Schedules
    /// the restart and returns an alert when this crash starts a crash loop.
    pub fn exited(&mut self, now: Duration, how: &str) -> Option<Alert> {
        let since = match self.phase {
            Phase::Running { since } => since,
            Phase::Stopping | Phase::Idle | Phase::Backoff { .. } => {
                self.phase = Phase::Idle;
                return None;
            }
        };
        if now.saturating_sub(since) >= self.policy.reset_after {
            self.next_backoff = self.policy.initial_backoff;
        }
        let delay = self.next_backoff;
        self.next_backoff = (delay * 2).min(self.policy.max_backoff);
        self.phase = Phase::Backoff { at: now + delay };

        self.crashes.push_back(now);
        while let Some(&first) = self.crashes.front() {
            if now.saturating_sub(first) > self.policy.crash_loop_window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        let looping = self.crashes.len() >= self.policy.crash_loop_count;
        let starts_loop = looping && !self.in_loop;
        self.in_loop = looping;
        starts_loop.then(|| Alert {
            crashes: self.crashes.len(),
            window: self.policy.crash_loop_window,
            at: now,
            last_exit: how.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Crashes `n` times, each right after the restart; returns the delays seen.
    fn crash_repeatedly(sup: &mut Supervision, clock: &mut Duration, n: usize) -> Vec<Duration> {
        let mut delays = Vec::new();
        for _ in 0..n {
            *clock += ms(10);
            sup.exited(*clock, "exit status 1");
            let at = sup.restart_at().unwrap();
            delays.push(at - *clock);
            *clock = at;
            assert!(sup.restart_due(*clock));
            sup.started(*clock);
        }
        delays
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut sup = Supervision::new(Policy {
            crash_loop_count: 1000,
            ..Policy::default()
        });
        let mut clock = s(0);
        sup.started(clock);
        let delays = crash_repeatedly(&mut sup, &mut clock, 9);
        let want: Vec<Duration> = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(delays, want);
        assert_eq!(sup.restarts(), 9);
    }

    #[test]
    fn not_due_before_the_backoff_elapses() {
        let mut sup = Supervision::new(Policy::default());
        sup.started(s(10));
        assert_eq!(sup.exited(s(11), "signal 9"), None);
        assert!(!sup.restart_due(s(11)));
        assert!(!sup.restart_due(s(11) + ms(499)));
        assert!(sup.restart_due(s(11) + ms(500)));
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut sup = Supervision::new(Policy::default());
        let mut clock = s(0);
        sup.started(clock);
        let delays = crash_repeatedly(&mut sup, &mut clock, 3);
        assert_eq!(delays.last(), Some(&ms(2000)));
        // 59 s is not long enough...
        clock += s(59);
        sup.exited(clock, "exit status 1");
        assert_eq!(sup.restart_at(), Some(clock + ms(4000)));
        clock += ms(4000);
        sup.started(clock);
        // ...60 s is.
        clock += s(60);
        sup.exited(clock, "exit status 1");
        assert_eq!(sup.restart_at(), Some(clock + ms(500)));
    }

    #[test]
    fn five_crashes_in_two_minutes_raise_one_alert() {
        let mut sup = Supervision::new(Policy::default());
        let mut clock = s(0);
        sup.started(clock);
        let mut alerts = Vec::new();
        for i in 0..8 {
            clock += ms(100);
            if let Some(a) = sup.exited(clock, &format!("exit status {i}")) {
                alerts.push(a);
            }
            clock = sup.restart_at().unwrap();
            sup.started(clock);
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].crashes, 5);
        assert_eq!(alerts[0].last_exit, "exit status 4");
        assert_eq!(alerts[0].window, s(120));
        assert!(sup.in_crash_loop());
        // Still restarted while in the loop: an alert is not a give-up.
        assert!(matches!(sup.phase(), Phase::Running { .. }));
    }

    #[test]
    fn slow_crashes_are_not_a_loop_and_a_new_loop_alerts_again() {
        let mut sup = Supervision::new(Policy::default());
        let mut clock = s(0);
        sup.started(clock);
        // One crash after each stable minute: at most 2 in any 2-minute window.
        for _ in 0..10 {
            clock += s(61);
            assert_eq!(sup.exited(clock, "exit status 1"), None);
            clock = sup.restart_at().unwrap();
            sup.started(clock);
        }
        assert!(!sup.in_crash_loop());
        // A fast burst is a loop...
        let mut alerts = 0;
        for _ in 0..5 {
            clock += ms(10);
            alerts += usize::from(sup.exited(clock, "x").is_some());
            clock = sup.restart_at().unwrap();
            sup.started(clock);
        }
        assert_eq!(alerts, 1);
        // ...which ends after a quiet spell, and the next burst alerts again.
        clock += s(600);
        sup.exited(clock, "x");
        assert!(!sup.in_crash_loop());
        clock = sup.restart_at().unwrap();
        sup.started(clock);
        let mut alerts = 0;
        for _ in 0..5 {
            clock += ms(10);
            alerts += usize::from(sup.exited(clock, "x").is_some());
            clock = sup.restart_at().unwrap();
            sup.started(clock);
        }
        assert_eq!(alerts, 1);
    }

    #[test]
    fn an_exit_after_a_stop_request_is_not_a_crash() {
        let mut sup = Supervision::new(Policy::default());
        sup.started(s(1));
        sup.stop_requested();
        assert_eq!(sup.phase(), Phase::Stopping);
        assert_eq!(sup.exited(s(2), "signal 15"), None);
        assert_eq!(sup.phase(), Phase::Idle);
        assert!(!sup.restart_due(s(100)));

        // Stopping during a backoff cancels the restart.
        sup.started(s(3));
        sup.exited(s(4), "exit status 1");
        sup.stop_requested();
        assert_eq!(sup.restart_at(), None);
    }
}
