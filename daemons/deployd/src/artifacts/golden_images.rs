//! `/rest/golden-images`: the immutable disk images OS volumes are cloned from.
//!
//! The record holds HPE's fields; the content is a frozen storaged volume named by the golden
//! image id (`storageVolume` is its storaged id). Upload is multipart (`file`, with `name` and
//! `description` in the query or as form fields), streamed to disk, checked synchronously (a
//! bad zip is a 400), then imported by a task that completes once the volume exists. Download
//! exports the volume and serves HPE's format: a zip with one raw member named by the id.
//! Each golden image keeps a text activity log, served by `/archive/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::usage;
use super::{Collection, check_if_match, check_name, loose_bool, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::bundle::image::{self, Packing};
use crate::files;
use crate::meta::{Expect, Kind, Op, Record};
use crate::state::AppState;
use crate::storage::{Storage, StorageError};
use crate::tasks::{Associated, now_iso};
use crate::upload;

pub const GOLDEN_IMAGES: Collection = Collection {
    kind: Kind::GoldenImage,
    path: "/rest/golden-images",
    category: "golden-images",
    noun: "golden image",
    type_v3: "GoldenImage",
    type_v5: "GoldenImage",
    list_type: "GoldenImageCollection",
};

/// Activity log directory name.
const LOG: &str = "golden-images";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/golden-images",
            get(list).post(create).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/rest/golden-images/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/rest/golden-images/download/{id}", get(download))
        .route("/rest/golden-images/archive/{id}", get(archive))
}

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(format!("background work failed: {e}"))
}

fn name_of(r: &Record) -> String {
    r.value["name"].as_str().unwrap_or(&r.id).to_string()
}

/// Lists golden images.
#[utoipa::path(get, path = "/rest/golden-images", tag = "golden-images", params(ListQuery),
    responses((status = 200, description = "GoldenImage collection", body = Object),
              (status = 400, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = st
        .meta
        .list(Kind::GoldenImage)?
        .iter()
        .map(|r| GOLDEN_IMAGES.render(r, ctx.version))
        .collect();
    Ok(Json(envelope(
        GOLDEN_IMAGES.path,
        GOLDEN_IMAGES.category,
        GOLDEN_IMAGES.list_type,
        members,
        &q,
    )?))
}

/// One golden image.
#[utoipa::path(get, path = "/rest/golden-images/{id}", tag = "golden-images",
    responses((status = 200, description = "GoldenImage", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        GOLDEN_IMAGES.render(&GOLDEN_IMAGES.get(&st, &id)?, ctx.version),
    ))
}

/// Query of an upload (Python SDK style).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// The JSON form of `POST /rest/golden-images`: a capture from an OS volume.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaptureInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub image_capture: bool,
    #[serde(default, rename = "osVolumeURI")]
    pub os_volume_uri: Option<String>,
    #[serde(default)]
    pub build_plan_uri: Option<String>,
}

/// A capture request whose references were checked: the OS volume exists, and the build plan
/// exists and is a capture plan.
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    pub name: String,
    pub description: String,
    pub os_volume: Record,
    pub build_plan: Record,
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
    if upload::is_multipart(&req) {
        return create_from_upload(st, ctx, q, req).await;
    }
    let body = axum::body::to_bytes(req.into_body(), crate::api::JSON_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("Reading the body: {e}.")))?;
    let input: CaptureInput = parse_body(&body)?;
    let capture = validate_capture(&st, input)?;
    start_capture(&st, &ctx, capture)
}

/// Checks a capture request's references, naming everything that is missing or wrong.
pub fn validate_capture(st: &AppState, input: CaptureInput) -> Result<CaptureRequest, ApiError> {
    if !input.image_capture {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            "To add a golden image from a file, POST it as multipart/form-data (part \"file\"); \
             to capture one from an OS volume, send imageCapture: true with osVolumeURI and \
             buildPlanUri.",
        ));
    }
    check_name("golden image", &input.name)?;
    GOLDEN_IMAGES.check_name_free(st, &input.name, None)?;
    let mut problems = Vec::new();
    let os_volume = match input.os_volume_uri.as_deref().filter(|s| !s.is_empty()) {
        None => {
            problems.push("osVolumeURI is missing".to_string());
            None
        }
        Some(uri) => {
            let found = super::os_volumes::OS_VOLUMES
                .id_in(uri)
                .map(|id| st.meta.get(Kind::OsVolume, id))
                .transpose()?
                .flatten();
            if found.is_none() {
                problems.push(format!("the OS volume {uri} does not exist"));
            }
            found
        }
    };
    let build_plan = match input.build_plan_uri.as_deref().filter(|s| !s.is_empty()) {
        None => {
            problems.push("buildPlanUri is missing".to_string());
            None
        }
        Some(uri) => {
            let found = uri
                .strip_prefix("/rest/build-plans/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(|id| st.meta.get(Kind::BuildPlan, id))
                .transpose()?
                .flatten();
            match found {
                None => {
                    problems.push(format!("the build plan {uri} does not exist"));
                    None
                }
                Some(bp) => {
                    let kind = bp.value["oeBuildPlanType"].as_str().unwrap_or_default();
                    if kind.eq_ignore_ascii_case("capture") {
                        Some(bp)
                    } else {
                        problems.push(format!(
                            "the build plan {uri} ({:?}) is a {kind} plan, not a capture plan",
                            name_of(&bp)
                        ));
                        None
                    }
                }
            }
        }
    };
    match (os_volume, build_plan) {
        (Some(os_volume), Some(build_plan)) if problems.is_empty() => Ok(CaptureRequest {
            name: input.name,
            description: input.description.unwrap_or_default(),
            os_volume,
            build_plan,
        }),
        _ => Err(ApiError::bad_request(
            "INVALID_CAPTURE_REQUEST",
            format!(
                "The golden image cannot be captured: {}.",
                problems.join("; ")
            ),
        )),
    }
}

