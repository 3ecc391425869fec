//! Service supervision: `state` is the restart policy as a pure state machine over
//! (event, time) — exponential backoff, reset after a stable run, crash-loop detection —
//! and `runtime` applies it to real child processes. `alert` writes crash-loop records.

pub mod alert;
pub mod runtime;
pub mod state;

pub use state::{Alert, Policy, Supervision};
