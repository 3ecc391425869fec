//! The validation of attribute values, with Image Streamer's rules:
//!
//! * `string`: at most 4095 characters; if `regex` is set the whole value must match it.
//! * `option`: one of `options`.
//! * `number`: an integer or decimal within `minimum`/`maximum`. `increment` is the UI's step
//!   and is not enforced: HPE's own Developer bundle ships value `50` with minimum `1` and
//!   increment `10`.
//! * `password`: `minlen`/`maxlen` characters, `allowedchars`, `regex`. Messages never
//!   contain the value.
//! * `hostname`: at most 254 characters of letters, digits, `-`, `_`, no `.`, not starting
//!   with `-` or `_`. `fqdn`: the same characters plus `.`, at least one `.`, no empty label.
//! * `ipv4`: a dotted quad.
//! * `nic`: `null`, or an object of sub-fields (`ipaddress`, `dhcp`, ...) checked against
//!   `parameters`, `ipv4static`, `ipv4dhcp` and `ipv4disable`.
//!
//! An empty string (or `null`) is an unset value and is accepted for every type: build plans
//! ship `"value": ""` for attributes the server administrator must fill in. Whoever needs a
//! value (the deployment engine) checks presence itself.

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use super::spec::{
    AttrType, AttributeSpec, Constraints, NAME_MAX, PASSWORD_MASK, STRING_MAX, parse_decimal,
};

/// Checks `value` against `attr`. `value` is a JSON string (or a number, for numbers),
/// `null`/`""` (unset), or for a NIC an object of sub-fields. The error never contains a
/// password.
pub fn validate_value(attr: &AttributeSpec, value: &Value) -> Result<(), String> {
    match (attr.attr_type, value) {
        (_, Value::Null) => Ok(()),
        (AttrType::Nic, Value::String(s)) if s.is_empty() => Ok(()),
        (AttrType::Nic, Value::Object(fields)) => validate_nic(&attr.constraints, fields),
        (AttrType::Nic, _) => Err("a NIC value must be null or an object of sub-fields".into()),
        (_, Value::String(s)) => validate_str(attr, s),
        (AttrType::Number, Value::Number(n)) => validate_str(attr, &n.to_string()),
        (_, _) => Err("the value must be a string".into()),
    }
}

