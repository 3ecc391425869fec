//! The artifact collections, how to find one member by name or id, and how to show them.

use serde_json::Value;

use crate::client::Api;
use crate::error::CliError;

/// One collection of the API.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// Singular noun for messages: "plan script".
    pub noun: &'static str,
    pub path: &'static str,
    /// Table columns: header and a `/`-separated JSON path.
    pub columns: &'static [(&'static str, &'static str)],
}

pub const PLAN_SCRIPT: Kind = Kind {
    noun: "plan script",
    path: "/rest/plan-scripts",
    columns: &[
        ("NAME", "name"),
        ("TYPE", "planType"),
        ("READ-ONLY", "readOnly"),
        ("MODIFIED", "modified"),
        ("ID", "id"),
    ],
};
pub const BUILD_PLAN: Kind = Kind {
    noun: "build plan",
    path: "/rest/build-plans",
    columns: &[
        ("NAME", "name"),
        ("TYPE", "oeBuildPlanType"),
        ("STEPS", "buildStep#"),
        ("MODIFIED", "modified"),
        ("ID", "id"),
    ],
};
pub const DEPLOYMENT_PLAN: Kind = Kind {
    noun: "deployment plan",
    path: "/rest/deployment-plans",
    columns: &[
        ("NAME", "name"),
        ("BUILD PLAN", "oeBuildPlanURI"),
        ("GOLDEN IMAGE", "goldenImageURI"),
        ("ID", "id"),
    ],
};
pub const GOLDEN_IMAGE: Kind = Kind {
    noun: "golden image",
    path: "/rest/golden-images",
    columns: &[
        ("NAME", "name"),
        ("SIZE", "size"),
        ("STATUS", "status"),
        ("READ-ONLY", "readOnly"),
        ("ID", "id"),
    ],
};
pub const OS_VOLUME: Kind = Kind {
    noun: "OS volume",
    path: "/rest/os-volumes",
    columns: &[
        ("NAME", "name"),
        ("SIZE", "size"),
        ("STATE", "state"),
        ("STATUS", "status"),
        ("ID", "id"),
    ],
};
pub const ARTIFACT_BUNDLE: Kind = Kind {
    noun: "artifact bundle",
    path: "/rest/artifact-bundles",
    columns: &[
        ("NAME", "name"),
        ("ARTIFACTS", "artifactsCount"),
        ("STATE", "state"),
        ("READ-ONLY", "readOnly"),
        ("ID", "id"),
    ],
};
pub const DEPLOYMENT_GROUP: Kind = Kind {
    noun: "deployment group",
    path: "/rest/deployment-groups",
    columns: &[("NAME", "name"), ("ID", "id")],
};
pub const SERVER_HARDWARE: Kind = Kind {
    noun: "compute module",
    path: "/rest/server-hardware",
    columns: &[
        ("NAME", "name"),
        ("POWER", "powerState"),
        ("ADDRESS", "deploymentIpv4"),
        ("ID", "id"),
    ],
};
pub const SERVER_PROFILE: Kind = Kind {
    noun: "server profile",
    path: "/rest/server-profiles",
    columns: &[
        ("NAME", "name"),
        ("STATE", "state"),
        ("OS VOLUME", "osDeploymentSettings/osVolumeUri"),
        ("ID", "id"),
    ],
};
pub const USER: Kind = Kind {
    noun: "user",
    path: "/rest/users",
    columns: &[
        ("NAME", "userName"),
        ("FULL NAME", "fullName"),
        ("ROLES", "roles"),
    ],
};
pub const TASK: Kind = Kind {
    noun: "task",
    path: "/rest/tasks",
    columns: &[
        ("NAME", "name"),
        ("STATE", "taskState"),
        ("%", "percentComplete"),
        ("RESOURCE", "associatedResource/resourceName"),
        ("CREATED", "created"),
        ("ID", "uri"),
    ],
};

fn looks_like_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        })
}

