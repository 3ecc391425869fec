//! Custom-attribute tokens in plan-script text.
//!
//! A token is `@Name@`, `@Name:default@`, `@Nic.sub@` or `@Nic.sub:default@`, where `Name`
//! starts with a letter or `_` and continues with letters, digits and `_`, and a default runs
//! to the next `@` on the same line. Scanning is left to right; an `@` that does not start a
//! token is plain text, so bash's `"$@"` and `${a[@]}` survive. After substitution `@@`
//! becomes `@`, which makes both `root@@@Host@` and `root@@Host@` read `root@<Host>`, as real
//! HPE scripts expect.

use std::ops::Range;

/// One token found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Byte range of the whole token, both `@` included.
    pub span: Range<usize>,
    /// Attribute name (before any `.`).
    pub name: String,
    /// NIC sub-field after the `.`, if any.
    pub field: Option<String>,
    /// The default after `:`, if any.
    pub default: Option<String>,
}

fn ident_end(b: &[u8], start: usize) -> Option<usize> {
    let first = *b.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let mut i = start + 1;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    Some(i)
}

/// Parses a token whose opening `@` is at `at`.
fn token_at(text: &str, at: usize) -> Option<Token> {
    let b = text.as_bytes();
    let name_end = ident_end(b, at + 1)?;
    let mut i = name_end;
    let mut field = None;
    if b.get(i) == Some(&b'.') {
        let f_end = (i + 1..b.len())
            .find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'))
            .unwrap_or(b.len());
        if f_end == i + 1 {
            return None;
        }
        field = Some(text[i + 1..f_end].to_string());
        i = f_end;
    }
    let mut default = None;
    if b.get(i) == Some(&b':') {
        let end = (i + 1..b.len()).find(|&j| b[j] == b'@' || b[j] == b'\n')?;
        if b[end] != b'@' {
            return None;
        }
        default = Some(text[i + 1..end].trim_end_matches('\r').to_string());
        i = end;
    }
    if b.get(i) != Some(&b'@') {
        return None;
    }
    Some(Token {
        span: at..i + 1,
        name: text[at + 1..name_end].to_string(),
        field,
        default,
    })
}

/// Every token in `text`, in order.
pub fn scan(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..].find('@') {
        let at = i + off;
        match token_at(text, at) {
            Some(t) => {
                i = t.span.end;
                out.push(t);
            }
            None => i = at + 1,
        }
    }
    out
}

/// An attribute a script declares: its name and the first default given for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptAttribute {
    pub name: String,
    pub default: Option<String>,
    /// Sub-fields used (`@Nic.ipaddress@`): a NIC attribute.
    pub fields: Vec<String>,
}

/// The attributes a script declares, in order of first use, one per name.
pub fn declared(text: &str) -> Vec<ScriptAttribute> {
    let mut out: Vec<ScriptAttribute> = Vec::new();
    for t in scan(text) {
        let entry = match out.iter_mut().position(|d| d.name == t.name) {
            Some(i) => &mut out[i],
            None => {
                out.push(ScriptAttribute {
                    name: t.name.clone(),
                    default: None,
                    fields: Vec::new(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        if t.field.is_none() && entry.default.is_none() {
            entry.default = t.default.clone();
        }
        if let Some(f) = t.field
            && !entry.fields.contains(&f)
        {
            entry.fields.push(f);
        }
    }
    out
}

/// Replaces every token with `value(token)`, then `@@` with `@`.
pub fn substitute(text: &str, mut value: impl FnMut(&Token) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for t in scan(text) {
        out.push_str(&text[last..t.span.start].replace("@@", "@"));
        out.push_str(&value(&t));
        last = t.span.end;
    }
    out.push_str(&text[last..].replace("@@", "@"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_defaults_and_nic_fields() {
        let d = declared(
            "echo @Host:my host@ @Host@\nupload -<<END /x\n@Nic.ipaddress@ @Nic.mac:00@\nEND\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "Host");
        assert_eq!(d[0].default.as_deref(), Some("my host"));
        assert_eq!(d[1].fields, vec!["ipaddress", "mac"]);
    }

    #[test]
    fn bash_at_signs_survive_and_escapes_resolve() {
        let text =
            r#"for a in "$@"; do echo ${x[@]} =~ \.@; done; ssh root@@@Node@ root@@Node@ a@@b"#;
        let out = substitute(text, |t| format!("<{}>", t.name));
        assert_eq!(
            out,
            r#"for a in "$@"; do echo ${x[@]} =~ \.@; done; ssh root@<Node> root@<Node> a@b"#
        );
        assert!(declared("no tokens: a@b c@ @ @@").is_empty());
    }

    #[test]
    fn defaults_do_not_cross_lines() {
        assert!(scan("@A:x\ny@").is_empty());
        assert_eq!(scan("@A:x\r@")[0].default.as_deref(), Some("x"));
    }

    #[test]
    fn every_corpus_script_scans() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/planscripts");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: corpus not found at {}", dir.display());
            return;
        };
        let mut scripts = 0;
        let mut with_attrs = 0;
        for e in entries {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            scripts += 1;
            if !declared(&text).is_empty() {
                with_attrs += 1;
            }
        }
        assert!(scripts >= 200, "only {scripts} scripts");
        assert!(
            with_attrs > 50,
            "only {with_attrs} scripts declare attributes"
        );
    }
}
