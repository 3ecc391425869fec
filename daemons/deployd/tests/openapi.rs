//! `/rest/openapi.json` matches the code: every route the router serves is described, with
//! the same methods, and nothing is described that the router does not serve.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestServer;

/// `path -> methods` of every `.route("/rest/...", get(..).post(..))` in deployd's sources.
fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + 7..];
                let Some(q) = rest.find('"') else { break };
                if !rest[..q].trim().is_empty() {
                    continue; // `.route(x)` in other code, not a router call
                }
                let after = &rest[q + 1..];
                let end = after.find('"').unwrap();
                let path = after[..end].to_string();
                // The web console's files (`ui.rs`: `/`, `/ui/...`) are not the REST API.
                if !path.starts_with("/rest/") {
                    rest = &after[end + 1..];
                    continue;
                }
                // The handler expression runs to the matching parenthesis.
                let expr = &after[end + 1..];
                let mut depth = 1;
                let mut stop = expr.len();
                for (j, c) in expr.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                stop = j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let expr = &expr[..stop];
                let methods = out.entry(path).or_default();
                for m in ["get", "post", "put", "delete", "patch"] {
                    let bare = expr
                        .trim_start_matches([',', ' ', '\n'])
                        .starts_with(&format!("{m}("));
                    if bare || expr.contains(&format!(".{m}(")) {
                        methods.insert(m.to_string());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_document_describes_exactly_the_served_routes() {
    let s = TestServer::start();
    let api = s.login(800);
    let doc = api.get_json("/rest/openapi.json");
    let described: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, ops)| {
            (
                p.clone(),
                ops.as_object().unwrap().keys().cloned().collect(),
            )
        })
        .collect();
    let served = routes_in_source();
    assert!(
        served.len() > 30,
        "found only {} routes in the sources",
        served.len()
    );
    for (path, methods) in &served {
        let Some(doc_methods) = described.get(path) else {
            panic!("{path} is served but not in openapi.json");
        };
        assert_eq!(doc_methods, methods, "methods of {path}");
    }
    for path in described.keys() {
        assert!(
            served.contains_key(path),
            "{path} is in openapi.json but not served"
        );
    }
}