fn quote_filter(name: &str) -> String {
    // As the HPE SDKs send it; the server takes everything between the outer quotes.
    format!("\"name='{name}'\"")
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URI of the member named (or with id, or URI) `name_or_id`.
pub fn resolve(api: &Api, kind: &Kind, name_or_id: &str) -> Result<String, CliError> {
    if name_or_id.starts_with(kind.path) && name_or_id[kind.path.len()..].starts_with('/') {
        return Ok(name_or_id.to_string());
    }
    // Users are addressed by their user name, not an id.
    if looks_like_id(name_or_id) || kind.path == USER.path {
        let uri = format!("{}/{}", kind.path, urlencode(name_or_id));
        match api.get(&uri) {
            Ok(_) => return Ok(uri),
            Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let list = api.get(&format!(
        "{}?filter={}",
        kind.path,
        urlencode(&quote_filter(name_or_id))
    ))?;
    let members = list["members"].as_array().cloned().unwrap_or_default();
    // The server filters case-insensitively; an exact match wins.
    let exact: Vec<&Value> = members
        .iter()
        .filter(|m| m["name"].as_str() == Some(name_or_id))
        .collect();
    let pick: Vec<&Value> = if exact.is_empty() {
        members
            .iter()
            .filter(|m| {
                m["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name_or_id))
            })
            .collect()
    } else {
        exact
    };
    match pick.as_slice() {
        [one] => one["uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError::Api {
                status: 200,
                body: Value::String(format!("the {} {name_or_id:?} has no uri", kind.noun)),
            }),
        [] => Err(CliError::Api {
            status: 404,
            body: serde_json::json!({
                "errorCode": "RESOURCE_NOT_FOUND",
                "message": format!("No {} is named {name_or_id:?} or has that id.", kind.noun),
                "recommendedActions": [format!("List them with `streamerctl {} list`.", kind.noun.to_lowercase().replace(' ', "-"))],
            }),
        }),
        many => Err(CliError::Usage(format!(
            "{} {}s are named {name_or_id:?}: give the id",
            many.len(),
            kind.noun
        ))),
    }
}

/// A field for a table cell: `a/b` walks objects, a trailing `#` counts an array.
fn cell(v: &Value, path: &str) -> String {
    let (path, count) = match path.strip_suffix('#') {
        Some(p) => (p, true),
        None => (path, false),
    };
    let mut cur = v;
    for part in path.split('/') {
        cur = &cur[part];
    }
    if count {
        return cur
            .as_array()
            .map_or(String::new(), |a| a.len().to_string());
    }
    match cur {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The members as an aligned text table.
pub fn table(kind: &Kind, members: &[Value]) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| kind.columns.iter().map(|(_, p)| cell(m, p)).collect())
        .collect();
    let mut widths: Vec<usize> = kind.columns.iter().map(|(h, _)| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(kind.columns.iter().map(|(h, _)| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

/// One resource as `key: value` lines; multi-line strings (script content) indented below.
pub fn details(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return v.to_string();
    };
    let width = obj.keys().map(String::len).max().unwrap_or(0);
    let mut out = Vec::new();
    let mut long = Vec::new();
    for (k, val) in obj {
        match val {
            Value::String(s) if s.contains('\n') => long.push((k, s)),
            Value::String(s) => out.push(format!("{k:<width$}  {s}")),
            Value::Null => out.push(format!("{k:<width$}  -")),
            other => out.push(format!("{k:<width$}  {other}")),
        }
    }
    for (k, s) in long {
        out.push(format!("{k}:"));
        for l in s.lines() {
            out.push(format!("    {l}"));
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_cells() {
        assert!(looks_like_id("f12887e3-a1d5-4fda-9a58-b372c32db74a"));
        assert!(!looks_like_id("HPE - Developer 1.0 - UEFI Test Image"));
        let m =
            json!({"name": "bp", "buildStep": [1, 2], "associatedResource": {"resourceName": "x"}});
        assert_eq!(cell(&m, "buildStep#"), "2");
        assert_eq!(cell(&m, "associatedResource/resourceName"), "x");
        assert_eq!(cell(&m, "missing"), "-");
        assert_eq!(quote_filter("it's"), "\"name='it's'\"");
    }

    #[test]
    fn table_is_aligned() {
        let t = table(
            &DEPLOYMENT_GROUP,
            &[
                json!({"name": "a", "id": "1"}),
                json!({"name": "long name", "id": "2"}),
            ],
        );
        assert_eq!(t, "NAME       ID\na          1\nlong name  2");
    }
}
