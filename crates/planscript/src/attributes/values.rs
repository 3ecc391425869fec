//! Attribute values for a run: precedence, system attributes, validation, substitution.
//!
//! A value comes from the first of these that sets it: the server profile, the deployment
//! plan, the build plan, the plan script's own `@Name:default@`. Type and constraints come
//! from the deployment plan, else the build plan, else the attribute is a string. System
//! attributes (`_Initiator1.ip`, ...) are filled in by the appliance and cannot be set by the
//! profile. Every value is validated before anything runs, and every bad one is reported.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::check::{validate_nic, validate_str};
use super::spec::{AttrType, AttributeSpec};
use super::tokens;

/// One attribute as a plan declares it (`{name, value, type, constraints, editable}`).
#[derive(Debug, Clone, Default)]
pub struct PlanAttribute {
    pub name: String,
    pub value: Option<String>,
    pub type_name: Option<String>,
    pub constraints: Option<String>,
    pub editable: bool,
}

impl PlanAttribute {
    /// Reads HPE's attribute JSON (build plan, deployment plan or profile entry).
    pub fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Self {
            name: text("name")?,
            value: match v.get("value") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            },
            type_name: text("type"),
            constraints: text("constraints"),
            editable: v.get("editable").and_then(Value::as_bool).unwrap_or(true),
        })
    }
}

/// The values of a run.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// `Name` or `Nic.field` → value.
    pub values: BTreeMap<String, String>,
    /// Values of password attributes, to mask in logs.
    pub secrets: Vec<String>,
}

impl Values {
    /// Substitutes the tokens of `text`: a known value, else the token's default, else "".
    pub fn substitute(&self, text: &str) -> String {
        tokens::substitute(text, |t| {
            let key = match &t.field {
                Some(f) => format!("{}.{f}", t.name),
                None => t.name.clone(),
            };
            self.values
                .get(&key)
                .cloned()
                .or_else(|| t.default.clone())
                .unwrap_or_default()
        })
    }
}