/// Starts the capture (see `crate::deploy::capture`): 202 with a task whose resource is the
/// new golden image.
pub fn start_capture(
    st: &Arc<AppState>,
    ctx: &Ctx,
    req: CaptureRequest,
) -> Result<Response, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let task = st.tasks.start(
        "Add",
        ctx.user(),
        &Associated {
            category: GOLDEN_IMAGES.category.into(),
            name: req.name.clone(),
            uri: GOLDEN_IMAGES.uri(&id),
        },
    )?;
    let bg = Arc::clone(st);
    let t = task.clone();
    tokio::spawn(async move { crate::deploy::capture::run(bg, req, id, t).await });
    Ok(task.accepted())
}

async fn create_from_upload(
    st: Arc<AppState>,
    ctx: Ctx,
    q: UploadQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let mut up = upload::receive(&st, req).await?;
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
    check_name("golden image", &name)?;
    GOLDEN_IMAGES.check_name_free(&st, &name, None)?;
    let claims_zip = up
        .file_name
        .as_deref()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".zip"));
    let mut f = up
        .file
        .reopen()
        .map_err(|e| ApiError::Internal(format!("reopening the upload: {e}")))?;
    let packing = tokio::task::spawn_blocking(move || image::sniff(&mut f, claims_zip))
        .await
        .map_err(join_error)??;
    let id = uuid::Uuid::new_v4().to_string();
    let uri = GOLDEN_IMAGES.uri(&id);
    let task = st.tasks.start(
        "Add",
        ctx.user(),
        &Associated {
            category: GOLDEN_IMAGES.category.into(),
            name: name.clone(),
            uri: uri.clone(),
        },
    )?;
    let origin = up.file_name.clone().unwrap_or_else(|| name.clone());
    let bg = Arc::clone(&st);
    let t = task.clone();
    tokio::spawn(async move {
        t.progress(10, "Importing the image");
        let r = async {
            let path = up.file.path().to_path_buf();
            let info = import_image(&bg, &id, &path, packing, &origin).await?;
            drop(up);
            let record = json!({
                "name": name,
                "description": description,
                "size": info.size,
                "checkSum": info.checksum,
                "imageCapture": false,
                "readOnly": false,
                "importedFromBundle": false,
                "bundleName": null,
                "bundleURI": null,
                "osVolumeURI": null,
                "buildPlanUri": null,
                "storageVolume": info.volume,
                "created": now_iso(),
                "modified": now_iso(),
            });
            let stored = GOLDEN_IMAGES
                .check_name_free(&bg, &name, None)
                .and_then(|()| {
                    Ok(bg.meta.apply(vec![Op::Put {
                        kind: Kind::GoldenImage,
                        id: id.clone(),
                        value: record,
                        expect: Expect::Absent,
                    }])?)
                });
            if let Err(e) = stored {
                Storage::new(&bg.config.storaged_socket)
                    .delete_quietly(std::slice::from_ref(&info.volume))
                    .await;
                return Err(e);
            }
            files::log(
                &bg,
                LOG,
                &id,
                &format!(
                    "imported from uploaded file {origin:?} ({packing:?}): {} bytes, {}",
                    info.size, info.checksum
                ),
            );
            Ok::<_, ApiError>(())
        }
        .await;
        match r {
            Ok(()) => t.complete(Some(&uri), "Golden image added"),
            Err(e) => t.fail(&e),
        }
    });
    Ok(task.accepted())
}

/// A golden image volume in storaged.
#[derive(Debug, Clone)]
pub struct ImportedVolume {
    /// storaged's volume id.
    pub volume: String,
    pub size: u64,
    /// `sha256:<hex>` of the content.
    pub checksum: String,
}

