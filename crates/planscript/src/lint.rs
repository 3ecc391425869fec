//! Offline checks of plan-script text, for `streamerctl plan-script lint` and for validating
//! scripts before they are stored or run.
//!
//! It runs the real parser ([`super::parse`]) and the real command table
//! ([`super::commands`]), so lint and the interpreter never disagree about what a script
//! means. Reported: non-UTF-8 text, syntax errors (`line:column`), unterminated `@Name:default`
//! tokens, unknown commands and wrong argument counts (also after `glob`), and, as warnings,
//! what parses but probably is not meant (an unterminated quote, `chmod 755`, which guestfish
//! reads as decimal).
//!
//! An unknown command spelled like a guestfish command (lower case, digits, `-`, `_`) is an
//! error: it is a typo or a command the engine does not run. Any other word (`Mixed_Case`)
//! cannot be a guestfish command at all; HPE's "fail OS deployment" scripts use exactly that
//! to fail a deployment on purpose, so it is only a warning. A line that is only an `@Attr@`
//! token is allowed (its value becomes the command).

use super::attributes::tokens;
use super::commands::{self, Verb};
use super::parse::{self, CommandKind};

/// How bad a finding is: errors fail the lint (exit status 1), warnings are only printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One problem, at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    fn error(line: usize, message: String) -> Self {
        Self {
            line,
            severity: Severity::Error,
            message,
        }
    }
}

/// Lints raw file content: reports non-UTF-8 text, then lints the text (invalid bytes
/// replaced) so one run shows every problem.
pub fn lint_bytes(bytes: &[u8]) -> Vec<Finding> {
    match std::str::from_utf8(bytes) {
        Ok(text) => lint(text),
        Err(e) => {
            let at = e.valid_up_to();
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            let mut out = vec![Finding::error(
                line,
                format!("not UTF-8 text (invalid byte at offset {at})"),
            )];
            out.extend(lint(&String::from_utf8_lossy(bytes)));
            out.sort_by_key(|f| f.line);
            out
        }
    }
}

/// Lints plan-script text.
pub fn lint(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        check_tokens(raw.strip_suffix('\r').unwrap_or(raw), i + 1, &mut out);
    }
    let script = match parse::parse(text) {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::error(
                e.line,
                format!("column {}: {}", e.column, e.message),
            ));
            out.sort_by_key(|f| f.line);
            return out;
        }
    };
    for w in script.warnings {
        out.push(Finding {
            line: w.line,
            severity: Severity::Warning,
            message: format!("column {}: {}", w.column, w.message),
        });
    }
    for c in &script.commands {
        let CommandKind::Guest { name, args, .. } = &c.kind else {
            continue;
        };
        if is_only_token(name) && args.is_empty() {
            continue;
        }
        check_command(name, args, c.line, &mut out);
    }
    out.sort_by_key(|f| f.line);
    out
}

fn check_command(name: &str, args: &[String], n: usize, out: &mut Vec<Finding>) {
    match commands::check_arity(name, args.len()) {
        Ok(Verb::Glob) => {
            if let Some((inner, rest)) = args.split_first() {
                check_command(inner, rest, n, out);
            }
        }
        Ok(Verb::Chmod) => {
            let mode = &args[0];
            if mode.len() > 1 && !mode.starts_with('0') && mode.bytes().all(|b| b.is_ascii_digit())
            {
                out.push(Finding {
                    line: n,
                    severity: Severity::Warning,
                    message: format!(
                        "chmod {mode}: guestfish reads this as decimal; write 0{mode} for octal"
                    ),
                });
            }
        }
        Ok(_) => {}
        Err(message) if commands::lookup(name).is_some() => out.push(Finding::error(n, message)),
        Err(_) => out.push(unknown(name, n)),
    }
}

/// The finding for a command the engine does not know.
fn unknown(cmd: &str, n: usize) -> Finding {
    let guestfish_like = cmd
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    Finding {
        line: n,
        severity: if guestfish_like {
            Severity::Error
        } else {
            Severity::Warning
        },
        message: if guestfish_like {
            format!("unknown guestfish command {cmd:?}")
        } else {
            format!("{cmd:?} is not a guestfish command: the script fails here when it runs")
        },
    }
}

