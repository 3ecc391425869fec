//! deployd's layers hold (`src/lib.rs`): every `crate::` and `super::` path in the sources
//! points at the same layer or one below, the domain's rules never reach up into its
//! orchestration (`domain::deploy`), and no chain of imports between source files comes back
//! to where it started.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the top; a module may import its own layer and those after it.
const LAYERS: &[&[&str]] = &[
    &["main", "daemon"],
    &["server"],
    &["rest", "ui"],
    &["api"],
    &["state"],
    &["domain"],
    &["auth", "tls"],
    &["services"],
    &["meta"],
];

fn layer(module: &[String]) -> usize {
    let top = module.first().map_or("lib", String::as_str);
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module {top} is in no layer: add it to LAYERS and lib.rs"))
}

/// Every source file by its module path (`domain/deploy/job.rs` → `[domain, deploy, job]`).
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut m: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if m.last().is_some_and(|l| l == "mod" || l == "lib") {
                    m.pop();
                }
                out.insert(m, p);
            }
        }
    }
    out
}

/// Reads one use tree at `*i` (`a::b`, `a::{b, c::{d, self}}`, `a as b`), adding each path
/// it names to `out`.
fn use_tree(s: &[u8], i: &mut usize, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_' || s[*i] == b'*') {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    };
    let mut path = base;
    loop {
        ws(i);
        if *i < s.len() && s[*i] == b'{' {
            *i += 1;
            loop {
                ws(i);
                if *i >= s.len() || s[*i] == b'}' {
                    *i += 1;
                    break;
                }
                use_tree(s, i, path.clone(), out);
                ws(i);
                if *i < s.len() && s[*i] == b',' {
                    *i += 1;
                }
            }
            out.push(path);
            return;
        }
        let w = word(i);
        if w.is_empty() {
            out.push(path);
            return;
        }
        if w != "self" && w != "*" {
            path.push(w);
        }
        if s[*i..].starts_with(b"::") {
            *i += 2;
            continue;
        }
        ws(i);
        if s[*i..].starts_with(b"as ") {
            *i += 3;
            ws(i);
            word(i);
        }
        out.push(path);
        return;
    }
}

/// The module paths `text` (of module `me`, a `mod.rs` when `is_dir`) names: `crate::a::b`,
/// `super::c`, and every path of a `use crate::a::{b, c::d}` tree.
fn referenced(me: &[String], is_dir: bool, text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &code[i..];
        let base = if !boundary {
            None
        } else if rest.starts_with("crate::") {
            i += "crate::".len();
            Some(Vec::new())
        } else if rest.starts_with("super::") {
            let mut base: Vec<String> = me.to_vec();
            if !is_dir {
                base.pop();
            }
            i += "super::".len();
            while code[i..].starts_with("super::") {
                base.pop();
                i += "super::".len();
            }
            Some(base)
        } else {
            None
        };
        match base {
            Some(base) => use_tree(bytes, &mut i, base, &mut out),
            None => i += 1,
        }
    }
    out
}

/// The source file a module path lands in: its longest prefix that is a module.
fn file_of<'a>(
    path: &[String],
    mods: &'a BTreeMap<Vec<String>, PathBuf>,
) -> Option<&'a Vec<String>> {
    (0..=path.len())
        .rev()
        .find_map(|n| mods.get_key_value(&path[..n]).map(|(k, _)| k))
}

#[test]
fn imports_go_down_and_never_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for (me, file) in &mods {
        if me.is_empty() || me == &["main".to_string()] {
            continue; // lib.rs declares the modules; main.rs only calls daemon
        }
        let is_dir = file.ends_with("mod.rs");
        let text = std::fs::read_to_string(file).unwrap();
        for r in referenced(me, is_dir, &text) {
            let Some(target) = file_of(&r, &mods) else {
                continue;
            };
            if target == me || target.is_empty() {
                continue;
            }
            // A module's own submodules are below it; its `mod.rs` declaring them is not an
            // import of its parent's.
            if target.starts_with(me) {
                continue;
            }
            if layer(target) < layer(me) {
                upward.push(format!("{} -> {}", me.join("::"), target.join("::")));
            }
            let rules_into_orchestration = me.first().is_some_and(|m| m == "domain")
                && me.get(1).is_some_and(|m| m != "deploy")
                && target.get(1).is_some_and(|t| t == "deploy");
            if rules_into_orchestration {
                upward.push(format!(
                    "{} -> {} (the domain's rules reach into its orchestration)",
                    me.join("::"),
                    target.join("::")
                ));
            }
            edges.entry(me.clone()).or_default().insert(target.clone());
        }
    }
    assert!(
        edges.len() > 40,
        "read the imports of only {} modules",
        edges.len()
    );
    assert!(
        upward.is_empty(),
        "imports that go up:\n{}",
        upward.join("\n")
    );

    // A depth-first search that meets a module on its own path has found a circle.
    fn visit(
        m: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut circle: Vec<String> = path[at..].iter().map(|p| p.join("::")).collect();
            circle.push(m.join("::"));
            return Some(circle);
        }
        if !done.insert(m.clone()) {
            return None;
        }
        path.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(circle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("an import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_paths_groups_and_supers() {
    let me = vec![
        "domain".to_string(),
        "deploy".to_string(),
        "job".to_string(),
    ];
    let refs = referenced(
        &me,
        false,
        "use crate::domain::{records::{self, Change}, error};\nuse super::capture::X;\n\
         let a = crate::services::clock::now_iso(); // crate::rest::ignored\nsuper::super::os_volumes::log();",
    );
    let has = |p: &str| {
        refs.iter()
            .any(|r| r.join("::") == p || r.join("::").starts_with(&format!("{p}::")))
    };
    assert!(has("domain::records"), "{refs:?}");
    assert!(has("domain::error"), "{refs:?}");
    assert!(has("domain::deploy::capture"), "{refs:?}");
    assert!(has("services::clock"), "{refs:?}");
    assert!(has("domain::os_volumes"), "{refs:?}");
    assert!(!has("rest"), "a comment was read: {refs:?}");
}
