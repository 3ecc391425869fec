//! The artifact definitions a client writes whole: plan scripts, build plans and deployment
//! plans. They behave alike (create, replace by PUT, delete) around rules of their own; this
//! is the one generic path, and each kind is a [`Definition`]: its collection, its input and
//! how an input becomes the stored document.
//!
//! Create: the name is checked and must be free, then the document built (references
//! resolved, attributes checked). Replace: the record must exist, match `If-Match` and not
//! be read-only; the new name must be free. Delete: the record must exist, match `If-Match`,
//! not be read-only and not be used by another record. Names and references are kept by a
//! [`Change`], so these rules hold against concurrent requests too.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::collection::Collection;
use super::error::DomainError;
use super::input::check_name;
use super::records::{self, Change, IfMatch, start_task, with_retries};
use super::references::refuse_if_used;
use crate::meta::{MetaStore, Record};
use crate::services::Services;
use crate::services::clock::now_iso;
use crate::services::tasks::TaskHandle;

/// A kind of artifact definition.
pub trait Definition {
    const COLLECTION: &'static Collection;
    /// What a client sends to create or replace one.
    type Input: DeserializeOwned;

    fn name(input: &Self::Input) -> &str;

    /// Validates `input` and builds the stored document, created at `created`; `current` is
    /// the record a replace changes.
    fn document(
        meta: &dyn MetaStore,
        input: &Self::Input,
        created: &str,
        current: Option<&Record>,
    ) -> Result<Value, DomainError>;
}

/// Creates a definition; returns the stored record.
pub fn create<D: Definition>(s: &Services, input: &D::Input) -> Result<Record, DomainError> {
    let c = D::COLLECTION;
    let id = uuid::Uuid::new_v4().to_string();
    with_retries(|| {
        check_name(c.noun, D::name(input))?;
        records::check_name_free(&*s.meta, c, D::name(input), None)?;
        let value = D::document(&*s.meta, input, &now_iso(), None)?;
        let mut change = Change::new(&*s.meta);
        change.create(c.kind, &id, value);
        change.commit()?;
        Ok(())
    })?;
    records::get(&*s.meta, c, &id)
}

/// The definition a replace or delete acts on: it must exist and match `If-Match`.
pub fn current<D: Definition>(
    s: &Services,
    id: &str,
    if_match: &IfMatch,
) -> Result<Record, DomainError> {
    records::current(&*s.meta, D::COLLECTION, id, if_match)
}

/// Replaces `current` (from [`current`]) with `input`, and records the change as a completed
/// "Update" task of `user`, as the HPE SDKs expect of a PUT.
pub fn replace<D: Definition>(
    s: &Services,
    user: &str,
    current: &Record,
    input: &D::Input,
) -> Result<TaskHandle, DomainError> {
    let c = D::COLLECTION;
    records::check_writable(c, current, false)?;
    with_retries(|| {
        check_name(c.noun, D::name(input))?;
        records::check_name_free(&*s.meta, c, D::name(input), Some(&current.id))?;
        let created = current.value["created"].as_str().unwrap_or_default();
        let value = D::document(&*s.meta, input, created, Some(current))?;
        let mut change = Change::new(&*s.meta);
        change.replace(current, value)?;
        change.commit()?;
        Ok(())
    })?;
    let task = start_task(s, c, "Update", user, D::name(input), &c.uri(&current.id))?;
    task.complete(None, &format!("The {} was updated", c.noun));
    Ok(task)
}

/// Deletes `current` (from [`current`]) unless it is read-only or something uses it.
pub fn delete<D: Definition>(s: &Services, current: &Record) -> Result<(), DomainError> {
    let c = D::COLLECTION;
    records::check_writable(c, current, true)?;
    with_retries(|| {
        refuse_if_used(&*s.meta, c, &records::name_of(current), &current.id)?;
        let mut change = Change::new(&*s.meta);
        change.delete(current)?;
        change.commit()?;
        Ok(())
    })
}
