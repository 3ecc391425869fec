//! Streamer's init: the appliance's PID 1.
//!
//! It mounts the kernel filesystems, reads the kernel command line and the appliance
//! configuration, loads kernel modules, starts and supervises the daemons, reaps zombies and
//! shuts the machine down cleanly. Everything that can be decided without being PID 1 (the
//! configuration, the module order, the service graph, the restart policy) lives in pure
//! modules with unit tests; the syscalls sit in thin leaf modules. It must never exit: on a
//! fatal error it prints the error, syncs and reboots.

pub mod config;
pub mod console;
pub mod dry_run;
pub mod entropy;
pub mod log;
pub mod modules;
pub mod net;
pub mod pid1;
pub mod plan;
pub mod power;
pub mod reroot;
pub mod services;
pub mod storage;
pub mod supervisor;
pub mod sys;
pub mod watchdog;