/// A line that is exactly one `@Attr@` / `@Attr:default@` token.
fn is_only_token(line: &str) -> bool {
    let tokens = tokens::scan(line);
    tokens.len() == 1 && tokens[0].span == (0..line.len())
}

/// Reports `@Name:default` openings that never close on their line. `@@` is an escaped `@`.
fn check_tokens(line: &str, n: usize, out: &mut Vec<Finding>) {
    let mut from = 0;
    for t in tokens::scan(line) {
        scan_gap(line, from, t.span.start, n, out);
        from = t.span.end;
    }
    scan_gap(line, from, line.len(), n, out);
}

/// Looks for an unterminated `@Ident:` in `line[from..to]`, text with no valid token in it.
fn scan_gap(line: &str, from: usize, to: usize, n: usize, out: &mut Vec<Finding>) {
    let b = line.as_bytes();
    let mut i = from;
    while i < to {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'@') {
            i += 2;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        if j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'_') {
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
                j += 1;
            }
            if b.get(j) == Some(&b':') {
                out.push(Finding::error(
                    n,
                    format!(
                        "attribute @{}: has a default but no closing @ on this line",
                        &line[start..j]
                    ),
                ));
                return;
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(usize, String)> {
        lint(text)
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| (f.line, f.message))
            .collect()
    }

    #[test]
    fn clean_script_has_no_findings() {
        let s = "# comment\n\n-mount /dev/sda1 /\nupload -<<END /x\nanything @Host:web01@ goes\n  no command here\nEND\n!source ./x\n<!cat ./cmds\n@DeploymentTesting:Fail@\n-glob rm-rf /etc/ssh/ssh_host_*\nlist-filesystems | cat > ./fs\nmkdir_p /a\r\necho root@@@Node@ a@@b:c\n";
        assert_eq!(lint(s), vec![]);
    }

    #[test]
    fn unterminated_heredoc_reports_the_opening_line() {
        let e = errors("echo a\nupload -<<EOF /x\ntext\nEO\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, 2);
        assert!(e[0].1.contains("\"EOF\""), "{}", e[0].1);
        assert_eq!(errors("upload -<< /x\n")[0].0, 1);
    }

    #[test]
    fn malformed_token_and_unknown_commands() {
        let e = errors("echo @Host:web01\nmout /dev/sda1 /\n-glob rmrf /x\nglob\n");
        let lines: Vec<usize> = e.iter().map(|x| x.0).collect();
        assert_eq!(lines, vec![1, 2, 3, 4], "{e:?}");
        assert!(e[0].1.contains("@Host:"));
        assert!(e[1].1.contains("\"mout\""));
        assert!(e[2].1.contains("\"rmrf\""));
    }

    #[test]
    fn deliberate_failure_word_is_a_warning() {
        let f = lint("Intentionally_Fail_OS_Deployment\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
    }

    #[test]
    fn non_utf8_is_an_error_on_its_line() {
        let f = lint_bytes(b"echo a\necho \xff\n");
        assert_eq!(f[0].line, 2);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].message.contains("UTF-8"));
    }

    #[test]
    fn every_corpus_script_lints_without_errors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/planscripts");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: corpus not found at {}", dir.display());
            return;
        };
        let mut scripts = 0;
        let mut not_commands = Vec::new();
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            scripts += 1;
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            for f in lint_bytes(&bytes) {
                assert_eq!(
                    f.severity,
                    Severity::Warning,
                    "{name}:{}: {}",
                    f.line,
                    f.message
                );
                if f.message.contains("is not a guestfish command") {
                    not_commands.push(name.clone());
                }
            }
        }
        assert!(scripts >= 200, "only {scripts} scripts");
        // The one real script that fails a deployment on purpose with a non-command.
        assert_eq!(not_commands.len(), 1, "{not_commands:?}");
        assert!(
            not_commands[0].contains("fail_OS_deployment"),
            "{not_commands:?}"
        );
    }

    #[test]
    fn decimal_chmod_and_unterminated_quotes_are_warnings() {
        let f = lint("chmod 755 /x\nchmod 0755 /y\nrm-f /a'\n");
        let w: Vec<(usize, Severity)> = f.iter().map(|f| (f.line, f.severity)).collect();
        assert_eq!(w, vec![(1, Severity::Warning), (3, Severity::Warning)]);
    }
}
