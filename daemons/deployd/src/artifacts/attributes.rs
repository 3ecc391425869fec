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

use super::loose_bool;
use crate::api::error::ApiError;
use crate::planscript::attributes::Declared;
use crate::planscript::types::{AttrType, AttributeSpec, PASSWORD_MASK, masked, validate_value};

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

/// A checked attribute, ready to store.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub description: String,
    pub value: Value,
    pub constraints: String,
    pub attr_type: AttrType,
}

impl Attribute {
    /// The build-plan document.
    pub fn document(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "value": self.value,
            "constraints": self.constraints,
            "type": self.attr_type.as_str(),
        })
    }
}

fn is_attribute_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn constraints_text(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Ok("{}".into()),
        Value::String(s) if s.trim().is_empty() => Ok("{}".into()),
        Value::String(s) => Ok(s.clone()),
        Value::Object(_) => Ok(v.to_string()),
        _ => Err("constraints must be a JSON-encoded string".into()),
    }
}

fn value_of(t: AttrType, v: &Value) -> Value {
    match (t, v) {
        (AttrType::Nic, Value::String(s)) if s.is_empty() => Value::Null,
        (AttrType::Nic, _) => v.clone(),
        (_, Value::Null) => json!(""),
        (_, Value::Number(n)) => json!(n.to_string()),
        _ => v.clone(),
    }
}

/// Checks one attribute, given `fallback` (type, constraints) for fields the input omits.
pub fn check_one(a: &AttributeInput, fallback: Option<&Attribute>) -> Result<Attribute, String> {
    if !is_attribute_name(&a.name) {
        return Err("the name must be letters, digits and '_', not starting with a digit".into());
    }
    let type_name = match (&a.type_, fallback) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => f.attr_type.as_str().to_string(),
        (None, None) => return Err("type is missing".into()),
    };
    let constraints = match (&a.constraints, fallback) {
        (Value::Null, Some(f)) => f.constraints.clone(),
        (c, _) => constraints_text(c)?,
    };
    let spec = AttributeSpec::parse(&type_name, &constraints)?;
    let value = value_of(spec.attr_type, &a.value);
    validate_value(&spec, &value)?;
    Ok(Attribute {
        name: a.name.clone(),
        description: a
            .description
            .clone()
            .or_else(|| fallback.map(|f| f.description.clone()))
            .unwrap_or_default(),
        value,
        constraints,
        attr_type: spec.attr_type,
    })
}

/// Collects per-attribute problems into one 400 naming every bad attribute.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn add(&mut self, name: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{name}: {problem}"));
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::bad_request(
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
pub fn check_list(list: &[AttributeInput]) -> Result<Vec<Attribute>, ApiError> {
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
    Some(Attribute {
        name: doc["name"].as_str()?.to_string(),
        description: doc["description"].as_str().unwrap_or_default().to_string(),
        value: doc["value"].clone(),
        constraints: doc["constraints"].as_str().unwrap_or("{}").to_string(),
        attr_type: AttrType::parse(doc["type"].as_str()?)?,
    })
}

/// Build-plan attributes from the tokens the plan scripts declare: strings with their
/// script default, NICs where sub-fields are used; system (`_`) attributes skipped.
pub fn derived(decls: Vec<Declared>) -> Vec<Attribute> {
    decls
        .into_iter()
        .filter(|d| !d.name.starts_with('_'))
        .map(|d| {
            let nic = !d.fields.is_empty();
            Attribute {
                name: d.name,
                description: String::new(),
                value: if nic {
                    Value::Null
                } else {
                    json!(d.default.unwrap_or_default())
                },
                constraints: if nic {
                    json!({"ipv4static": true, "ipv4dhcp": true, "ipv4disable": false,
                           "parameters": d.fields})
                    .to_string()
                } else {
                    "{\"regex\":\"\",\"helpText\":\"\"}".to_string()
                },
                attr_type: if nic { AttrType::Nic } else { AttrType::String },
            }
        })
        .collect()
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
    fn values_and_constraints_are_normalised() {
        let a = check_list(&[
            input(
                json!({"name": "N", "type": "NUMBER", "value": 3, "constraints": {"maximum": "4"}}),
            ),
            input(json!({"name": "Nic", "type": "nic", "value": ""})),
            input(json!({"name": "S", "type": "string", "constraints": ""})),
        ])
        .unwrap();
        assert_eq!(a[0].document()["value"], "3");
        assert_eq!(a[0].document()["type"], "number");
        assert_eq!(a[0].constraints, r#"{"maximum":"4"}"#);
        assert!(a[1].value.is_null());
        assert_eq!(a[2].value, "");
        assert_eq!(a[2].constraints, "{}");
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
