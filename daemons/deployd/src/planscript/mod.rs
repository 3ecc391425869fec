//! The plan-script language: guestfish scripts with `@Name@` custom attributes.

pub mod attributes;
pub mod lint;