/// Unpacks the image file at `path` and imports it into storaged as frozen volume `name`.
pub async fn import_image(
    st: &AppState,
    name: &str,
    path: &std::path::Path,
    packing: Packing,
    origin: &str,
) -> Result<ImportedVolume, ApiError> {
    let tmp_dir = files::tmp_dir(st);
    let limit = st.config.max_image_bytes;
    let src = path.to_path_buf();
    let unpacked =
        tokio::task::spawn_blocking(move || image::unpack(&src, packing, &tmp_dir, limit))
            .await
            .map_err(join_error)??;
    let file = match &unpacked {
        Some(t) => t.reopen(),
        None => std::fs::File::open(path),
    }
    .map_err(|e| ApiError::Internal(format!("opening the unpacked image: {e}")))?;
    let info = Storage::new(&st.config.storaged_socket)
        .import_frozen(name, &file, origin)
        .await
        .map_err(|e| match e {
            StorageError::Refused(m) => ApiError::bad_request(
                "INVALID_GOLDEN_IMAGE_FILE",
                format!("The image could not be imported: {m}."),
            ),
            other => other.into(),
        })?;
    Ok(ImportedVolume {
        volume: info.record.id,
        size: info.record.size,
        checksum: info.record.checksum.unwrap_or_default(),
    })
}

/// What a PUT may change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoldenImageUpdate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
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
    let current = GOLDEN_IMAGES.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    let input: GoldenImageUpdate = parse_body(&body)?;
    check_name("golden image", &input.name)?;
    if current.value["readOnly"].as_bool() == Some(true) {
        return Err(ApiError::conflict(
            "READ_ONLY",
            format!("The golden image {:?} is read-only.", name_of(&current)),
            "Read-only golden images come from read-only artifact bundles and cannot be changed.",
        ));
    }
    GOLDEN_IMAGES.check_name_free(&st, &input.name, Some(&id))?;
    let mut value = current.value.clone();
    value["name"] = json!(input.name);
    if let Some(d) = &input.description {
        value["description"] = json!(d);
    }
    value["modified"] = json!(now_iso());
    GOLDEN_IMAGES.replace(&st, ctx.user(), &current, value)
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
    let current = GOLDEN_IMAGES.get(&st, &id)?;
    check_if_match(&headers, &current)?;
    let name = name_of(&current);
    let uri = GOLDEN_IMAGES.uri(&id);
    usage::refuse_if_used(&st, "golden image", &name, &uri)?;
    let storage = Storage::new(&st.config.storaged_socket);
    let volume = current.value["storageVolume"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !volume.is_empty() {
        match storage.info(&volume).await {
            Ok(info) if !info.children.is_empty() => {
                return Err(ApiError::conflict(
                    "RESOURCE_IN_USE",
                    format!(
                        "The golden image {name:?} is the base of {} OS volume(s).",
                        info.children.len()
                    ),
                    "Delete the OS volumes deployed from it first.",
                ));
            }
            Ok(_) | Err(StorageError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    st.meta.apply(vec![Op::Delete {
        kind: Kind::GoldenImage,
        id: id.clone(),
        expect: Expect::Revision(current.revision),
    }])?;
    if !volume.is_empty()
        && let Err(e) = storage.delete(&volume).await
    {
        tracing::error!("golden image {id} deleted, but its volume {volume} was not: {e}");
    }
    files::remove_log(&st, LOG, &id);
    let task = st.tasks.start(
        "Delete",
        ctx.user(),
        &Associated {
            category: GOLDEN_IMAGES.category.into(),
            name,
            uri,
        },
    )?;
    task.complete(None, "Golden image deleted");
    Ok(task.accepted())
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
    let current = GOLDEN_IMAGES.get(&st, &id)?;
    let zip = zip_of_image(&st, &current).await?;
    Ok(files::stream_file(
        zip,
        "application/zip",
        &format!("{}.zip", name_of(&current)),
    ))
}

/// Exports the image of golden image `r` to an unlinked temporary raw file.
pub async fn export_raw(st: &AppState, r: &Record) -> Result<std::fs::File, ApiError> {
    let volume = r.value["storageVolume"].as_str().unwrap_or_default();
    if volume.is_empty() {
        return Err(ApiError::Internal(format!(
            "golden image {} has no volume",
            r.id
        )));
    }
    let raw = files::temp_file(st)?;
    Storage::new(&st.config.storaged_socket)
        .export_raw(volume, raw.as_file())
        .await?;
    Ok(raw.into_file())
}

async fn zip_of_image(st: &AppState, r: &Record) -> Result<std::fs::File, ApiError> {
    let mut raw = export_raw(st, r).await?;
    let zip = files::temp_file(st)?;
    let id = r.id.clone();
    let zip = tokio::task::spawn_blocking(move || {
        let mut zip = zip;
        image::pack_zip(&mut raw, &id, zip.as_file_mut()).map(|()| zip)
    })
    .await
    .map_err(join_error)??;
    Ok(zip.into_file())
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
    let current = GOLDEN_IMAGES.get(&st, &id)?;
    let text = files::read_log(&st, LOG, &current.id)?;
    Ok(files::text_download(text, &format!("{id}.log")))
}

/// Appends to a golden image's activity log (used by bundle extraction and capture).
pub fn log(st: &AppState, id: &str, line: &str) {
    files::log(st, LOG, id, line);
}
