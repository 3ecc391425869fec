//! The artifacts: plan scripts, build plans, deployment plans, golden images, and what they
//! share: rendering with server fields, lookups, preconditions, body parsing, usage checks.
//!
//! Records are stored as HPE's JSON documents without the server-computed fields; `render`
//! adds `uri`, `eTag` (the store revision), `type` (by API version) and `category`.

pub mod artifact_bundles;
pub mod attributes;
pub mod build_plans;
pub mod deployment_groups;
pub mod deployment_plans;
pub mod golden_images;
pub mod os_volumes;
pub mod plan_scripts;
pub mod server_hardware;
pub mod server_profiles;
pub mod usage;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::version::ApiVersion;
use crate::meta::{Expect, Kind, Op, Record};
use crate::state::AppState;
use crate::tasks::Associated;

/// How one kind of artifact appears in the API.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    pub kind: Kind,
    /// `/rest/plan-scripts`.
    pub path: &'static str,
    pub category: &'static str,
    /// Human name for messages: "plan script".
    pub noun: &'static str,
    /// `type` for API versions before 500, and from 500 on.
    pub type_v3: &'static str,
    pub type_v5: &'static str,
    /// `type` of the collection envelope.
    pub list_type: &'static str,
}

impl Collection {
    pub fn uri(&self, id: &str) -> String {
        format!("{}/{id}", self.path)
    }

    pub fn type_for(&self, v: ApiVersion) -> &'static str {
        if v.v5() { self.type_v5 } else { self.type_v3 }
    }

    /// The resource with server fields filled in.
    pub fn render(&self, r: &Record, v: ApiVersion) -> Value {
        let mut doc = r.value.clone();
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("id".into(), json!(r.id));
            obj.insert("uri".into(), json!(self.uri(&r.id)));
            obj.insert("eTag".into(), json!(r.revision.to_string()));
            obj.insert("type".into(), json!(self.type_for(v)));
            obj.insert("category".into(), json!(self.category));
        }
        doc
    }

    /// The record with id `id`, or 404.
    pub fn get(&self, st: &AppState, id: &str) -> Result<Record, ApiError> {
        st.meta
            .get(self.kind, id)?
            .ok_or_else(|| ApiError::not_found(format!("The {} {id}", self.noun)))
    }

    /// The record named exactly `name`, if any.
    pub fn by_name(&self, st: &AppState, name: &str) -> Result<Option<Record>, ApiError> {
        Ok(st
            .meta
            .list(self.kind)?
            .into_iter()
            .find(|r| r.value["name"].as_str() == Some(name)))
    }

    /// Refuses a name another record of this kind already has.
    pub fn check_name_free(
        &self,
        st: &AppState,
        name: &str,
        except_id: Option<&str>,
    ) -> Result<(), ApiError> {
        match self.by_name(st, name)? {
            Some(r) if Some(r.id.as_str()) != except_id => Err(ApiError::conflict(
                "DUPLICATE_NAME",
                format!(
                    "A {} named {name:?} already exists ({}).",
                    self.noun,
                    self.uri(&r.id)
                ),
                "Choose another name.",
            )),
            _ => Ok(()),
        }
    }

    /// The id in `uri` if it is one of this collection's URIs.
    pub fn id_in<'a>(&self, uri: &'a str) -> Option<&'a str> {
        uri.strip_prefix(self.path)?
            .strip_prefix('/')
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }
}

/// Whether a record is read-only: provided by HPE, or imported from a read-only bundle.
pub fn is_read_only(r: &Record) -> bool {
    r.value["readOnly"].as_bool() == Some(true) || r.value["hpProvided"].as_bool() == Some(true)
}

/// The record's name, for messages.
fn name_of(r: &Record) -> String {
    r.value["name"].as_str().unwrap_or(&r.id).to_string()
}

/// The generic create, replace and delete of an artifact: what every artifact collection does
/// the same way around its own validation.
impl Collection {
    /// Refuses to change (or delete) a read-only record, with a 409 naming it.
    pub fn check_writable(&self, r: &Record, deleting: bool) -> Result<(), ApiError> {
        if !is_read_only(r) {
            return Ok(());
        }
        let name = name_of(r);
        Err(if deleting {
            ApiError::conflict(
                "READ_ONLY",
                format!(
                    "The {} {name:?} is read-only and cannot be deleted.",
                    self.noun
                ),
                "Delete the artifact bundle it came from, or leave it.",
            )
        } else {
            ApiError::conflict(
                "READ_ONLY",
                format!("The {} {name:?} is read-only.", self.noun),
                format!("Copy it to a new {} and edit the copy.", self.noun),
            )
        })
    }

    /// Stores a new record and answers `201 Created` with it as `render` shows it.
    pub fn create(
        &self,
        st: &AppState,
        value: Value,
        render: impl Fn(&Record) -> Value,
    ) -> Result<Response, ApiError> {
        let id = uuid::Uuid::new_v4().to_string();
        st.meta.apply(vec![Op::Put {
            kind: self.kind,
            id: id.clone(),
            value,
            expect: Expect::Absent,
        }])?;
        let r = self.get(st, &id)?;
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, self.uri(&id))],
            Json(render(&r)),
        )
            .into_response())
    }

    /// Replaces `current` with `value` (412 if it changed meanwhile) and answers `202` with a
    /// completed Update task, as the HPE SDKs expect of a PUT.
    pub fn replace(
        &self,
        st: &AppState,
        user: &str,
        current: &Record,
        value: Value,
    ) -> Result<Response, ApiError> {
        let name = value["name"].as_str().unwrap_or(&current.id).to_string();
        st.meta.apply(vec![Op::Put {
            kind: self.kind,
            id: current.id.clone(),
            value,
            expect: Expect::Revision(current.revision),
        }])?;
        let task = st.tasks.start(
            "Update",
            user,
            &Associated {
                category: self.category.into(),
                name,
                uri: self.uri(&current.id),
            },
        )?;
        task.complete(None, &format!("The {} was updated", self.noun));
        Ok(task.accepted())
    }

    /// Deletes `current` unless it is read-only or something uses it (409s naming them).
    pub fn delete(&self, st: &AppState, current: &Record) -> Result<StatusCode, ApiError> {
        self.check_writable(current, true)?;
        usage::refuse_if_used(st, self.noun, &name_of(current), &self.uri(&current.id))?;
        st.meta.apply(vec![Op::Delete {
            kind: self.kind,
            id: current.id.clone(),
            expect: Expect::Revision(current.revision),
        }])?;
        Ok(StatusCode::NO_CONTENT)
    }
}

/// Honours `If-Match`: `*` or the record's current eTag; anything else is a 412.
pub fn check_if_match(headers: &HeaderMap, r: &Record) -> Result<(), ApiError> {
    let Some(v) = headers.get("if-match").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let current = r.revision.to_string();
    let ok = v
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == current);
    if ok {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed {
            code: "ETAG_MISMATCH",
            message: format!(
                "If-Match {v} does not match the current eTag {current}: the resource was changed."
            ),
        })
    }
}

/// Parses a JSON body into `T`, naming the offending field on error.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "EMPTY_BODY",
            "The request body is empty: send a JSON object.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("The request body is not valid: {inner}.")
        } else {
            format!("Field {path} is not valid: {inner}.")
        };
        ApiError::bad_request("INVALID_JSON", msg)
    })
}

/// Validates an artifact name.
pub fn check_name(noun: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
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
