//! `streamerctl plan-script lint`: the `planscript` crate's checks (the appliance's own) over
//! local files, offline.

use std::path::PathBuf;

use planscript::lint::{Severity, lint_bytes};

use crate::error::{EXIT_API, EXIT_OK};

/// Prints `file:line: severity: message` for each finding (line 0: the whole file); returns
/// the exit status: 1 if any file has an error or cannot be read.
pub fn run(files: &[PathBuf]) -> u8 {
    let mut failed = false;
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                println!("{}:0: error: cannot read: {e}", f.display());
                failed = true;
                continue;
            }
        };
        for finding in lint_bytes(&bytes) {
            failed |= finding.severity == Severity::Error;
            println!(
                "{}:{}: {}: {}",
                f.display(),
                finding.line,
                finding.severity,
                finding.message
            );
        }
    }
    if failed { EXIT_API } else { EXIT_OK }
}
