//! Rules for what clients send, shared by every collection: names, and HPE's booleans.

use super::error::DomainError;

/// Validates an artifact name.
pub fn check_name(noun: &str, name: &str) -> Result<(), DomainError> {
    if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "INVALID_NAME",
            format!(
                "The {noun} name {name:?} must be 1 to 255 characters without control characters."
            ),
        ));
    }
    Ok(())
}

/// HPE sends booleans as JSON booleans or as the strings "true"/"false".
pub mod loose_bool {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum B {
            Bool(bool),
            Text(String),
        }
        match Option::<B>::deserialize(d)? {
            None => Ok(false),
            Some(B::Bool(b)) => Ok(b),
            Some(B::Text(t)) => match t.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" | "" => Ok(false),
                _ => Err(serde::de::Error::custom(format!(
                    "expected true or false, got {t:?}"
                ))),
            },
        }
    }

    /// As [`deserialize`], but absent or `null` stays `None` (for fields defaulting to true).
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(deserialize_with = "deserialize")] bool);
        let v = Option::<serde_json::Value>::deserialize(d)?;
        match v {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value::<Wrap>(v)
                .map(|w| Some(w.0))
                .map_err(serde::de::Error::custom),
        }
    }
}
