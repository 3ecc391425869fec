//! Custom-attribute types and their constraints.
//!
//! Build plans, deployment plans and server profiles all carry attributes as
//! `{name, value, type, constraints}`, where `constraints` is a JSON object encoded as a
//! *string*. [`AttributeSpec::parse`] reads a type and its constraints and checks their shape;
//! [`super::check`] checks values against them.

use serde_json::{Map, Value};

/// Longest string value ([HELP 5.0] string-ca: "up to 4095 characters").
pub const STRING_MAX: usize = 4095;
/// Longest hostname or FQDN.
pub const NAME_MAX: usize = 254;
/// What password values are shown as in responses.
pub const PASSWORD_MASK: &str = "****";

/// The type of a custom attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Option,
    Nic,
    Password,
    Number,
    Fqdn,
    Ipv4,
    Hostname,
}

impl AttrType {
    pub const ALL: [AttrType; 8] = [
        Self::String,
        Self::Option,
        Self::Nic,
        Self::Password,
        Self::Number,
        Self::Fqdn,
        Self::Ipv4,
        Self::Hostname,
    ];

    /// The type named `s`, in any case (`String` and `string` are both seen in bundles).
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.as_str() == lower)
    }

    /// The wire form, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Option => "option",
            Self::Nic => "nic",
            Self::Password => "password",
            Self::Number => "number",
            Self::Fqdn => "fqdn",
            Self::Ipv4 => "ipv4",
            Self::Hostname => "hostname",
        }
    }
}

/// Constraint keys seen across the 1100 attribute records of real bundles; any other key is
/// refused as a likely typo (`maximun`), which would otherwise silently constrain nothing.
const KNOWN_KEYS: [&str; 16] = [
    "regex",
    "helpText",
    "options",
    "parameters",
    "ipv4static",
    "ipv4dhcp",
    "ipv4disable",
    "ipv4noteaming",
    "maxlen",
    "minlen",
    "allowedchars",
    "unit",
    "minimum",
    "maximum",
    "increment",
    "ipType",
];

/// The parsed constraints of an attribute. Keys that do not apply to its type are kept
/// (checked for shape) but do not constrain the value.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    /// Anchored form of `regex` (`^(?:re)$`).
    pub regex: Option<regex::Regex>,
    pub options: Option<Vec<String>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub increment: Option<f64>,
    pub minlen: Option<usize>,
    pub maxlen: Option<usize>,
    pub allowed_chars: Option<String>,
    pub ipv4static: bool,
    pub ipv4dhcp: bool,
    pub ipv4disable: bool,
    pub ipv4noteaming: bool,
    /// NIC sub-fields the scripts use.
    pub parameters: Vec<String>,
}

/// An attribute's type and constraints.
#[derive(Debug, Clone)]
pub struct AttributeSpec {
    pub attr_type: AttrType,
    pub constraints: Constraints,
}

impl AttributeSpec {
    /// Parses a type name and a constraints string (`""` counts as `{}`), reporting every
    /// problem found, joined with "; ".
    pub fn parse(type_name: &str, constraints: &str) -> Result<Self, String> {
        let attr_type = AttrType::parse(type_name).ok_or_else(|| {
            format!(
                "type {type_name:?} is not one of string, option, nic, password, number, fqdn, ipv4, hostname"
            )
        })?;
        let obj = if constraints.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(constraints) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err("constraints must encode a JSON object".into()),
                Err(e) => return Err(format!("constraints are not valid JSON: {e}")),
            }
        };
        let mut errors = Vec::new();
        let c = parse_constraints(attr_type, &obj, &mut errors);
        if errors.is_empty() {
            Ok(Self {
                attr_type,
                constraints: c,
            })
        } else {
            Err(errors.join("; "))
        }
    }

    /// Whether values of this attribute are secret (never logged or returned).
    pub fn is_secret(&self) -> bool {
        self.attr_type == AttrType::Password
    }
}

