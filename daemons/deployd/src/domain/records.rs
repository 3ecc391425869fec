//! Reading records, and changing them with the domain's integrity kept inside the store's
//! transaction: unique names and references that resolve ([`super::references`]).
//!
//! Every write of a record that has a unique name or references goes through a [`Change`]:
//! it adds a name-index record (`Absent` when the name is taken), a reference-index record
//! per reference with a `Present` check of its target, and, on a delete, a check that nothing
//! refers to the record any more. Two requests racing for one name, or a delete racing a
//! create that refers to what it deletes, cannot both commit. The loser's commit fails as a
//! race ([`WriteError::Race`]); [`with_retries`] runs its validation again, which now reports
//! what happened (a 409 naming the winner, a 400 naming the missing reference).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::collection::{self, Collection};
use super::error::DomainError;
use super::references::{name_key, reference_key, references, referrers_prefix, unique_name};
use crate::meta::{Expect, Kind, MetaError, MetaStore, Op, Record, Revision};
use crate::services::Services;
use crate::services::tasks::{Associated, Cancel, TaskHandle};

/// The record with id `id` of `c`, or a 404 naming it.
pub fn get(meta: &dyn MetaStore, c: &Collection, id: &str) -> Result<Record, DomainError> {
    meta.get(c.kind, id)?
        .ok_or_else(|| DomainError::not_found(format!("The {} {id}", c.noun)))
}

/// The record a change acts on: it must exist and match the request's `If-Match`.
pub fn current(
    meta: &dyn MetaStore,
    c: &Collection,
    id: &str,
    if_match: &IfMatch,
) -> Result<Record, DomainError> {
    let r = get(meta, c, id)?;
    if_match.check(&r)?;
    Ok(r)
}

/// The record `uri` names if it is one of `c`'s and exists.
pub fn at_uri(
    meta: &dyn MetaStore,
    c: &Collection,
    uri: &str,
) -> Result<Option<Record>, MetaError> {
    match c.id_in(uri) {
        Some(id) => meta.get(c.kind, id),
        None => Ok(None),
    }
}

/// The record of `c` named exactly `name`, found through the name index.
pub fn by_name(
    meta: &dyn MetaStore,
    c: &Collection,
    name: &str,
) -> Result<Option<Record>, MetaError> {
    let Some(index) = meta.get(Kind::Name, &name_key(c.kind, name))? else {
        return Ok(None);
    };
    match index.value["id"].as_str() {
        Some(id) => meta.get(c.kind, id),
        None => Ok(None),
    }
}

/// Refuses a name another record of `c` already has.
pub fn check_name_free(
    meta: &dyn MetaStore,
    c: &Collection,
    name: &str,
    except_id: Option<&str>,
) -> Result<(), DomainError> {
    match by_name(meta, c, name)? {
        Some(r) if Some(r.id.as_str()) != except_id => Err(DomainError::conflict(
            "DUPLICATE_NAME",
            format!(
                "A {} named {name:?} already exists ({}).",
                c.noun,
                c.uri(&r.id)
            ),
            "Choose another name.",
        )),
        _ => Ok(()),
    }
}

/// Starts task `task` of `user` on the resource of `c` named `name` at `uri` (HPE's
/// `associatedResource`).
pub fn start_task(
    s: &Services,
    c: &Collection,
    task: &str,
    user: &str,
    name: &str,
    uri: &str,
) -> Result<TaskHandle, DomainError> {
    Ok(s.tasks.start(task, user, &associated(c, name, uri))?)
}

/// What a task on record `name` of collection `c`, at `uri`, works on.
fn associated(c: &Collection, name: &str, uri: &str) -> Associated {
    Associated {
        category: c.category.into(),
        name: name.to_string(),
        uri: uri.to_string(),
    }
}

/// As [`start_task`], for work that can be cancelled; returns the cancel request it watches.
pub fn start_cancellable_task(
    s: &Services,
    c: &Collection,
    task: &str,
    user: &str,
    name: &str,
    uri: &str,
) -> Result<(TaskHandle, Cancel), DomainError> {
    Ok(s.tasks
        .start_cancellable(task, user, &associated(c, name, uri))?)
}

/// The record's name, for messages.
pub fn name_of(r: &Record) -> String {
    r.value["name"].as_str().unwrap_or(&r.id).to_string()
}

/// Whether a record is read-only: provided by HPE, or imported from a read-only bundle.
pub fn is_read_only(r: &Record) -> bool {
    r.value["readOnly"].as_bool() == Some(true) || r.value["hpProvided"].as_bool() == Some(true)
}

/// Refuses to change (or delete) a read-only record, with a 409 naming it.
pub fn check_writable(c: &Collection, r: &Record, deleting: bool) -> Result<(), DomainError> {
    if !is_read_only(r) {
        return Ok(());
    }
    let name = name_of(r);
    Err(if deleting {
        DomainError::conflict(
            "READ_ONLY",
            format!(
                "The {} {name:?} is read-only and cannot be deleted.",
                c.noun
            ),
            "Delete the artifact bundle it came from, or leave it.",
        )
    } else {
        DomainError::conflict(
            "READ_ONLY",
            format!("The {} {name:?} is read-only.", c.noun),
            format!("Copy it to a new {} and edit the copy.", c.noun),
        )
    })
}

