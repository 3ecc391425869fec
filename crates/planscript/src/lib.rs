//! The plan-script language: guestfish scripts with `@Name@` custom attributes.
//!
//! [`parse`] turns text into commands, [`commands`] lists the guestfish commands the engine
//! runs (with their argument counts), [`lint`] checks a script offline with the same parser
//! and table, and [`attributes`] is everything about custom attributes: tokens, types and
//! constraints, value validation and the values of a run.
//!
//! This crate only reads text: it runs nothing, touches no file and has no server in it, so
//! the appliance's engine (`plan-engine`) and the operator's CLI (`streamerctl plan-script
//! lint`) link the same definition of the language and can never disagree about it.

pub mod attributes;
pub mod commands;
pub mod lint;
pub mod parse;
