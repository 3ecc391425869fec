//! What one plan run may take of deployd itself.
//!
//! The programs a script starts are bounded by the sandbox (`plan-sandbox`: a cgroup per run,
//! timeouts, output caps). What the interpreter does in deployd's own process is bounded here,
//! so that no script, however written, can grow deployd's memory or hold its thread: every
//! bound below ends in an error naming it, or in a marker in the activity log.

/// Bounds on the interpreter's own work for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one command's output kept in the activity log (the rest is dropped, and the
    /// log says how much).
    pub command_output: usize,
    /// Bytes of activity log for a whole run (later lines are dropped, and the log says so).
    pub run_log: usize,
    /// Filesystems mounted at once.
    pub mounts: usize,
    /// Argument combinations one `glob` may run (counted before anything is expanded).
    pub glob_combinations: usize,
    /// Bytes of one file held in memory whole: `cat`, `download` to `-`, a guest command's
    /// output piped to a local one. Copies (`upload`, `download`, `copy-in`, `copy-out`, `cp`,
    /// `compress-out`) stream and have no such bound.
    pub file_in_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_output: 1 << 20,
            run_log: 16 << 20,
            mounts: 32,
            glob_combinations: 10_000,
            file_in_memory: 64 << 20,
        }
    }
}