/// Checks a text value against `attr` (for a NIC, only the empty string is valid here).
pub fn validate_str(attr: &AttributeSpec, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let c = &attr.constraints;
    match attr.attr_type {
        AttrType::String => {
            if value.chars().count() > STRING_MAX {
                return Err(format!("the value is longer than {STRING_MAX} characters"));
            }
            if let Some(re) = &c.regex
                && !re.is_match(value)
            {
                return Err(format!(
                    "{value:?} does not match the regular expression {:?}",
                    unanchored(re)
                ));
            }
            Ok(())
        }
        AttrType::Option => {
            let options = c.options.as_deref().unwrap_or_default();
            if options.iter().any(|o| o == value) {
                Ok(())
            } else {
                Err(format!(
                    "{value:?} is not one of the options {}",
                    options
                        .iter()
                        .map(|o| format!("{o:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        AttrType::Number => {
            let n = parse_decimal(value.trim())
                .ok_or_else(|| format!("{value:?} is not an integer or decimal number"))?;
            if let Some(lo) = c.minimum
                && n < lo
            {
                return Err(format!("{value} is below the minimum {lo}"));
            }
            if let Some(hi) = c.maximum
                && n > hi
            {
                return Err(format!("{value} is above the maximum {hi}"));
            }
            Ok(())
        }
        AttrType::Password => {
            let len = value.chars().count();
            if let Some(min) = c.minlen
                && len < min
            {
                return Err(format!("the password is shorter than {min} characters"));
            }
            if let Some(max) = c.maxlen
                && len > max
            {
                return Err(format!("the password is longer than {max} characters"));
            }
            if let Some(allowed) = &c.allowed_chars
                && !allowed.is_empty()
                && value.chars().any(|ch| !allowed.contains(ch))
            {
                return Err("the password has characters outside allowedchars".into());
            }
            if let Some(re) = &c.regex
                && !re.is_match(value)
            {
                return Err(format!(
                    "the password does not match the regular expression {:?}",
                    unanchored(re)
                ));
            }
            Ok(())
        }
        AttrType::Hostname => check_hostname(value),
        AttrType::Fqdn => check_fqdn(value),
        AttrType::Ipv4 => check_ipv4(value),
        AttrType::Nic => Err("a NIC value must be null or an object of sub-fields".into()),
    }
}

/// The value as it may appear in a response: a set password becomes [`PASSWORD_MASK`].
pub fn masked(attr_type: AttrType, value: &Value) -> Value {
    match (attr_type, value) {
        (AttrType::Password, Value::String(s)) if !s.is_empty() => {
            Value::String(PASSWORD_MASK.into())
        }
        (AttrType::Password, Value::Null) => Value::String(String::new()),
        _ => value.clone(),
    }
}

fn unanchored(re: &regex::Regex) -> &str {
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|r| r.strip_suffix(")$"))
        .unwrap_or(s)
}

fn name_chars_ok(s: &str, dots: bool) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (dots && b == b'.'))
}

/// HPE's hostname rule.
pub fn check_hostname(v: &str) -> Result<(), String> {
    if v.len() > NAME_MAX {
        return Err(format!("a hostname is at most {NAME_MAX} characters"));
    }
    if v.contains('.') {
        return Err(format!("hostname {v:?} must not contain a period"));
    }
    if !name_chars_ok(v, false) {
        return Err(format!(
            "hostname {v:?} may only contain letters, digits, '-' and '_'"
        ));
    }
    if v.starts_with(['-', '_']) {
        return Err(format!("hostname {v:?} must not start with '-' or '_'"));
    }
    Ok(())
}

/// HPE's FQDN rule.
pub fn check_fqdn(v: &str) -> Result<(), String> {
    if v.len() > NAME_MAX {
        return Err(format!("an FQDN is at most {NAME_MAX} characters"));
    }
    if !v.contains('.') {
        return Err(format!("FQDN {v:?} must contain at least one period"));
    }
    if !name_chars_ok(v, true) {
        return Err(format!(
            "FQDN {v:?} may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    if v.starts_with(['-', '_']) {
        return Err(format!("FQDN {v:?} must not start with '-' or '_'"));
    }
    if v.split('.').any(str::is_empty) {
        return Err(format!("FQDN {v:?} has an empty label"));
    }
    Ok(())
}

/// A dotted-quad IPv4 address.
pub fn check_ipv4(v: &str) -> Result<(), String> {
    v.parse::<Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| format!("{v:?} is not an IPv4 address"))
}

fn check_netmask(v: &str) -> Result<(), String> {
    let m = u32::from(
        v.parse::<Ipv4Addr>()
            .map_err(|_| format!("{v:?} is not an IPv4 netmask"))?,
    );
    if m.leading_ones() + m.trailing_zeros() == 32 {
        Ok(())
    } else {
        Err(format!("{v:?} is not a contiguous netmask"))
    }
}

fn check_mac(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split([':', '-']).collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!("{v:?} is not a MAC address"))
    }
}

fn truthy(field: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        _ => Err(format!("sub-field {field} {v:?} is not true or false")),
    }
}

/// Sub-fields OneView and the appliance set on every NIC attribute of a server profile, in
/// addition to the `parameters` the scripts use.
const NIC_PROFILE_FIELDS: [&str; 5] = [
    "connectionid",
    "networkuri",
    "constraint",
    "dhcp",
    "ipv4disable",
];

