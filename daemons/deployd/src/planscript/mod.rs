//! The plan-script language: guestfish scripts with `@Name@` custom attributes.
//!
//! `parse` turns text into commands, `attributes` finds and substitutes `@Name@` tokens,
//! `types` validates attribute values, `commands` lists the supported guestfish commands,
//! `guest` gives confined access to the guest's filesystems, `exec` runs it all, `disk`
//! adapts an attached OS volume for it and `run` is one whole run (attach to detach).

pub mod attributes;
pub mod commands;
pub mod disk;
pub mod exec;
pub mod guest;
pub mod lint;
pub mod parse;
pub mod run;
pub mod types;
pub mod values;
