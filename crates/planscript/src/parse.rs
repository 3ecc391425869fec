//! The guestfish script parser: lines into commands.
//!
//! Syntax (everything real HPE plan scripts use):
//!
//! * `# comment`, blank lines, CRLF line ends;
//! * `cmd arg "quoted arg" 'literal arg'` — double quotes take `\\`, `\"`, `\n`, `\t`
//!   escapes, single quotes are literal;
//! * `-cmd ...` — a failure of this command does not stop the script;
//! * `cmd -<<TERM args...` — a here-document: the following lines up to a line that is
//!   exactly `TERM` are the command's standard input (the argument becomes `-`);
//! * `!shell text` — run `shell text` locally (in the sandbox);
//! * `<!shell text` — run it locally and execute its output as guestfish commands;
//! * `cmd args | shell text` — pipe the command's output to a local shell command.
//!
//! Attribute substitution (`@Name@`) happens on the text before parsing, so line numbers
//! are those of the script as written.

use std::fmt;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// 1-based line of the command in the script.
    pub line: usize,
    /// `-` prefix: a failure is logged and the script continues.
    pub ignore_errors: bool,
    pub kind: CommandKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// A guestfish command run against the guest.
    Guest {
        name: String,
        args: Vec<String>,
        /// Here-document body, fed as the command's standard input.
        stdin: Option<String>,
        /// Shell text the command's output is piped to.
        pipe: Option<String>,
    },
    /// `!text`: a local shell command.
    Local(String),
    /// `<!text`: a local shell command whose output is more commands.
    LocalCommands(String),
}

/// A syntax error, reported as `line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A parsed script: its commands, and what was accepted but looks wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub commands: Vec<Command>,
    /// Recoverable problems (an unterminated quote closed at the end of its line, as a real
    /// HPE capture script needs), for `lint` to report.
    pub warnings: Vec<ParseError>,
}

/// Parses a whole script.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let mut warnings = Vec::new();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let raw = lines[i];
        i += 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("<!") {
            out.push(Command {
                line: number,
                ignore_errors: false,
                kind: CommandKind::LocalCommands(rest.trim().to_string()),
            });
            continue;
        }
        let (ignore_errors, body, body_col) = match line.strip_prefix('-') {
            Some(rest) => (true, rest, indent + 2),
            None => (false, line, indent + 1),
        };
        if let Some(rest) = body.strip_prefix('!') {
            out.push(Command {
                line: number,
                ignore_errors,
                kind: CommandKind::Local(rest.trim().to_string()),
            });
            continue;
        }
        let tokens = tokenize(body, number, body_col, &mut warnings)?;
        let mut args = Vec::new();
        let mut pipe = None;
        let mut heredoc: Option<(String, usize)> = None;
        for t in tokens {
            match t {
                Token::Word(w, col) if !w.quoted && w.text.starts_with("-<<") => {
                    let term = w.text[3..].to_string();
                    if term.is_empty() {
                        return Err(ParseError {
                            line: number,
                            column: col,
                            message: "here-document needs a terminator word after -<<".into(),
                        });
                    }
                    if heredoc.is_some() {
                        return Err(ParseError {
                            line: number,
                            column: col,
                            message: "only one here-document per command".into(),
                        });
                    }
                    heredoc = Some((term, col));
                    args.push("-".to_string());
                }
                Token::Word(w, _) => args.push(w.text),
                Token::Pipe(rest) => pipe = Some(rest),
            }
        }
        let stdin = match heredoc {
            None => None,
            Some((term, col)) => {
                let start = i;
                while i < lines.len() && lines[i].trim_end() != term {
                    i += 1;
                }
                if i == lines.len() {
                    return Err(ParseError {
                        line: number,
                        column: col,
                        message: format!(
                            "here-document is not terminated: no line {term:?} follows"
                        ),
                    });
                }
                let mut body = lines[start..i].join("\n");
                if i > start {
                    body.push('\n');
                }
                i += 1;
                Some(body)
            }
        };
        if args.is_empty() {
            return Err(ParseError {
                line: number,
                column: body_col,
                message: "a command name is missing".into(),
            });
        }
        let name = args.remove(0);
        out.push(Command {
            line: number,
            ignore_errors,
            kind: CommandKind::Guest {
                name,
                args,
                stdin,
                pipe,
            },
        });
    }
    Ok(Script {
        commands: out,
        warnings,
    })
}

#[derive(Debug)]
struct Word {
    text: String,
    quoted: bool,
}

#[derive(Debug)]
enum Token {
    Word(Word, usize),
    /// `|` and the rest of the line.
    Pipe(String),
}

