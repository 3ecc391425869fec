//! Files deployd keeps beside its database: uploads in progress (`tmp/`), stored artifact
//! bundles (`bundles/`), and per-resource activity logs (`logs/<collection>/<id>.log`).
//!
//! Temporary files are `tempfile::NamedTempFile`s in `tmp/`: dropped on every error path, so
//! a failed upload or import leaves nothing behind; `tmp/` is emptied at start for the files a
//! crash left.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tempfile::NamedTempFile;

use crate::api::error::ApiError;
use crate::state::AppState;

pub fn tmp_dir(st: &AppState) -> PathBuf {
    st.config.state_dir.join("tmp")
}

pub fn bundles_dir(st: &AppState) -> PathBuf {
    st.config.state_dir.join("bundles")
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::Internal(format!("{what}: {e}"))
}

/// Creates the directories and removes temporary files a previous process left.
pub fn prepare(state_dir: &Path) -> std::io::Result<()> {
    let tmp = state_dir.join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    for d in ["tmp", "bundles", "logs"] {
        std::fs::create_dir_all(state_dir.join(d))?;
    }
    Ok(())
}

/// A new temporary file in the state directory (removed when dropped).
pub fn temp_file(st: &AppState) -> Result<NamedTempFile, ApiError> {
    temp_file_in(&tmp_dir(st))
}

pub fn temp_file_in(dir: &Path) -> Result<NamedTempFile, ApiError> {
    std::fs::create_dir_all(dir).map_err(io_error("creating the temporary directory"))?;
    NamedTempFile::new_in(dir).map_err(io_error("creating a temporary file"))
}

/// A response streaming `file` (already unlinked or kept, as the caller decides) in chunks.
pub fn stream_file(file: File, content_type: &str, download_name: &str) -> Response {
    let len = file.metadata().map(|m| m.len()).ok();
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let disposition = format!(
        "attachment; filename=\"{}\"",
        download_name.replace(['"', '\\', '\r', '\n'], "_")
    );
    let mut resp = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    if let Some(len) = len {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    resp
}

fn log_path(st: &AppState, collection: &str, id: &str) -> PathBuf {
    st.config
        .state_dir
        .join("logs")
        .join(collection)
        .join(format!("{id}.log"))
}

/// Appends a timestamped line to the activity log of resource `collection/id`.
pub fn log(st: &AppState, collection: &str, id: &str, line: &str) {
    let path = log_path(st, collection, id);
    let r = (|| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(f, "{} {line}", crate::tasks::now_iso())
    })();
    if let Err(e) = r {
        tracing::warn!("activity log {}: {e}", path.display());
    }
}

/// The activity log of a resource ("" if nothing was logged).
pub fn read_log(st: &AppState, collection: &str, id: &str) -> Result<String, ApiError> {
    match std::fs::read_to_string(log_path(st, collection, id)) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ApiError::Internal(format!("reading the activity log: {e}"))),
    }
}

pub fn remove_log(st: &AppState, collection: &str, id: &str) {
    let _ = std::fs::remove_file(log_path(st, collection, id));
}

/// A plain-text download of `text`.
pub fn text_download(text: String, download_name: &str) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{download_name}\""),
            ),
        ],
        text,
    )
        .into_response()
}

/// Writes a file only its owner can read (0600), atomically: keys and passwords.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic(path, data, 0o600)
}

/// Replaces `path` with `data` so that a power cut leaves the old file or the new one, never
/// a part: a synced temporary file beside it, renamed over it, then the directory synced.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    let tmp = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}
