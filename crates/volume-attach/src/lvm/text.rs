//! LVM2's text metadata format (`name = value`, `name { ... }`, strings, integers, arrays,
//! `#` comments), parsed into a tree that remembers where each section name and value lies in
//! the text, so an edit can rewrite just those bytes and leave the rest as LVM wrote it.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
    Array(Vec<Value>),
    Section(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Range<usize>,
    pub value: Value,
    /// Where the value's text lies (for a section: the braces and what is between them).
    pub value_span: Range<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("LVM metadata text, byte {at}: {what}")]
pub struct TextError {
    pub at: usize,
    pub what: String,
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match self {
            Value::Section(es) => es.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The entries of a section, or nothing.
    pub fn entries(&self) -> &[Entry] {
        match self {
            Value::Section(es) => es,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: impl Into<String>) -> TextError {
        TextError {
            at: self.pos,
            what: what.into(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            if c == b'#' {
                while self.s.get(self.pos).is_some_and(|&c| c != b'\n') {
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() || c == 0 {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn ident(&mut self) -> Result<(String, Range<usize>), TextError> {
        self.skip_ws();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a name"));
        }
        Ok((
            String::from_utf8_lossy(&self.s[start..self.pos]).into_owned(),
            start..self.pos,
        ))
    }

    /// Entries until `}` (inside a section) or the end of the text (at the top).
    fn entries(&mut self, top: bool) -> Result<Vec<Entry>, TextError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if top => return Ok(out),
                None => return Err(self.err("unterminated section")),
                Some(b'}') if !top => return Ok(out),
                Some(_) => {}
            }
            let (key, key_span) = self.ident()?;
            match self.peek() {
                Some(b'{') => {
                    let start = self.pos;
                    self.pos += 1;
                    let es = self.entries(false)?;
                    self.pos += 1; // the '}'
                    out.push(Entry {
                        key,
                        key_span,
                        value: Value::Section(es),
                        value_span: start..self.pos,
                    });
                }
                Some(b'=') => {
                    self.pos += 1;
                    self.skip_ws();
                    let start = self.pos;
                    let value = self.value()?;
                    out.push(Entry {
                        key,
                        key_span,
                        value,
                        value_span: start..self.pos,
                    });
                }
                _ => return Err(self.err(format!("expected '=' or '{{' after {key}"))),
            }
        }
    }

    fn value(&mut self) -> Result<Value, TextError> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.pos) {
                        None => return Err(self.err("unterminated string")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            if let Some(&c) = self.s.get(self.pos + 1) {
                                out.push(c);
                            }
                            self.pos += 2;
                        }
                        Some(&c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Array(items));
                        }
                        Some(b',') => self.pos += 1,
                        None => return Err(self.err("unterminated array")),
                        Some(_) => items.push(self.value()?),
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .s
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
                {
                    self.pos += 1;
                }
                let t = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                // LVM writes floats only in fields we do not read; keep them as text.
                Ok(t.parse().map(Value::Int).unwrap_or(Value::Str(t)))
            }
            _ => Err(self.err("expected a value")),
        }
    }
}

/// Parses metadata text into its top-level section.
pub fn parse(text: &str) -> Result<Value, TextError> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    Ok(Value::Section(p.entries(true)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_sections_arrays_strings_and_comments() {
        let t = "vg0 {\nid = \"a\\\"b\"\nseqno = 7 # seven\nstatus = [\"READ\", \"WRITE\"]\nx = -1\nsub {\nn = 2\n}\n}\ncontents = \"Text\"\n\0";
        let v = parse(t).unwrap();
        let vg = v.entry("vg0").unwrap();
        assert_eq!(&t[vg.key_span.clone()], "vg0");
        assert_eq!(vg.value.str("id"), Some("a\"b"));
        assert_eq!(vg.value.int("seqno"), Some(7));
        assert_eq!(&t[vg.value.entry("seqno").unwrap().value_span.clone()], "7");
        assert_eq!(vg.value.int("x"), Some(-1));
        assert_eq!(vg.value.get("sub").unwrap().int("n"), Some(2));
        assert_eq!(
            vg.value.get("status"),
            Some(&Value::Array(vec![
                Value::Str("READ".into()),
                Value::Str("WRITE".into())
            ]))
        );
        assert_eq!(v.str("contents"), Some("Text"));
    }

    #[test]
    fn errors_say_where() {
        let e = parse("vg {\nseqno = \n").unwrap_err();
        assert!(e.to_string().contains("byte"), "{e}");
        assert!(parse("vg { a = \"x }").is_err());
    }
}
