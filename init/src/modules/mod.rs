//! Kernel modules: which files to load, in which order, and loading them.
//!
//! The order comes from `modules.dep` (dependencies first, each module once, a cycle is an
//! error that names it); `decompress` turns `.ko.xz`/`.ko.zst`/`.ko.gz` into bytes; `load`
//! is the thin syscall layer (`finit_module`, `init_module`); `parallel` loads independent
//! modules at the same time, each after its dependencies; `alias` tells which hardware
//! drivers the devices present need. Only `load` needs PID 1.

pub mod alias;
pub mod decompress;
pub mod dep;
pub mod load;
pub mod parallel;

pub use dep::{DepError, ModuleDb, module_name};
