//! `streamerctl plan-script lint`: the `planscript` crate's checks (the appliance's own) over
//! local files, offline; or, with `--appliance`, the logged-in appliance's
//! `POST /rest/plan-scripts/lint` (the checks of the software it runs).

use std::path::PathBuf;

use planscript::lint::{Severity, lint_bytes};
use reqwest::Method;
use serde_json::json;

use crate::client::Api;
use crate::error::{CliError, EXIT_API, EXIT_OK};

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

/// As [`run`], the findings coming from the appliance (a file that cannot be read is an
/// error here, not sent).
pub fn run_on(api: &Api, files: &[PathBuf]) -> Result<u8, CliError> {
    let mut failed = false;
    for f in files {
        let text = match std::fs::read(f) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                println!("{}:0: error: cannot read: {e}", f.display());
                failed = true;
                continue;
            }
        };
        let answer = api.call(
            Method::POST,
            "/rest/plan-scripts/lint",
            Some(&json!({ "content": text })),
        )?;
        for finding in answer.body["findings"].as_array().into_iter().flatten() {
            let severity = finding["severity"].as_str().unwrap_or("error");
            failed |= severity == "error";
            println!(
                "{}:{}: {severity}: {}",
                f.display(),
                finding["line"].as_u64().unwrap_or(0),
                finding["message"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(if failed { EXIT_API } else { EXIT_OK })
}
