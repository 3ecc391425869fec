//! Custom attributes: the `@Name@` tokens of scripts, the types and constraints plans give
//! them, the validation of values, and the values a run substitutes.
//!
//! * [`tokens`]: `@Name@`, `@Name:default@`, `@Nic.field@`, `@@` in script text;
//! * [`spec`]: a type and its constraints ([`AttributeSpec`]);
//! * [`check`]: whether a value fits a spec (never echoing a password);
//! * [`definition`]: attribute definitions as build and deployment plans store them;
//! * [`values`]: which value a run uses (script default < build plan < deployment plan <
//!   server profile, system attributes from the appliance) and the substituted text.

pub mod check;
pub mod definition;
pub mod spec;
pub mod tokens;
pub mod values;

pub use check::{masked, validate_nic, validate_str, validate_value};
pub use definition::{Attribute, Proposed, derived};
pub use spec::{AttrType, AttributeSpec, Constraints, PASSWORD_MASK};
pub use tokens::{ScriptAttribute, Token, declared, scan, substitute};
pub use values::{PlanAttribute, Values, resolve};