fn tokenize(
    s: &str,
    line: usize,
    first_col: usize,
    warnings: &mut Vec<ParseError>,
) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let col = first_col + i;
        if chars[i] == '|' {
            let rest: String = chars[i + 1..].iter().collect();
            let rest = rest.trim().to_string();
            if rest.is_empty() {
                return Err(ParseError {
                    line,
                    column: col,
                    message: "nothing to pipe to after |".into(),
                });
            }
            out.push(Token::Pipe(rest));
            break;
        }
        let mut text = String::new();
        let mut quoted = false;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '|' {
            match chars[i] {
                '"' => {
                    quoted = true;
                    let open = first_col + i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => {
                                warnings.push(ParseError {
                                    line,
                                    column: open,
                                    message:
                                        "unterminated double quote (closed at the end of the line)"
                                            .into(),
                                });
                                break;
                            }
                            Some('"') => break,
                            Some('\\') => {
                                i += 1;
                                match chars.get(i) {
                                    Some('n') => text.push('\n'),
                                    Some('t') => text.push('\t'),
                                    Some(c) => text.push(*c),
                                    None => {
                                        warnings.push(ParseError { line, column: open, message: "unterminated double quote (closed at the end of the line)".into() });
                                        break;
                                    }
                                }
                            }
                            Some(c) => text.push(*c),
                        }
                        i += 1;
                    }
                    i += 1;
                }
                '\'' => {
                    quoted = true;
                    let open = first_col + i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => {
                                warnings.push(ParseError {
                                    line,
                                    column: open,
                                    message:
                                        "unterminated single quote (closed at the end of the line)"
                                            .into(),
                                });
                                break;
                            }
                            Some('\'') => break,
                            Some(c) => text.push(*c),
                        }
                        i += 1;
                    }
                    i += 1;
                }
                c => {
                    text.push(c);
                    i += 1;
                }
            }
        }
        out.push(Token::Word(Word { text, quoted }, col));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Command> {
        let s = parse(text).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        s.commands
    }

    fn guest(c: &Command) -> (&str, Vec<&str>, Option<&str>, Option<&str>) {
        match &c.kind {
            CommandKind::Guest {
                name,
                args,
                stdin,
                pipe,
            } => (
                name,
                args.iter().map(String::as_str).collect(),
                stdin.as_deref(),
                pipe.as_deref(),
            ),
            other => panic!("not a guest command: {other:?}"),
        }
    }

    #[test]
    fn commands_quotes_prefixes_and_local_lines() {
        let s = parse_ok(
            "# c\r\n\r\n-mount /dev/sda1 /\r\nwrite-append /etc/x \"a \\\"b\\\"\\n\" 'c d'\n!echo hi\n<!cat ./cmds\n-!true\n",
        );
        assert_eq!(s.len(), 5);
        assert_eq!((s[0].line, s[0].ignore_errors), (3, true));
        assert_eq!(guest(&s[0]), ("mount", vec!["/dev/sda1", "/"], None, None));
        assert_eq!(guest(&s[1]).1, vec!["/etc/x", "a \"b\"\n", "c d"]);
        assert_eq!(s[2].kind, CommandKind::Local("echo hi".into()));
        assert_eq!(s[3].kind, CommandKind::LocalCommands("cat ./cmds".into()));
        assert!(s[4].ignore_errors);
    }

    #[test]
    fn heredocs_with_any_terminator_and_pipes() {
        let s = parse_ok(
            "upload -<<END_X /etc/hostname\nweb01\ncat <<\"EOF\"\nEOF\nEND_X\nlist-filesystems | cat > ./fs\n",
        );
        assert_eq!(
            guest(&s[0]),
            (
                "upload",
                vec!["-", "/etc/hostname"],
                Some("web01\ncat <<\"EOF\"\nEOF\n"),
                None
            )
        );
        assert_eq!(s[1].line, 6);
        assert_eq!(guest(&s[1]).3, Some("cat > ./fs"));
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse("echo ok\n  upload -<<END /x\nno end").unwrap_err();
        assert_eq!((e.line, e.column), (2, 10));
        assert!(
            e.to_string()
                .starts_with("2:10: here-document is not terminated")
        );
        let w = parse("echo \"open").unwrap().warnings;
        assert_eq!(
            w[0].to_string(),
            "1:6: unterminated double quote (closed at the end of the line)"
        );
        assert_eq!(parse("ls |").unwrap_err().line, 1);
    }

    #[test]
    fn every_corpus_script_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/planscripts");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: corpus not found at {}", dir.display());
            return;
        };
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(err) = parse(&text) {
                panic!("{}:{err}", path.display());
            }
            n += 1;
        }
        assert_eq!(n, 226);
    }
}
