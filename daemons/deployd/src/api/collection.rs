//! Collections as HPE serves them: `start`, `count`, `filter`, `sort` in the query; `members`,
//! `total`, `nextPageUri` (null on the last page) and `prevPageUri` in the envelope.
//!
//! Filters follow OneView's forms, any number of them ANDed: `name='x'`, `"name='x'"`,
//! `name=x`, `name!='x'`, `name matches 'Demo%'` (`%` is a wildcard), with case-insensitive
//! comparison as the SDKs re-filter case-insensitively anyway. Sort: `field:asc|ascending|
//! desc|descending`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;

/// The query parameters of a collection GET.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// First member to return (0-based).
    pub start: Option<i64>,
    /// How many members to return; -1 or absent for all.
    pub count: Option<i64>,
    /// Filter expression, e.g. `name='Demo'` or `name matches 'Demo%'`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Sort order, e.g. `name:ascending`.
    pub sort: Option<String>,
}

/// One parsed filter condition.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Eq(String, String),
    Ne(String, String),
    Matches(String, String),
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

fn parse_filter(raw: &str) -> Result<Vec<Cond>, ApiError> {
    let mut out = Vec::new();
    // Repeated `filter` parameters arrive joined by newlines (see `transport`); each is ANDed.
    for one in raw.split('\n') {
        out.extend(parse_one_filter(one)?);
    }
    Ok(out)
}

fn parse_one_filter(raw: &str) -> Result<Vec<Cond>, ApiError> {
    let mut out = Vec::new();
    // Several conditions may be joined with " AND " inside one filter.
    for part in unquote(raw)
        .split(" AND ")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let part = unquote(part);
        let lower = part.to_lowercase();
        let cond = if let Some(i) = lower.find(" matches ") {
            Cond::Matches(part[..i].trim().into(), unquote(&part[i + 9..]).into())
        } else if let Some((f, v)) = part.split_once("!=") {
            Cond::Ne(f.trim().into(), unquote(v).into())
        } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Cond::Eq(f.trim().into(), unquote(v).into())
        } else {
            return Err(ApiError::bad_request(
                "INVALID_FILTER",
                format!(
                    "filter {raw:?} is not understood: use field='value' or field matches 'pattern%'"
                ),
            ));
        };
        out.push(cond);
    }
    Ok(out)
}

fn field_text(member: &Value, field: &str) -> Option<String> {
    let mut v = member;
    for part in field.split('.') {
        v = v.get(part)?;
    }
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    })
}

/// SQL-LIKE match with `%` as the only wildcard, case-insensitive.
fn like(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let parts: Vec<String> = pattern
        .to_lowercase()
        .split('%')
        .map(str::to_string)
        .collect();
    if parts.len() == 1 {
        return text == parts[0];
    }
    let mut pos = 0;
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        if i == 0 {
            if !text.starts_with(p.as_str()) {
                return false;
            }
            pos = p.len();
        } else if i == parts.len() - 1 {
            return text.len() >= pos + p.len() && text.ends_with(p.as_str());
        } else {
            match text[pos..].find(p.as_str()) {
                Some(j) => pos += j + p.len(),
                None => return false,
            }
        }
    }
    true
}

fn keep(member: &Value, conds: &[Cond]) -> bool {
    conds.iter().all(|c| match c {
        Cond::Eq(f, v) => field_text(member, f).is_some_and(|t| t.eq_ignore_ascii_case(v)),
        Cond::Ne(f, v) => field_text(member, f).is_none_or(|t| !t.eq_ignore_ascii_case(v)),
        Cond::Matches(f, p) => field_text(member, f).is_some_and(|t| like(&t, p)),
    })
}

fn sort_members(members: &mut [Value], sort: &str) -> Result<(), ApiError> {
    for key in sort.split(',').rev() {
        let (field, dir) = key.split_once(':').unwrap_or((key, "asc"));
        let desc = match dir.trim().to_lowercase().as_str() {
            "asc" | "ascending" => false,
            "desc" | "descending" => true,
            other => {
                return Err(ApiError::bad_request(
                    "INVALID_SORT",
                    format!("sort direction {other:?} is not asc, ascending, desc or descending"),
                ));
            }
        };
        let field = field.trim();
        members.sort_by(|a, b| {
            let (x, y) = (field_text(a, field), field_text(b, field));
            let ord = x
                .map(|s| s.to_lowercase())
                .cmp(&y.map(|s| s.to_lowercase()));
            if desc { ord.reverse() } else { ord }
        });
    }
    Ok(())
}

