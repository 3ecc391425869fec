//! The plan-script language: guestfish scripts with `@Name@` custom attributes.
//!
//! `parse` turns text into commands, `attributes` finds and substitutes `@Name@` tokens,
//! `types` validates attribute values, `commands` lists the supported guestfish commands,
//! `guest` gives confined access to the guest's filesystems, and `exec` runs it all.

pub mod attributes;
pub mod commands;
pub mod exec;
pub mod guest;
pub mod lint;
pub mod parse;
pub mod types;
pub mod values;
