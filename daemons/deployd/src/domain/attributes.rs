//! Custom attributes as build plans and deployment plans carry them: parsing what clients
//! send, validating every attribute at once, and keeping passwords out of responses.
//!
//! Stored form: `{name, description, value, constraints, type}` (deployment plans add `id`,
//! `visible`, `editable`), `constraints` a JSON-encoded string, `type` lower case, `value` a
//! string (`null` or a sub-field object for a NIC).
//!
//! Passwords: a set password value is returned as `"****"` ([`PASSWORD_MASK`]); an unset one
//! as `""`. A PUT that sends `"****"` back keeps the stored value, so GET-modify-PUT clients
//! do not wipe it; any other value replaces it (`""` clears it). The value `"****"` itself
//! therefore cannot be set as a password.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::DomainError;
use super::input::loose_bool;
use planscript::attributes::definition::{self, Proposed};
pub use planscript::attributes::definition::{Attribute, derived};
use planscript::attributes::{AttrType, PASSWORD_MASK, masked};

/// A custom attribute as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeInput {
    /// Deployment plans only; generated when missing.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A string; `null` (or a sub-field object) for a NIC.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub value: Value,
    /// A JSON-encoded string such as `{"options":["A","B"]}` (an object is accepted too).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub constraints: Value,
    /// string | option | nic | password | number | fqdn | ipv4 | hostname, any case.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    /// Deployment plans only; default true.
    #[serde(default, deserialize_with = "loose_bool::option")]
    #[schema(value_type = Option<bool>)]
    pub visible: Option<bool>,
    /// Deployment plans only; default true.
    #[serde(default, deserialize_with = "loose_bool::option")]
    #[schema(value_type = Option<bool>)]
    pub editable: Option<bool>,
}

/// Checks one attribute, given `fallback` (type, constraints) for fields the input omits.
pub fn check_one(a: &AttributeInput, fallback: Option<&Attribute>) -> Result<Attribute, String> {
    definition::check(
        Proposed {
            name: &a.name,
            description: a.description.as_deref(),
            value: &a.value,
            constraints: &a.constraints,
            type_name: a.type_.as_deref(),
        },
        fallback,
    )
}

/// Collects per-attribute problems into one 400 naming every bad attribute.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn add(&mut self, name: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{name}: {problem}"));
    }

    pub fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::invalid(
                "INVALID_CUSTOM_ATTRIBUTES",
                format!(
                    "{} custom attribute(s) are not valid: {}.",
                    self.0.len(),
                    self.0.join("; ")
                ),
            ))
        }
    }
}

/// Checks a whole list, refusing duplicate names; every bad attribute is named in the error.
pub fn check_list(list: &[AttributeInput]) -> Result<Vec<Attribute>, DomainError> {
    let mut problems = Problems::default();
    let mut out: Vec<Attribute> = Vec::with_capacity(list.len());
    for a in list {
        if out.iter().any(|o| o.name == a.name) {
            problems.add(&a.name, "the name is given twice");
            continue;
        }
        match check_one(a, None) {
            Ok(attr) => out.push(attr),
            Err(e) => problems.add(&a.name, e),
        }
    }
    problems.into_result()?;
    Ok(out)
}

/// Reads a stored attribute document back.
pub fn from_document(doc: &Value) -> Option<Attribute> {
    Attribute::from_document(doc)
}

/// Replaces password values by the mask in a rendered `customAttributes` array.
pub fn mask_passwords(attrs: &mut Value) {
    for a in attrs.as_array_mut().into_iter().flatten() {
        if let Some(t) = a["type"].as_str().and_then(AttrType::parse) {
            a["value"] = masked(t, &a["value"]);
        }
    }
}

/// A PUT that echoes the mask keeps the stored password: puts the stored value back.
pub fn unmask_passwords(input: &mut [AttributeInput], stored: &Value) {
    for a in input.iter_mut() {
        if a.value.as_str() == Some(PASSWORD_MASK) {
            let old = stored
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["name"].as_str() == Some(a.name.as_str()) && s["type"] == "password")
                .map(|s| s["value"].clone())
                .unwrap_or_else(|| json!(""));
            a.value = old;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn input(v: Value) -> AttributeInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_list_reports_every_bad_attribute() {
        let list = vec![
            input(json!({"name": "Good", "type": "String", "value": "x"})),
            input(json!({"name": "Count", "type": "number", "value": "12",
                         "constraints": "{\"minimum\":\"1\",\"maximum\":\"4\"}"})),
            input(json!({"name": "Mode", "type": "option", "value": "Fast",
                         "constraints": "{\"options\":[\"Slow\"]}"})),
            input(json!({"name": "Good", "type": "string"})),
            input(json!({"name": "9lives", "type": "string"})),
            input(json!({"name": "NoType"})),
        ];
        let e = check_list(&list).unwrap_err().to_string();
        for want in [
            "Count:",
            "Mode:",
            "Good: the name is given twice",
            "9lives:",
            "NoType: type",
        ] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
        assert!(e.starts_with("5 custom attribute(s)"), "{e}");
    }

    #[test]
    fn passwords_are_masked_and_an_echoed_mask_keeps_the_value() {
        let stored = json!([{"name": "Pw", "type": "password", "value": "s3cret"},
                            {"name": "Empty", "type": "password", "value": ""},
                            {"name": "S", "type": "string", "value": "shown"}]);
        let mut shown = stored.clone();
        mask_passwords(&mut shown);
        assert_eq!(shown[0]["value"], PASSWORD_MASK);
        assert_eq!(shown[1]["value"], "");
        assert_eq!(shown[2]["value"], "shown");
        let mut back = vec![
            input(json!({"name": "Pw", "type": "password", "value": PASSWORD_MASK})),
            input(json!({"name": "Empty", "type": "password", "value": "new"})),
        ];
        unmask_passwords(&mut back, &stored);
        assert_eq!(back[0].value, "s3cret");
        assert_eq!(back[1].value, "new");
    }
}