fn page_uri(base: &str, start: i64, count: i64, q: &ListQuery) -> String {
    let mut uri = format!("{base}?start={start}&count={count}");
    for (k, v) in [("filter", &q.filter), ("sort", &q.sort)] {
        if let Some(v) = v {
            uri.push_str(&format!("&{k}={}", urlencode(v)));
        }
    }
    uri
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Filters, sorts and pages `members` (already rendered) into HPE's collection envelope.
pub fn envelope(
    base_uri: &str,
    category: &str,
    type_name: &str,
    mut members: Vec<Value>,
    q: &ListQuery,
) -> Result<Value, ApiError> {
    if let Some(f) = &q.filter {
        let conds = parse_filter(f)?;
        members.retain(|m| keep(m, &conds));
    }
    sort_members(
        &mut members,
        q.sort.as_deref().unwrap_or("created:ascending"),
    )?;
    let total = members.len() as i64;
    let start = q.start.unwrap_or(0);
    if start < 0 {
        return Err(ApiError::bad_request(
            "INVALID_START",
            "start must be 0 or more",
        ));
    }
    let count = match q.count {
        None | Some(-1) => total,
        Some(c) if c < 0 => {
            return Err(ApiError::bad_request(
                "INVALID_COUNT",
                "count must be -1 or 0 or more",
            ));
        }
        Some(c) => c,
    };
    let page: Vec<Value> = members
        .into_iter()
        .skip(start as usize)
        .take(count as usize)
        .collect();
    let end = start + page.len() as i64;
    let next = (end < total && count > 0).then(|| page_uri(base_uri, end, count, q));
    let prev =
        (start > 0 && count > 0).then(|| page_uri(base_uri, (start - count).max(0), count, q));
    Ok(json!({
        "type": type_name,
        "category": category,
        "uri": page_uri(base_uri, start, count, q),
        "start": start,
        "count": page.len(),
        "total": total,
        "members": page,
        "nextPageUri": next,
        "prevPageUri": prev,
        "eTag": null,
        "created": null,
        "modified": null,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Value> {
        (0..5)
            .map(|i| json!({"name": format!("Demo {i}"), "planType": if i % 2 == 0 {"deploy"} else {"capture"}, "created": i}))
            .collect()
    }

    #[test]
    fn pages_until_next_is_null() {
        let q = ListQuery {
            start: Some(0),
            count: Some(2),
            ..Default::default()
        };
        let p = envelope("/rest/x", "x", "XList", members(), &q).unwrap();
        assert_eq!(p["total"], 5);
        assert_eq!(p["count"], 2);
        assert_eq!(p["nextPageUri"], "/rest/x?start=2&count=2");
        let q = ListQuery {
            start: Some(4),
            count: Some(2),
            ..Default::default()
        };
        let p = envelope("/rest/x", "x", "XList", members(), &q).unwrap();
        assert_eq!(p["count"], 1);
        assert!(p["nextPageUri"].is_null());
    }

    #[test]
    fn filters_in_the_forms_clients_send() {
        for f in [
            "\"name='Demo 3'\"",
            "name='demo 3'",
            "name=Demo 3",
            "name matches 'Demo 3%'",
        ] {
            let q = ListQuery {
                filter: Some(f.into()),
                ..Default::default()
            };
            let p = envelope("/rest/x", "x", "XList", members(), &q).unwrap();
            assert_eq!(p["total"], 1, "{f}");
        }
        let q = ListQuery {
            filter: Some("planType=capture".into()),
            sort: Some("name:descending".into()),
            ..Default::default()
        };
        let p = envelope("/rest/x", "x", "XList", members(), &q).unwrap();
        assert_eq!(p["members"][0]["name"], "Demo 3");
        assert_eq!(p["total"], 2);
        let q = ListQuery {
            filter: Some("nonsense".into()),
            ..Default::default()
        };
        assert!(envelope("/rest/x", "x", "XList", members(), &q).is_err());
        // Repeated filter parameters (the SDK's list form), joined by `transport`.
        let q = ListQuery {
            filter: Some("\"name matches 'Demo%'\"\nplanType='capture'".into()),
            ..Default::default()
        };
        let p = envelope("/rest/x", "x", "XList", members(), &q).unwrap();
        assert_eq!(p["total"], 2);
        assert!(like("HPE - Developer", "hpe%dev%"));
        assert!(!like("HPE", "x%"));
    }
}
