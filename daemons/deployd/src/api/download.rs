//! Downloads: a file streamed in chunks (golden images, bundles), or a text (activity logs).

use std::fs::File;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

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
