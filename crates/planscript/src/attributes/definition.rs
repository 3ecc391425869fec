//! Attribute definitions as build plans and deployment plans store them:
//! `{name, description, value, constraints, type}`, `constraints` a JSON-encoded string,
//! `type` lower case, `value` a string (`null` or a sub-field object for a NIC).
//!
//! [`check`] turns what a client proposes into a checked [`Attribute`]; [`derived`] makes the
//! definitions a deploy build plan gets from its scripts' `@Name:default@` tokens.

use serde_json::{Value, json};

use super::check::validate_value;
use super::spec::{AttrType, AttributeSpec};
use super::tokens::ScriptAttribute;

/// A checked attribute definition, ready to store.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub description: String,
    pub value: Value,
    pub constraints: String,
    pub attr_type: AttrType,
}

impl Attribute {
    /// The stored document (build-plan shape; deployment plans add `id`, `visible`,
    /// `editable`).
    pub fn document(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "value": self.value,
            "constraints": self.constraints,
            "type": self.attr_type.as_str(),
        })
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Value) -> Option<Attribute> {
        Some(Attribute {
            name: doc["name"].as_str()?.to_string(),
            description: doc["description"].as_str().unwrap_or_default().to_string(),
            value: doc["value"].clone(),
            constraints: doc["constraints"].as_str().unwrap_or("{}").to_string(),
            attr_type: AttrType::parse(doc["type"].as_str()?)?,
        })
    }
}

/// What a client proposes for one attribute; `None`/`null` fields fall back (see [`check`]).
#[derive(Debug, Clone, Copy)]
pub struct Proposed<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    /// A string; `null` (or a sub-field object) for a NIC; numbers are accepted.
    pub value: &'a Value,
    /// A JSON-encoded string, an object, or `null`.
    pub constraints: &'a Value,
    /// Any case; `None` takes the fallback's.
    pub type_name: Option<&'a str>,
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

/// Checks one proposed attribute, given `fallback` (type, constraints, description) for the
/// fields it leaves out. The error is one line, without the attribute's name.
pub fn check(a: Proposed<'_>, fallback: Option<&Attribute>) -> Result<Attribute, String> {
    if !is_attribute_name(a.name) {
        return Err("the name must be letters, digits and '_', not starting with a digit".into());
    }
    let type_name = match (a.type_name, fallback) {
        (Some(t), _) => t.to_string(),
        (None, Some(f)) => f.attr_type.as_str().to_string(),
        (None, None) => return Err("type is missing".into()),
    };
    let constraints = match (a.constraints, fallback) {
        (Value::Null, Some(f)) => f.constraints.clone(),
        (c, _) => constraints_text(c)?,
    };
    let spec = AttributeSpec::parse(&type_name, &constraints)?;
    let value = value_of(spec.attr_type, a.value);
    validate_value(&spec, &value)?;
    Ok(Attribute {
        name: a.name.to_string(),
        description: a
            .description
            .map(str::to_string)
            .or_else(|| fallback.map(|f| f.description.clone()))
            .unwrap_or_default(),
        value,
        constraints,
        attr_type: spec.attr_type,
    })
}

/// Build-plan attributes from the tokens the plan scripts declare: strings with their
/// script default, NICs where sub-fields are used; system (`_`) attributes skipped.
pub fn derived(decls: Vec<ScriptAttribute>) -> Vec<Attribute> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::attributes::tokens::declared;

    fn proposed<'a>(name: &'a str, t: &'a str, value: &'a Value, c: &'a Value) -> Proposed<'a> {
        Proposed {
            name,
            description: None,
            value,
            constraints: c,
            type_name: Some(t),
        }
    }

    #[test]
    fn values_and_constraints_are_normalised() {
        let a = check(
            proposed("N", "NUMBER", &json!(3), &json!({"maximum": "4"})),
            None,
        )
        .unwrap();
        assert_eq!(a.document()["value"], "3");
        assert_eq!(a.document()["type"], "number");
        assert_eq!(a.constraints, r#"{"maximum":"4"}"#);
        let nic = check(proposed("Nic", "nic", &json!(""), &Value::Null), None).unwrap();
        assert!(nic.value.is_null());
        let s = check(proposed("S", "string", &Value::Null, &json!("")), None).unwrap();
        assert_eq!(s.value, "");
        assert_eq!(s.constraints, "{}");
        let round = Attribute::from_document(&a.document()).unwrap();
        assert_eq!(round.document(), a.document());
    }

    #[test]
    fn names_types_and_fallbacks() {
        let null = Value::Null;
        assert!(check(proposed("9lives", "string", &null, &null), None).is_err());
        let missing = Proposed {
            type_name: None,
            ..proposed("NoType", "", &null, &null)
        };
        assert_eq!(check(missing, None).unwrap_err(), "type is missing");
        let base = check(
            proposed(
                "Mode",
                "option",
                &json!("A"),
                &json!("{\"options\":[\"A\",\"B\"]}"),
            ),
            None,
        )
        .unwrap();
        let b = json!("B");
        let took = check(
            Proposed {
                type_name: None,
                ..proposed("Mode", "", &b, &null)
            },
            Some(&base),
        )
        .unwrap();
        assert_eq!(took.attr_type, AttrType::Option);
        let c = json!("C");
        assert!(
            check(
                Proposed {
                    type_name: None,
                    ..proposed("Mode", "", &c, &null)
                },
                Some(&base)
            )
            .is_err()
        );
    }

    #[test]
    fn scripts_give_strings_and_nics() {
        let d = derived(declared("@Host:web@ @Nic.ipaddress@ @_Initiator1.ip@"));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].document()["value"], "web");
        assert_eq!(d[1].attr_type, AttrType::Nic);
        assert!(d[1].constraints.contains("ipaddress"));
    }
}