/// A request's `If-Match` (the raw header value, if it had one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfMatch(pub Option<String>);

impl IfMatch {
    /// `*` or the record's current eTag passes; anything else is a stale eTag.
    pub fn check(&self, r: &Record) -> Result<(), DomainError> {
        let Some(v) = &self.0 else {
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
            Err(DomainError::Modified {
                code: "ETAG_MISMATCH",
                message: format!(
                    "If-Match {v} does not match the current eTag {current}: the resource was changed."
                ),
            })
        }
    }
}

/// Why a write did not commit.
#[derive(Debug)]
pub enum WriteError {
    /// Another change won a name, a reference or a referred record first: validate again.
    Race(String),
    /// Anything else.
    Failed(DomainError),
}

impl From<DomainError> for WriteError {
    fn from(e: DomainError) -> Self {
        Self::Failed(e)
    }
}

impl From<MetaError> for WriteError {
    fn from(e: MetaError) -> Self {
        Self::Failed(e.into())
    }
}

/// How often a write that lost a race is tried again. Each retry sees the winner, so a second
/// attempt normally ends the request (with the winner's 409, say); more would take several
/// winners in a row.
const ATTEMPTS: usize = 8;

/// Runs `attempt` (validate, build a [`Change`], commit) again while it loses races.
pub fn with_retries<T>(
    mut attempt: impl FnMut() -> Result<T, WriteError>,
) -> Result<T, DomainError> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(WriteError::Failed(e)) => return Err(e),
            Err(WriteError::Race(what)) => last = what,
        }
    }
    Err(DomainError::conflict(
        "CONCURRENT_CHANGE",
        format!("Other changes won {ATTEMPTS} times in a row ({last})."),
        "Retry the request.",
    ))
}

/// One atomic change of records that keeps names unique and references whole.
#[derive(Debug)]
pub struct Change<'a> {
    meta: &'a dyn MetaStore,
    checks: Vec<Op>,
    writes: Vec<Op>,
    /// Records this change creates: references to them need no check.
    created: HashSet<(Kind, String)>,
    /// Records this change's references need present.
    targets: Vec<(Kind, String)>,
    /// Keys whose failed precondition means another change got there first.
    raced: HashSet<(Kind, String)>,
}

impl<'a> Change<'a> {
    pub fn new(meta: &'a dyn MetaStore) -> Self {
        Self {
            meta,
            checks: Vec::new(),
            writes: Vec::new(),
            created: HashSet::new(),
            targets: Vec::new(),
            raced: HashSet::new(),
        }
    }

    /// Creates record `id` of `kind`. Records it refers to must exist, or be created earlier
    /// in the same change.
    pub fn create(&mut self, kind: Kind, id: &str, value: Value) {
        if let Some(name) = unique_name(kind, &value) {
            self.writes.push(Op::Put {
                kind: Kind::Name,
                id: name_key(kind, name),
                value: json!({"id": id}),
                expect: Expect::Absent,
            });
        }
        for (target_kind, target_id) in references(kind, &value) {
            self.refer((target_kind, &target_id), (kind, id));
        }
        self.created.insert((kind, id.to_string()));
        self.writes.push(Op::Put {
            kind,
            id: id.to_string(),
            value,
            expect: Expect::Absent,
        });
    }

    /// Replaces `current` with `value`, if nobody changed it since it was read.
    pub fn replace(&mut self, current: &Record, value: Value) -> Result<(), MetaError> {
        let (kind, id) = (current.kind, current.id.as_str());
        let old_name = unique_name(kind, &current.value);
        let new_name = unique_name(kind, &value);
        if old_name != new_name {
            if let Some(old) = old_name {
                self.unindex(kind, old, id)?;
            }
            if let Some(new) = new_name {
                self.writes.push(Op::Put {
                    kind: Kind::Name,
                    id: name_key(kind, new),
                    value: json!({"id": id}),
                    expect: Expect::Absent,
                });
            }
        }
        let old_refs = references(kind, &current.value);
        let new_refs = references(kind, &value);
        for (tk, tid) in old_refs.iter().filter(|r| !new_refs.contains(r)) {
            self.writes.push(Op::Delete {
                kind: Kind::Reference,
                id: reference_key((*tk, tid), (kind, id)),
                expect: Expect::Any,
            });
        }
        for (tk, tid) in new_refs.iter().filter(|r| !old_refs.contains(r)) {
            self.refer((*tk, tid), (kind, id));
        }
        self.writes.push(Op::Put {
            kind,
            id: id.to_string(),
            value,
            expect: Expect::Revision(current.revision),
        });
        Ok(())
    }

    /// Deletes `current` if nobody changed it since it was read and nothing refers to it.
    pub fn delete(&mut self, current: &Record) -> Result<(), MetaError> {
        self.delete_expecting(current, Expect::Revision(current.revision))
    }

