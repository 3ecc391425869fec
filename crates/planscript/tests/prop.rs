//! Property tests of the language on generated scripts: parsing and linting never panic,
//! whatever the input (plan scripts come from bundles and administrators).
#![allow(clippy::unwrap_used)]

use planscript::commands::names;
use planscript::lint::{lint, lint_bytes};
use planscript::parse::parse;
use proptest::prelude::*;

/// Pieces plan scripts are made of, including the awkward ones: quotes left open,
/// here-documents without their end, backslashes, attribute references, local commands.
fn piece() -> impl Strategy<Value = String> {
    let verbs: Vec<String> = names().map(str::to_owned).collect();
    prop_oneof![
        proptest::sample::select(verbs),
        Just("!".to_owned()),
        Just("<!".to_owned()),
        Just("-".to_owned()),
        Just(" | ".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("<<END".to_owned()),
        Just("END".to_owned()),
        Just("-<<EOF ".to_owned()),
        Just("@Name@".to_owned()),
        Just("@Nic.ipaddress:10.0.0.1@".to_owned()),
        Just("@".to_owned()),
        Just("#".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just("/etc/hostname".to_owned()),
        Just("/dev/sda1".to_owned()),
        "[ -~]{0,12}",
        "\\PC{0,4}",
    ]
}

fn script() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 0..60).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_and_lint_never_panic(text in script()) {
        let _ = parse(&text);
        let _ = lint(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = lint_bytes(&bytes);
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    /// What parses keeps its lines in order and within the text.
    #[test]
    fn parsed_lines_are_within_the_script(text in script()) {
        if let Ok(s) = parse(&text) {
            let lines = text.lines().count().max(1);
            let mut last = 0;
            for c in &s.commands {
                prop_assert!(c.line >= 1 && c.line <= lines + 1, "line {} of {}", c.line, lines);
                prop_assert!(c.line >= last);
                last = c.line;
            }
        }
    }
}

#[test]
fn a_megabyte_of_script_parses() {
    let line = "write /etc/motd \"@Name@ \\\"quoted\\\" text\"\n";
    let text = line.repeat((1 << 20) / line.len());
    let parsed = parse(&text).unwrap();
    let _ = lint(&text);
    assert_eq!(parsed.commands.len(), text.lines().count());
}
