//! `/rest/golden-images`: the immutable disk images OS volumes are cloned from.
//!
//! Upload is multipart (`file`, with `name` and `description` in the query or as form
//! fields), streamed to disk, checked synchronously (a bad zip is a 400), then imported by a
//! task that completes once the volume exists. A JSON body captures one from an OS volume
//! instead. Download serves HPE's format: a zip with one raw member named by the id.
//! `/archive/{id}` serves the image's activity log.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use super::crud::{self, Resource};
use crate::api::body::{if_match, parse_body, read_json_body};
use crate::api::download::{stream_file, text_download};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::task::accepted;
use crate::api::transport::Ctx;
use crate::api::upload;
use crate::domain::collection::{Collection, GOLDEN_IMAGES};
use crate::domain::deploy::capture;
use crate::domain::golden_images::{self, CaptureInput, GoldenImageUpdate, Upload};
use crate::domain::records::{self, name_of};
use crate::meta::Record;
use crate::state::AppState;

/// The golden images, served by the generic list and read.
#[derive(Debug)]
pub struct GoldenImages;

impl Resource for GoldenImages {
    const COLLECTION: &'static Collection = &GOLDEN_IMAGES;
    const PLURAL: &'static str = "golden images";

    /// On a pair, `redundant`: whether the other node holds a current copy (false while it
    /// is Outdated or being resynced; the image is `ready` on this node all the same).
    fn render(st: &AppState, r: &Record, ctx: &Ctx) -> Value {
        let mut v = crud::render(Self::COLLECTION, r, ctx.version);
        if let Some(redundant) = st.services.storage.redundant() {
            v["redundant"] = redundant.into();
        }
        v
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/golden-images",
            get(crud::list::<GoldenImages>)
                .post(create)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/rest/golden-images/{id}",
            get(crud::read::<GoldenImages>).put(update).delete(remove),
        )
        .route("/rest/golden-images/download/{id}", get(download))
        .route("/rest/golden-images/archive/{id}", get(archive))
}

/// Query of an upload (Python SDK style).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Adds a golden image: multipart upload of an image file, or JSON capture from an OS volume.
/// Answers 202 with a task whose resource is the new golden image.
#[utoipa::path(post, path = "/rest/golden-images", tag = "golden-images", params(UploadQuery),
    request_body(content = CaptureInput, description = "multipart/form-data with `file` (a golden image .zip; gzip, qcow2 or raw also accepted) and optional `name`/`description` fields; or JSON to capture"),
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let s = &st.services;
    if !upload::is_multipart(&req) {
        let body = read_json_body(req.into_body()).await?;
        let input: CaptureInput = parse_body(&body)?;
        let request = golden_images::validate_capture(s, input)?;
        let task = capture::start(s, ctx.user(), request)?;
        return Ok(accepted(&s.tasks, &task));
    }
    let mut up = upload::receive(&s.files, st.config.max_upload_bytes, req).await?;
    let name = q
        .name
        .or_else(|| up.fields.remove("name"))
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_NAME",
                "The golden image needs a name: send name in the query or as a form field.",
            )
        })?;
    let description = q
        .description
        .or_else(|| up.fields.remove("description"))
        .unwrap_or_default();
    let task = golden_images::add_from_upload(
        s,
        ctx.user(),
        Upload {
            name,
            description,
            file: up.file,
            file_name: up.file_name,
        },
    )
    .await?;
    Ok(accepted(&s.tasks, &task))
}

/// Renames or re-describes a golden image (the content is immutable); 202 with a completed
/// task. Read-only images are refused (409).
#[utoipa::path(put, path = "/rest/golden-images/{id}", tag = "golden-images",
    request_body = GoldenImageUpdate,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn update(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = records::current(&*s.meta, &GOLDEN_IMAGES, &id, &if_match(&headers))?;
    let input: GoldenImageUpdate = parse_body(&body)?;
    let task = golden_images::update(s, ctx.user(), &current, &input)?;
    Ok(accepted(&s.tasks, &task))
}

/// Deletes a golden image and its volume; refused (409) while a deployment plan uses it or
/// OS volumes are cloned from it. Answers 202 with a completed task named "Delete".
#[utoipa::path(delete, path = "/rest/golden-images/{id}", tag = "golden-images",
    responses((status = 202, description = "TaskResourceV2 named Delete", body = Object),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = records::current(&*s.meta, &GOLDEN_IMAGES, &id, &if_match(&headers))?;
    let task = golden_images::delete(s, ctx.user(), &current).await?;
    Ok(accepted(&s.tasks, &task))
}

/// Downloads the image as HPE's golden image zip (one raw member named by the id).
#[utoipa::path(get, path = "/rest/golden-images/download/{id}", tag = "golden-images",
    responses((status = 200, description = "application/zip", content_type = "application/zip", body = Vec<u8>),
              (status = 404, body = ErrorBody)))]
pub async fn download(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = records::get(&*s.meta, &GOLDEN_IMAGES, &id)?;
    let zip = golden_images::zip_of_image(s, &current).await?;
    Ok(stream_file(
        zip,
        "application/zip",
        &format!("{}.zip", name_of(&current)),
    ))
}

/// The golden image's activity log (import, capture), as text.
#[utoipa::path(get, path = "/rest/golden-images/archive/{id}", tag = "golden-images",
    responses((status = 200, description = "text/plain log", content_type = "text/plain", body = String),
              (status = 404, body = ErrorBody)))]
pub async fn archive(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = records::get(&*s.meta, &GOLDEN_IMAGES, &id)?;
    let text = golden_images::read_log(s, &current.id)?;
    Ok(text_download(text, &format!("{id}.log")))
}