fn parse_constraints(
    t: AttrType,
    obj: &Map<String, Value>,
    errors: &mut Vec<String>,
) -> Constraints {
    let mut c = Constraints::default();
    for key in obj.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            errors.push(format!("constraint {key:?} is not known"));
        }
    }
    let text = |key: &str, errors: &mut Vec<String>| -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(format!("constraint {key} must be a string"));
                None
            }
        }
    };
    let strings = |key: &str, errors: &mut Vec<String>| -> Option<Vec<String>> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            Some(_) => {
                errors.push(format!("constraint {key} must be an array of strings"));
                None
            }
        }
    };
    // Numbers are strings in every real bundle ("minimum":"1"); JSON numbers are accepted too.
    let number = |key: &str, errors: &mut Vec<String>| -> Option<f64> {
        let raw = match obj.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) if s.trim().is_empty() => return None,
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                errors.push(format!("constraint {key} must be a numeric string"));
                return None;
            }
        };
        let n = parse_decimal(&raw);
        if n.is_none() {
            errors.push(format!("constraint {key} {raw:?} is not a number"));
        }
        n
    };
    let length = |key: &str, errors: &mut Vec<String>| -> Option<usize> {
        let raw = match obj.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) if s.trim().is_empty() => return None,
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                errors.push(format!("constraint {key} must be a whole-number string"));
                return None;
            }
        };
        let n = raw.parse::<usize>().ok();
        if n.is_none() {
            errors.push(format!("constraint {key} {raw:?} is not a whole number"));
        }
        n
    };
    let flag = |key: &str, errors: &mut Vec<String>| -> bool {
        match obj.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                errors.push(format!("constraint {key} must be true or false"));
                false
            }
        }
    };

    text("helpText", errors);
    text("unit", errors);
    text("ipType", errors);
    if let Some(re) = text("regex", errors).filter(|r| !r.is_empty()) {
        match regex::Regex::new(&format!("^(?:{re})$")) {
            Ok(r) => c.regex = Some(r),
            Err(e) => errors.push(format!("constraint regex {re:?} does not compile: {e}")),
        }
    }
    c.allowed_chars = text("allowedchars", errors);
    c.options = strings("options", errors);
    c.parameters = strings("parameters", errors).unwrap_or_default();
    c.minimum = number("minimum", errors);
    c.maximum = number("maximum", errors);
    c.increment = number("increment", errors);
    c.minlen = length("minlen", errors);
    c.maxlen = length("maxlen", errors);
    c.ipv4static = flag("ipv4static", errors);
    c.ipv4dhcp = flag("ipv4dhcp", errors);
    c.ipv4disable = flag("ipv4disable", errors);
    c.ipv4noteaming = flag("ipv4noteaming", errors);

    if let (Some(lo), Some(hi)) = (c.minimum, c.maximum)
        && lo > hi
    {
        errors.push(format!("constraint minimum {lo} is above maximum {hi}"));
    }
    if c.increment.is_some_and(|i| i <= 0.0) {
        errors.push("constraint increment must be above 0".into());
    }
    if let (Some(lo), Some(hi)) = (c.minlen, c.maxlen)
        && lo > hi
    {
        errors.push(format!("constraint minlen {lo} is above maxlen {hi}"));
    }
    match t {
        AttrType::Option => {
            if c.options.as_ref().is_none_or(Vec::is_empty) {
                errors.push("an option attribute needs a non-empty options list".into());
            }
        }
        AttrType::Nic => {
            for p in &c.parameters {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    errors.push(format!("NIC parameter {p:?} is not a sub-field name"));
                }
            }
        }
        AttrType::String
        | AttrType::Password
        | AttrType::Number
        | AttrType::Fqdn
        | AttrType::Ipv4
        | AttrType::Hostname => {}
    }
    c
}

/// An integer or decimal (`-1`, `10`, `0.5`); not `1e3`, `inf` or `NaN`.
pub(super) fn parse_decimal(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|b| b.is_ascii_digit());
    if ok { s.parse().ok() } else { None }
}
