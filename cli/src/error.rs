//! What can go wrong, and the exit status each failure maps to.

use serde_json::Value;

/// Exit status: the command did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the API refused the request, or a task ended in error (or lint found errors).
pub const EXIT_API: u8 = 1;
/// Exit status: the command line is wrong, or there is no session (run `login`).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: no connection (refused, timeout, TLS) or a local file could not be used.
pub const EXIT_LOCAL: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An HPE ErrorMessage body (or a non-JSON error response).
    #[error("{}", api_text(.status, .body))]
    Api { status: u16, body: Value },
    /// A task ended in a failed state; the errors are its `taskErrors`.
    #[error("{}", task_text(.task))]
    Task { task: Value },
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {url}: {source}")]
    Connection {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } | Self::Task { .. } => EXIT_API,
            Self::Usage(_) => EXIT_USAGE,
            Self::Connection { .. } | Self::File { .. } => EXIT_LOCAL,
        }
    }

    pub fn file(what: &'static str, path: impl AsRef<std::path::Path>, e: std::io::Error) -> Self {
        Self::File {
            what,
            path: path.as_ref().display().to_string(),
            source: e,
        }
    }
}

/// `error: <message> (<errorCode>)` and the recommended actions, one per line.
pub fn error_message_text(e: &Value) -> String {
    let message = e["message"].as_str().unwrap_or("(no message)");
    let mut out = match e["errorCode"].as_str() {
        Some(code) if !code.is_empty() => format!("{message} ({code})"),
        _ => message.to_string(),
    };
    if let Some(details) = e["details"].as_str().filter(|d| !d.is_empty()) {
        out.push_str(&format!("\n  details: {details}"));
    }
    for a in e["recommendedActions"].as_array().into_iter().flatten() {
        if let Some(a) = a.as_str() {
            out.push_str(&format!("\n  recommended action: {a}"));
        }
    }
    for nested in e["nestedErrors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  nested: {}",
            error_message_text(nested).replace('\n', "\n  ")
        ));
    }
    out
}

fn api_text(status: &u16, body: &Value) -> String {
    if body.get("message").is_some() || body.get("errorCode").is_some() {
        error_message_text(body)
    } else {
        match body {
            Value::String(s) if !s.is_empty() => format!("HTTP {status}: {s}"),
            Value::Null => format!("HTTP {status}"),
            other => format!("HTTP {status}: {other}"),
        }
    }
}

fn task_text(task: &Value) -> String {
    let name = task["name"].as_str().unwrap_or("task");
    let state = task["taskState"].as_str().unwrap_or("?");
    let uri = task["uri"].as_str().unwrap_or("");
    let errors: Vec<String> = task["taskErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(error_message_text)
        .collect();
    if errors.is_empty() {
        let status = task["taskStatus"].as_str().unwrap_or("");
        format!("{name} task {uri} ended {state}: {status}")
    } else {
        format!(
            "{name} task {uri} ended {state}: {}",
            errors.join("\nerror: ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpe_error_body_shows_code_and_actions() {
        let e = CliError::Api {
            status: 409,
            body: json!({"errorCode": "DUPLICATE_NAME", "message": "Name in use.",
                         "recommendedActions": ["Pick another name."]}),
        };
        assert_eq!(
            e.to_string(),
            "Name in use. (DUPLICATE_NAME)\n  recommended action: Pick another name."
        );
        assert_eq!(e.exit_code(), EXIT_API);
    }

    #[test]
    fn failed_task_lists_its_errors() {
        let e = CliError::Task {
            task: json!({"name": "Extract", "taskState": "Error", "uri": "/rest/tasks/1",
                         "taskErrors": [{"message": "bad zip", "errorCode": "INVALID_BUNDLE"}]}),
        };
        assert_eq!(
            e.to_string(),
            "Extract task /rest/tasks/1 ended Error: bad zip (INVALID_BUNDLE)"
        );
    }
}
