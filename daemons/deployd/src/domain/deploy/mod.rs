//! Deployment and capture: the flows that join storaged, the records and the plan-script
//! engine.
//!
//! `profile` is what a change to a server profile sets off; `job` runs a deploy (clone,
//! personalize, export to the compute module, power on); `capture` makes a golden image from
//! an OS volume without changing it; `recovery` cleans up after a stop in the middle of
//! either. They work on records through the domain's rules (the modules beside this one),
//! which never call back into them, and never through the REST handlers.

pub mod capture;
pub mod job;
pub mod profile;
pub mod recovery;