/// Resolves and validates the values for `scripts` (their text) under the given layers.
/// `profile` holds the server profile's `{name, value}` pairs (NIC fields flattened as
/// `Nic.field`); `system` the appliance's `_...` attributes. Errors name every bad attribute.
pub fn resolve(
    scripts: &[&str],
    build_plan: &[PlanAttribute],
    deployment_plan: &[PlanAttribute],
    profile: &[(String, String)],
    system: &BTreeMap<String, String>,
) -> Result<Values, Vec<String>> {
    let mut errors = Vec::new();
    // Script defaults, then the plans.
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut nic_fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for text in scripts {
        for d in tokens::declared(text) {
            if let Some(v) = d.default {
                values.entry(d.name.clone()).or_insert(v);
            }
            if !d.fields.is_empty() {
                nic_fields.entry(d.name).or_default().extend(d.fields);
            }
        }
    }
    let mut specs: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut editable: BTreeMap<String, bool> = BTreeMap::new();
    for layer in [build_plan, deployment_plan] {
        for d in layer {
            if let Some(v) = &d.value
                && !v.is_empty()
                && v != "****"
            {
                values.insert(d.name.clone(), v.clone());
            }
            if d.type_name.is_some() {
                specs.insert(d.name.clone(), (d.type_name.clone(), d.constraints.clone()));
            }
            editable.insert(d.name.clone(), d.editable);
        }
    }
    for (name, value) in profile {
        let base = name.split('.').next().unwrap_or(name);
        if base.starts_with('_') {
            errors.push(format!(
                "{name}: system attributes are set by the appliance, not by the profile"
            ));
            continue;
        }
        if editable.get(base) == Some(&false) {
            errors.push(format!(
                "{name}: the deployment plan makes this attribute read-only"
            ));
            continue;
        }
        values.insert(name.clone(), value.clone());
    }
    for (k, v) in system {
        values.insert(k.clone(), v.clone());
    }
    // Validate with each attribute's type.
    let mut secrets = Vec::new();
    for (name, (type_name, constraints)) in &specs {
        let spec = match AttributeSpec::parse(
            type_name.as_deref().unwrap_or("string"),
            constraints.as_deref().unwrap_or(""),
        ) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        if spec.attr_type == AttrType::Nic {
            let prefix = format!("{name}.");
            let fields: Map<String, Value> = values
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(&prefix)
                        .map(|f| (f.to_string(), Value::String(v.clone())))
                })
                .collect();
            if let Err(e) = validate_nic(&spec.constraints, &fields) {
                errors.push(format!("{name}: {e}"));
            }
            continue;
        }
        let value = values.get(name).cloned().unwrap_or_default();
        if spec.is_secret() && !value.is_empty() {
            secrets.push(value.clone());
        }
        if let Err(e) = validate_str(&spec, &value) {
            errors.push(format!("{name}: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(Values { values, secrets })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decl(v: Value) -> PlanAttribute {
        PlanAttribute::from_json(&v).unwrap()
    }

    #[test]
    fn precedence_script_plan_deployment_plan_profile() {
        let scripts = ["echo @A:script@ @B:script@ @C:script@ @D:script@ @E@"];
        let bp = [
            decl(json!({"name": "B", "value": "bp", "type": "string", "constraints": "{}"})),
            decl(json!({"name": "C", "value": "bp"})),
        ];
        let dp = [
            decl(json!({"name": "C", "value": "dp"})),
            decl(json!({"name": "D", "value": "dp"})),
        ];
        let profile = [("D".to_string(), "profile".to_string())];
        let v = resolve(&scripts, &bp, &dp, &profile, &BTreeMap::new()).unwrap();
        assert_eq!(v.substitute(scripts[0]), "echo script bp dp profile ");
    }

    #[test]
    fn every_bad_value_is_named_before_anything_runs() {
        let bp = [
            decl(json!({"name": "Host", "type": "hostname", "constraints": "{\"helpText\":\"\"}"})),
            decl(json!({"name": "Ip", "type": "ipv4", "constraints": "{}"})),
            decl(
                json!({"name": "Count", "type": "number", "constraints": "{\"minimum\":\"1\",\"maximum\":\"4\"}"}),
            ),
            decl(json!({"name": "Pw", "type": "password", "constraints": "{\"maxlen\":\"4\"}"})),
        ];
        let profile: Vec<(String, String)> = [
            ("Host", "bad.name"),
            ("Ip", "10.0.0.300"),
            ("Count", "9"),
            ("Pw", "toolongsecret"),
            ("_Initiator1.ip", "1.2.3.4"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let errs = resolve(&[], &bp, &[], &profile, &BTreeMap::new()).unwrap_err();
        let text = errs.join("\n");
        for name in ["Host", "Ip", "Count", "Pw", "_Initiator1.ip"] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
        assert!(!text.contains("toolongsecret"), "password leaked: {text}");
    }

    #[test]
    fn read_only_attributes_system_values_nics_and_secrets() {
        let dp = [
            decl(json!({"name": "Locked", "value": "x", "editable": false})),
            decl(json!({"name": "Pw", "type": "password", "constraints": "{}", "value": ""})),
            decl(
                json!({"name": "Nic", "type": "nic", "constraints": "{\"ipv4static\":true,\"ipv4dhcp\":true,\"ipv4disable\":false,\"parameters\":[\"ipaddress\",\"mac\"]}"}),
            ),
        ];
        assert!(
            resolve(
                &[],
                &[],
                &dp,
                &[("Locked".into(), "y".into())],
                &BTreeMap::new()
            )
            .is_err()
        );
        let system = BTreeMap::from([("_Initiator1.ip".to_string(), "10.1.1.5".to_string())]);
        let profile = [
            ("Pw".to_string(), "s3cret".to_string()),
            ("Nic.ipaddress".to_string(), "10.0.0.9".to_string()),
        ];
        let v = resolve(
            &["@_Initiator1.ip@ @Nic.ipaddress@ @Pw@"],
            &[],
            &dp,
            &profile,
            &system,
        )
        .unwrap();
        assert_eq!(
            v.substitute("@_Initiator1.ip@ @Nic.ipaddress@ @Pw@ @Nic.mac@"),
            "10.1.1.5 10.0.0.9 s3cret "
        );
        assert_eq!(v.secrets, vec!["s3cret"]);
        let bad = [("Nic.ipaddress".to_string(), "nope".to_string())];
        assert!(resolve(&[], &[], &dp, &bad, &BTreeMap::new()).unwrap_err()[0].starts_with("Nic:"));
    }
}
