//! The plan-script language: guestfish scripts with `@Name@` custom attributes, and the
//! types and constraints those attributes carry.

pub mod attributes;
pub mod types;