/// Checks a NIC value: `{"ipaddress": "10.0.0.5", "dhcp": "false", ...}`. Reports every bad
/// sub-field, joined with "; ".
pub fn validate_nic(c: &Constraints, fields: &Map<String, Value>) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut text = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            _ => {
                errors.push(format!("sub-field {k} must be a string"));
                continue;
            }
        };
        text.push((k.as_str(), s));
    }
    let mut dhcp = false;
    let mut disabled = false;
    let mut static_ip = false;
    for (k, v) in &text {
        let k = *k;
        if !c.parameters.is_empty()
            && !c.parameters.iter().any(|p| p == k)
            && !NIC_PROFILE_FIELDS.contains(&k)
        {
            errors.push(format!(
                "sub-field {k} is not one of its parameters ({})",
                c.parameters.join(", ")
            ));
            continue;
        }
        let checked = match k {
            "dhcp" => truthy(k, v).map(|b| dhcp |= b),
            "ipv4disable" => truthy(k, v).map(|b| disabled |= b),
            "constraint" => match v.to_ascii_lowercase().as_str() {
                "" | "auto" | "userspecified" => Ok(()),
                "dhcp" => {
                    dhcp = true;
                    Ok(())
                }
                _ => Err(format!(
                    "sub-field constraint {v:?} is not auto, userspecified or dhcp"
                )),
            },
            "ipaddress" | "ipaddress1" | "ipaddress2" | "ip" if !v.is_empty() => {
                static_ip = true;
                check_ipv4(v)
            }
            "gateway" | "dns1" | "dns2" | "dns3" if !v.is_empty() => check_ipv4(v),
            "netmask" if !v.is_empty() => check_netmask(v),
            "mac" | "mac1" | "mac2" if !v.is_empty() => check_mac(v),
            "vlanid" if !v.is_empty() => match v.parse::<u16>() {
                Ok(n) if n <= 4094 => Ok(()),
                _ => Err(format!(
                    "sub-field vlanid {v:?} is not a VLAN id (0 to 4094)"
                )),
            },
            "domain" if !v.is_empty() => {
                if name_chars_ok(v, true) && !v.starts_with(['-', '_', '.']) {
                    Ok(())
                } else {
                    Err(format!("sub-field domain {v:?} is not a domain name"))
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = checked {
            errors.push(e);
        }
    }
    if dhcp && !c.ipv4dhcp {
        errors.push("DHCP is not allowed for this NIC (ipv4dhcp is false)".into());
    }
    if disabled && !c.ipv4disable {
        errors.push("disabling IPv4 is not allowed for this NIC (ipv4disable is false)".into());
    }
    if static_ip && !dhcp && !disabled && !c.ipv4static {
        errors.push("a static address is not allowed for this NIC (ipv4static is false)".into());
    }
    if static_ip && dhcp {
        errors.push("a NIC cannot have both a static address and DHCP".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn spec(t: &str, c: &str) -> AttributeSpec {
        AttributeSpec::parse(t, c).unwrap()
    }

    fn ok(t: &str, c: &str, v: &str) -> bool {
        validate_value(&spec(t, c), &json!(v)).is_ok()
    }

    const NIC: &str = r#"{"ipv4static":true,"ipv4dhcp":true,"ipv4disable":false,"parameters":["dns1","dns2","domain","gateway","ipaddress","mac","netmask","vlanid"]}"#;

    #[test]
    fn types_parse_in_any_case_and_print_lower() {
        assert_eq!(AttrType::parse("String"), Some(AttrType::String));
        assert_eq!(AttrType::parse("IPV4"), Some(AttrType::Ipv4));
        assert_eq!(AttrType::parse("NIC").map(AttrType::as_str), Some("nic"));
        assert_eq!(AttrType::parse("integer"), None);
        assert!(
            AttributeSpec::parse("float", "{}")
                .unwrap_err()
                .contains("float")
        );
    }

    #[test]
    fn every_constraint_string_of_reference_section_4_2_parses() {
        for (t, c) in [
            ("string", r#"{"regex":"","helpText":""}"#),
            (
                "string",
                r#"{"regex":"","helpText":"","options":["team0"]}"#,
            ),
            ("option", r#"{"options":["Enable","Disable"]}"#),
            ("nic", NIC),
            (
                "nic",
                r#"{"ipv4static":true,"ipv4dhcp":true,"ipv4disable":false,"ipv4noteaming":false,"parameters":["dhcp","dns1","dns2","gateway","ipaddress1","ipaddress2","mac1","mac2","netmask"]}"#,
            ),
            ("password", r#"{"maxlen":"20"}"#),
            (
                "password",
                r#"{"minlen":"8","maxlen":"12","allowedchars":"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!@#$%"}"#,
            ),
            (
                "number",
                r#"{"minimum":"1","maximum":"51200","unit":"MiB"}"#,
            ),
            (
                "number",
                r#"{"minimum":"1","maximum":"100","increment":"10","unit":"Centi-Units"}"#,
            ),
            (
                "number",
                r#"{"minimum":"0","maximum":"100","increment":"0.1"}"#,
            ),
            ("number", r#"{"unit":"GB"}"#),
            (
                "fqdn",
                r#"{"helpText":"Example FQDN help.","options":[""]}"#,
            ),
            ("ipv4", r#"{"ipType":"manage-externally","helpText":""}"#),
            ("hostname", r#"{"helpText":""}"#),
            ("hostname", "{}"),
            ("string", ""),
        ] {
            assert!(AttributeSpec::parse(t, c).is_ok(), "{t} {c}");
        }
    }

    #[test]
    fn bad_constraint_shapes_are_all_reported() {
        for (t, c, want) in [
            ("option", "{}", "non-empty options"),
            ("option", r#"{"options":"Enable"}"#, "array of strings"),
            ("option", r#"{"options":[1,2]}"#, "array of strings"),
            ("number", r#"{"minimum":"one"}"#, "not a number"),
            (
                "number",
                r#"{"minimum":"5","maximum":"1"}"#,
                "above maximum",
            ),
            ("number", r#"{"increment":"0"}"#, "increment"),
            ("number", r#"{"maximum":true}"#, "numeric string"),
            ("password", r#"{"minlen":"x"}"#, "whole number"),
            ("password", r#"{"minlen":"9","maxlen":"8"}"#, "above maxlen"),
            ("string", r#"{"regex":"([a-z"}"#, "does not compile"),
            ("nic", r#"{"ipv4dhcp":"maybe"}"#, "true or false"),
            ("nic", r#"{"parameters":"mac"}"#, "array of strings"),
            ("nic", r#"{"parameters":["ip address"]}"#, "sub-field name"),
            ("string", r#"{"maximun":"3"}"#, "not known"),
            ("string", "[1]", "JSON object"),
            ("string", "{regex:", "not valid JSON"),
        ] {
            let e = AttributeSpec::parse(t, c).unwrap_err();
            assert!(e.contains(want), "{t} {c}: {e}");
        }
        let e = AttributeSpec::parse("number", r#"{"minimum":"a","maximum":"b"}"#).unwrap_err();
        assert!(e.contains("minimum") && e.contains("maximum"), "{e}");
    }

    #[test]
    fn strings_and_regexes() {
        let c = r#"{"regex":"[A-Z][a-z]*[0-9]*","helpText":"Example123"}"#;
        assert!(ok("string", c, "Example123"));
        // The regex must match the whole value.
        assert!(!ok("string", c, "example123"));
        assert!(!ok("string", c, "Example123 and more"));
        assert!(ok(
            "string",
            r#"{"regex":"","helpText":""}"#,
            "anything at all"
        ));
        assert!(ok("string", "{}", &"x".repeat(STRING_MAX)));
        assert!(!ok("string", "{}", &"x".repeat(STRING_MAX + 1)));
        assert!(ok("string", c, ""), "empty is unset");
    }

    #[test]
    fn options() {
        let c = r#"{"options":["Option 1 (default)","Option 2"]}"#;
        assert!(ok("option", c, "Option 2"));
        let e = validate_value(&spec("option", c), &json!("option 2")).unwrap_err();
        assert!(e.contains("\"Option 1 (default)\""), "{e}");
    }

    #[test]
    fn numbers() {
        let c = r#"{"minimum":"1","maximum":"100","increment":"10","unit":"Centi-Units"}"#;
        assert!(
            ok("number", c, "50"),
            "HPE's own default: increment is not enforced"
        );
        assert!(ok("number", c, "1"));
        assert!(ok("number", c, "99.5"));
        assert!(!ok("number", c, "0"));
        assert!(!ok("number", c, "101"));
        assert!(!ok("number", c, "1e2"));
        assert!(!ok("number", c, "ten"));
        assert!(!ok("number", "{}", "NaN"));
        assert!(ok("number", "{}", "-3"));
        assert!(validate_value(&spec("number", c), &json!(20)).is_ok());
        assert!(validate_value(&spec("number", c), &json!(200)).is_err());
    }

    #[test]
    fn passwords_are_checked_but_never_echoed() {
        let c = r#"{"minlen":"8","maxlen":"12","allowedchars":"abcdefghijklmnopqrstuvwxyz0123456789!"}"#;
        let s = spec("password", c);
        assert!(validate_value(&s, &json!("secret99!")).is_ok());
        for bad in ["short1", "muchtoolongsecret", "HasUpper123"] {
            let e = validate_value(&s, &json!(bad)).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
        let re = spec("password", r#"{"regex":"[a-z]+[0-9]+"}"#);
        let e = validate_value(&re, &json!("letters")).unwrap_err();
        assert!(
            !e.contains("letters") && e.contains("regular expression"),
            "{e}"
        );
        assert!(s.is_secret());
        assert_eq!(
            masked(AttrType::Password, &json!("x")),
            json!(PASSWORD_MASK)
        );
        assert_eq!(masked(AttrType::Password, &json!("")), json!(""));
        assert_eq!(masked(AttrType::String, &json!("x")), json!("x"));
    }

    #[test]
    fn hostnames_and_fqdns_follow_hpe_rules() {
        for v in ["web01", "WEB_01", "a-b", "1host"] {
            assert!(ok("hostname", "{}", v), "{v}");
        }
        for v in [
            "web.example",
            "-web",
            "_web",
            "web 01",
            "wéb",
            &"a".repeat(255),
        ] {
            assert!(!ok("hostname", "{}", v), "{v}");
        }
        assert!(ok("hostname", "{}", &"a".repeat(254)));
        for v in ["example.com", "host_1.lab-2.example.com"] {
            assert!(ok("fqdn", "{}", v), "{v}");
        }
        for v in [
            "localhost",
            "-a.com",
            "_a.com",
            "a..com",
            "a.com.",
            "a b.com",
            "a/b.com",
        ] {
            assert!(!ok("fqdn", "{}", v), "{v}");
        }
    }

    #[test]
    fn ipv4_addresses() {
        assert!(ok("ipv4", "{}", "10.1.2.3"));
        for v in ["10.1.2", "10.1.2.256", "a.b.c.d", "10.1.2.3/24", "::1"] {
            assert!(!ok("ipv4", "{}", v), "{v}");
        }
    }

    #[test]
    fn nics_check_sub_fields_and_modes() {
        let s = spec("nic", NIC);
        let good = json!({"ipaddress": "15.212.164.253", "netmask": "255.255.252.0",
            "gateway": "15.212.164.1", "dns1": "16.110.135.51", "mac": "16:05:A0:00:00:01",
            "vlanid": "0", "dhcp": "False", "ipv4disable": "False", "constraint": "userspecified",
            "connectionid": "3", "networkuri": "/rest/ethernet-networks/x", "domain": "hpe.com"});
        assert_eq!(validate_value(&s, &good), Ok(()));
        assert!(validate_value(&s, &json!(null)).is_ok());
        assert!(validate_value(&s, &json!({"dhcp": true, "constraint": "dhcp"})).is_ok());
        assert!(validate_value(&s, &json!("10.0.0.1")).is_err());
        let bad = json!({"ipaddress": "15.212.164", "netmask": "255.0.255.0", "mac": "xx",
            "vlanid": "5000", "ipv4disable": "true", "colour": "blue"});
        let e = validate_value(&s, &bad).unwrap_err();
        for want in [
            "ipaddress",
            "contiguous",
            "MAC",
            "VLAN",
            "ipv4disable",
            "colour",
        ] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
        let e = validate_value(&s, &json!({"ipaddress": "10.0.0.2", "dhcp": "true"})).unwrap_err();
        assert!(e.contains("both"), "{e}");
        let no_dhcp = spec(
            "nic",
            r#"{"ipv4static":true,"ipv4dhcp":false,"parameters":["mac"]}"#,
        );
        assert!(
            validate_value(&no_dhcp, &json!({"dhcp": "true"}))
                .unwrap_err()
                .contains("DHCP")
        );
    }

    /// Every attribute of every build plan and deployment plan in the corpus bundles parses,
    /// and its default is valid.
    #[test]
    fn corpus_bundle_attributes_validate() {
        use std::io::Read;
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/bundles");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: corpus not found at {}", dir.display());
            return;
        };
        let mut checked = 0;
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "zip") {
                continue;
            }
            let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
            for i in 0..zip.len() {
                let mut f = zip.by_index(i).unwrap();
                let name = f.name().to_string();
                if !(name.ends_with("_buildplan.json") || name.ends_with("_deploymentplan.json")) {
                    continue;
                }
                let mut text = String::new();
                f.read_to_string(&mut text).unwrap();
                let doc: Value = serde_json::from_str(&text).unwrap();
                for a in doc["customAttributes"].as_array().into_iter().flatten() {
                    let what = format!("{} {name} {}", path.display(), a["name"]);
                    let s = AttributeSpec::parse(
                        a["type"].as_str().unwrap(),
                        a["constraints"].as_str().unwrap_or(""),
                    )
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                    if let Err(e) = validate_value(&s, &a["value"]) {
                        panic!("{what}: {e}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "only {checked} attributes checked");
    }
}
