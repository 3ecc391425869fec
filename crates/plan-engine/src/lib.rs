//! The plan-script engine: runs a build plan's scripts against an OS volume.
//!
//! A run ([`run`]) attaches the volume as local block devices (`volume-attach`), gives it a
//! scratch directory (`plan-sandbox`), interprets the scripts ([`exec`]) with the guest's
//! filesystems mounted ([`disk`], [`guest`]), then unmounts and detaches, whatever failed.
//! The language itself (parser, command table, attribute substitution) is the `planscript`
//! crate; the programs a script starts run in `plan-sandbox`.
//!
//! It must never let a script reach a file outside the guest it was given (every guest path
//! is confined: `..` and symlinks stay inside), and never leave a mount or a device behind.

pub mod disk;
pub mod exec;
pub mod guest;
pub mod limits;
pub mod run;
