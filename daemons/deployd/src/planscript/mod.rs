//! The plan-script language: guestfish scripts with `@Name@` custom attributes.

pub mod attributes;
pub mod commands;
pub mod exec;
pub mod guest;
pub mod parse;
