//! File uploads as the HPE SDKs send them: multipart/form-data with the content in the part
//! named `file`, extra values (golden image `name`, `description`) as further parts (Ruby) or
//! in the query (Python).
//!
//! The content is streamed to a temporary file in the state directory, never held in memory,
//! and bounded by `Config::max_upload_bytes`. A cut or malformed upload is a 400 and its
//! temporary file is removed.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Request};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use crate::services::files::StateFiles;

/// Largest text part accepted beside the file.
const FIELD_LIMIT: usize = 64 << 10;

/// A received upload.
#[derive(Debug)]
pub struct Upload {
    /// The content (removed when dropped unless persisted).
    pub file: NamedTempFile,
    /// The client's name for it: the part's filename or the `uploadfilename` header.
    pub file_name: Option<String>,
    pub size: u64,
    /// The other parts, by name.
    pub fields: HashMap<String, String>,
}

fn cut(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "INVALID_UPLOAD",
        format!("The upload is incomplete or not valid multipart/form-data: {e}."),
    )
}

/// Whether the request carries a multipart body.
pub fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Receives a multipart upload of at most `max` bytes into a temporary file of `files`.
pub async fn receive(files: &StateFiles, max: u64, req: Request) -> Result<Upload, ApiError> {
    if !is_multipart(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "Uploads must be multipart/form-data with the content in a part named \"file\".".into(),
        ));
    }
    let header_name = req
        .headers()
        .get("uploadfilename")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut multipart = Multipart::from_request(req, &()).await.map_err(cut)?;
    let mut fields = HashMap::new();
    let mut received: Option<(NamedTempFile, Option<String>, u64)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(cut)? {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        if name == "file" || (file_name.is_some() && received.is_none() && name != "name") {
            if received.is_some() {
                return Err(ApiError::bad_request(
                    "INVALID_UPLOAD",
                    "The upload has more than one file part: send exactly one, named \"file\".",
                ));
            }
            let tmp = files.temp_file().map_err(ApiError::internal)?;
            let std_file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| ApiError::Internal(format!("temporary file: {e}")))?;
            let mut out = tokio::fs::File::from_std(std_file);
            let mut size = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(cut)? {
                size += chunk.len() as u64;
                if size > max {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "The uploaded file exceeds the limit of {max} bytes."
                    )));
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|e| ApiError::Internal(format!("writing the upload: {e}")))?;
            }
            out.flush()
                .await
                .map_err(|e| ApiError::Internal(format!("writing the upload: {e}")))?;
            received = Some((tmp, file_name, size));
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(cut)? {
                text.extend_from_slice(&chunk);
                if text.len() > FIELD_LIMIT {
                    return Err(ApiError::bad_request(
                        "INVALID_UPLOAD",
                        format!("The form field {name:?} is longer than {FIELD_LIMIT} bytes."),
                    ));
                }
            }
            let text = String::from_utf8(text).map_err(|_| {
                ApiError::bad_request(
                    "INVALID_UPLOAD",
                    format!("The form field {name:?} is not UTF-8 text."),
                )
            })?;
            fields.insert(name, text);
        }
    }
    let Some((file, part_name, size)) = received else {
        return Err(ApiError::bad_request(
            "INVALID_UPLOAD",
            "The upload has no file: send it in a multipart part named \"file\".",
        ));
    };
    if size == 0 {
        return Err(ApiError::bad_request(
            "INVALID_UPLOAD",
            "The uploaded file is empty.",
        ));
    }
    Ok(Upload {
        file,
        file_name: header_name.or(part_name),
        size,
        fields,
    })
}
