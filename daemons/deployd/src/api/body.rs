//! What a request carries besides its path: a JSON body, an `If-Match` header.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::records::IfMatch;

/// Parses a JSON body into `T`, naming the offending field on error.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "EMPTY_BODY",
            "The request body is empty: send a JSON object.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("The request body is not valid: {inner}.")
        } else {
            format!("Field {path} is not valid: {inner}.")
        };
        ApiError::bad_request("INVALID_JSON", msg)
    })
}

/// The request's `If-Match` (checked against the record by the domain).
pub fn if_match(headers: &HeaderMap) -> IfMatch {
    IfMatch(
        headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    )
}

/// Reads a body that is not an upload (JSON), bounded by the JSON limit.
pub async fn read_json_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, super::JSON_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("Reading the body: {e}.")))
}