    /// Deletes `current` whatever became of it since it was read (clean-ups).
    pub fn delete_any(&mut self, current: &Record) -> Result<(), MetaError> {
        self.delete_expecting(current, Expect::Any)
    }

    fn delete_expecting(&mut self, current: &Record, expect: Expect) -> Result<(), MetaError> {
        let (kind, id) = (current.kind, current.id.as_str());
        if let Some(name) = unique_name(kind, &current.value) {
            self.unindex(kind, name, id)?;
        }
        for (tk, tid) in references(kind, &current.value) {
            self.writes.push(Op::Delete {
                kind: Kind::Reference,
                id: reference_key((tk, &tid), (kind, id)),
                expect: Expect::Any,
            });
        }
        self.expect_no_referrers(kind, id);
        self.writes.push(Op::Delete {
            kind,
            id: id.to_string(),
            expect,
        });
        Ok(())
    }

    /// Commits only if no record refers to record `id` of `kind` (before this change).
    pub fn expect_no_referrers(&mut self, kind: Kind, id: &str) {
        let prefix = referrers_prefix(kind, id);
        self.checks.push(Op::CheckNone {
            kind: Kind::Reference,
            prefix,
        });
    }

    fn refer(&mut self, target: (Kind, &str), source: (Kind, &str)) {
        self.targets.push((target.0, target.1.to_string()));
        self.writes.push(Op::Put {
            kind: Kind::Reference,
            id: reference_key(target, source),
            value: json!({}),
            expect: Expect::Any,
        });
    }

    /// Removes the name index of `name` if it is `id`'s (a store from before the index may
    /// hold two records of one name; the index names one of them).
    fn unindex(&mut self, kind: Kind, name: &str, id: &str) -> Result<(), MetaError> {
        let key = name_key(kind, name);
        if let Some(index) = self.meta.get(Kind::Name, &key)?
            && index.value["id"].as_str() == Some(id)
        {
            self.writes.push(Op::Delete {
                kind: Kind::Name,
                id: key.clone(),
                expect: Expect::Revision(index.revision),
            });
            self.raced.insert((Kind::Name, key));
        }
        Ok(())
    }

    /// Commits every write at once, after every check.
    pub fn commit(self) -> Result<Revision, WriteError> {
        let mut ops = self.checks;
        let mut raced = self.raced;
        for (kind, id) in self.targets {
            if self.created.contains(&(kind, id.clone())) || raced.contains(&(kind, id.clone())) {
                continue;
            }
            raced.insert((kind, id.clone()));
            ops.push(Op::Check {
                kind,
                id,
                expect: Expect::Present,
            });
        }
        ops.extend(self.writes);
        self.meta.apply(ops).map_err(|e| match e {
            MetaError::Conflict { kind, ref id, .. }
                if matches!(kind, Kind::Name | Kind::Reference)
                    || raced.contains(&(kind, id.clone())) =>
            {
                WriteError::Race(e.to_string())
            }
            other => WriteError::Failed(other.into()),
        })
    }
}

/// Id of the marker that the name and reference indexes were built.
const INDEXES_BUILT: &str = "indexes";

/// The writes that build the name and reference indexes of a store written before they
/// existed (none when it has them: that costs one read). The caller commits them in one
/// transaction. Where an older store holds two records of one name, the first created gets
/// the index; a reference to a record that no longer exists gets none (both are logged).
pub fn index_building(meta: &dyn MetaStore) -> Result<Vec<Op>, MetaError> {
    if meta.get(Kind::Schema, INDEXES_BUILT)?.is_some() {
        return Ok(Vec::new());
    }
    let mut ops = Vec::new();
    let mut names = HashSet::new();
    for c in collection::ALL {
        let mut records = meta.list(c.kind)?;
        records.sort_by_key(|r| r.created);
        for r in &records {
            if let Some(name) = unique_name(c.kind, &r.value) {
                let key = name_key(c.kind, name);
                if names.insert(key.clone()) {
                    ops.push(Op::Put {
                        kind: Kind::Name,
                        id: key,
                        value: json!({"id": r.id}),
                        expect: Expect::Any,
                    });
                } else {
                    tracing::warn!(
                        "{} {} has the name {name:?} of an older one; rename it",
                        c.noun,
                        r.id
                    );
                }
            }
            for (tk, tid) in references(c.kind, &r.value) {
                if meta.get(tk, &tid)?.is_none() {
                    tracing::warn!(
                        "{} {} refers to {}/{tid}, which does not exist",
                        c.noun,
                        r.id,
                        tk.prefix()
                    );
                    continue;
                }
                ops.push(Op::Put {
                    kind: Kind::Reference,
                    id: reference_key((tk, &tid), (c.kind, &r.id)),
                    value: json!({}),
                    expect: Expect::Any,
                });
            }
        }
    }
    ops.push(Op::Put {
        kind: Kind::Schema,
        id: INDEXES_BUILT.into(),
        value: json!({"version": 1}),
        expect: Expect::Absent,
    });
    Ok(ops)
}
