//! `/rest/artifact-bundles`: bundles of artifacts, uploaded (multipart), created from the
//! appliance's artifacts (JSON), extracted (`PUT ?extract=true`), renamed, downloaded,
//! deleted; and the backup (a bundle of every artifact, only one kept) under `/backups`.
//! Every change answers 202 with a task (completed at once where nothing runs long).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::crud;
use crate::api::body::{parse_body, read_json_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::download::stream_file;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::task::accepted;
use crate::api::transport::Ctx;
use crate::api::upload;
use crate::domain::DomainError;
use crate::domain::artifact_bundles::{
    self as bundles, BACKUPS, BackupInput, BundleInput, file_of, is_backup, uri_of,
};
use crate::domain::collection::ARTIFACT_BUNDLES;
use crate::meta::Record;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/rest/artifact-bundles",
            get(list).post(create).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/rest/artifact-bundles/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/rest/artifact-bundles/download/{id}", get(download))
        .route(
            "/rest/artifact-bundles/backups",
            get(list_backups).post(create_backup),
        )
        .route(
            "/rest/artifact-bundles/backups/{id}",
            get(read_backup).put(restore_backup),
        )
        .route(
            "/rest/artifact-bundles/backups/archive/{id}",
            get(download_backup),
        )
        .route("/rest/artifact-bundles/{id}/stopArtifactCreate", put(stop))
}

fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = crud::render(&ARTIFACT_BUNDLES, r, ctx.version);
    doc["uri"] = json!(uri_of(r));
    doc["artifactsbundleID"] = json!(r.id);
    doc["downloadURI"] = json!(if is_backup(r) {
        format!("{BACKUPS}/archive/{}", r.id)
    } else {
        format!("/rest/artifact-bundles/download/{}", r.id)
    });
    doc
}

fn listed(st: &AppState, ctx: &Ctx, backup: bool) -> Result<Vec<Value>, ApiError> {
    Ok(bundles::list(&*st.services.meta, backup)?
        .iter()
        .map(|r| render(r, ctx))
        .collect())
}

/// Lists artifact bundles (backups excluded).
#[utoipa::path(get, path = "/rest/artifact-bundles", tag = "artifact-bundles", params(ListQuery),
    responses((status = 200, description = "ArtifactsBundle collection", body = Object)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = listed(&st, &ctx, false)?;
    crud::collection_of(&ARTIFACT_BUNDLES, members, &q)
}

/// One artifact bundle.
#[utoipa::path(get, path = "/rest/artifact-bundles/{id}", tag = "artifact-bundles",
    responses((status = 200, description = "ArtifactsBundle", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(
        &bundles::get(&*st.services.meta, &id, false)?,
        &ctx,
    )))
}

/// Uploads a bundle zip (multipart `file`), or creates one from artifacts (JSON). Both answer
/// 202 with a task whose resource is the bundle. An upload is verified before the answer
/// (layout, manifest, every checksum): a bad bundle is a 400 naming the file at fault.
#[utoipa::path(post, path = "/rest/artifact-bundles", tag = "artifact-bundles",
    request_body(content = BundleInput, description = "JSON to create from artifacts, or multipart/form-data with the bundle zip in `file`"),
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    req: Request,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let task = if upload::is_multipart(&req) {
        let up = upload::receive(&s.files, st.config.max_upload_bytes, req).await?;
        bundles::upload(s, ctx.user(), up.file, up.file_name).await?
    } else {
        let body = read_json_body(req.into_body()).await?;
        let input: BundleInput = parse_body(&body)?;
        bundles::create(s, ctx.user(), &input)?
    };
    Ok(accepted(&s.tasks, &task))
}

/// Query of `PUT /rest/artifact-bundles/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ExtractQuery {
    #[serde(default)]
    pub extract: Option<String>,
    /// Accepted for compatibility: name clashes are always resolved by renaming.
    #[serde(default)]
    pub force_import: Option<String>,
}

/// Extracts a bundle (`?extract=true`, any body; 202 with a task) or renames it (JSON
/// `{"name": ...}`; 202 with a completed task).
#[utoipa::path(put, path = "/rest/artifact-bundles/{id}", tag = "artifact-bundles", params(ExtractQuery),
    request_body(content = String, description = "empty (text/plain) to extract, or {\"name\": ...} to rename"),
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<ExtractQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = bundles::get(&*s.meta, &id, false)?;
    let extract = q
        .extract
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("true"));
    let task = if extract {
        bundles::start_extract(s, ctx.user(), current)?
    } else {
        #[derive(Deserialize)]
        struct Rename {
            name: String,
        }
        let input: Rename = parse_body(&body)?;
        bundles::rename(s, ctx.user(), &current, &input.name)?
    };
    Ok(accepted(&s.tasks, &task))
}

/// Deletes a bundle (its artifacts stay); 202 with a completed task named "Delete".
#[utoipa::path(delete, path = "/rest/artifact-bundles/{id}", tag = "artifact-bundles",
    responses((status = 202, description = "TaskResourceV2 named Delete", body = Object),
              (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let current = bundles::get(&*s.meta, &id, false)?;
    let task = bundles::delete(s, ctx.user(), &current)?;
    Ok(accepted(&s.tasks, &task))
}

fn download_file(st: &AppState, r: &Record) -> Result<Response, ApiError> {
    let f = std::fs::File::open(file_of(&st.services, &r.id))
        .map_err(|e| DomainError::Internal(format!("bundle file of {}: {e}", r.id)))?;
    let name = r.value["name"].as_str().unwrap_or(&r.id);
    Ok(stream_file(f, "application/zip", &format!("{name}.zip")))
}

/// Downloads the bundle zip.
#[utoipa::path(get, path = "/rest/artifact-bundles/download/{id}", tag = "artifact-bundles",
    responses((status = 200, description = "application/zip", content_type = "application/zip", body = Vec<u8>),
              (status = 404, body = ErrorBody)))]
pub async fn download(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download_file(&st, &bundles::get(&*st.services.meta, &id, false)?)
}

/// Accepted for the Python SDK; bundle creation here is not interruptible, so this reports
/// the task's current state.
#[utoipa::path(put, path = "/rest/artifact-bundles/{id}/stopArtifactCreate", tag = "artifact-bundles",
    responses((status = 409, body = ErrorBody)))]
pub async fn stop(
    State(_st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Err(DomainError::conflict(
        "NOT_STOPPABLE",
        format!("Creating artifact bundle {id} cannot be stopped once started."),
        "Wait for the task to finish, then delete the bundle.",
    )
    .into())
}

/// Lists the backup (at most one).
#[utoipa::path(get, path = "/rest/artifact-bundles/backups", tag = "artifact-bundles", params(ListQuery),
    responses((status = 200, description = "ArtifactsBundle collection", body = Object)))]
pub async fn list_backups(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = listed(&st, &ctx, true)?;
    Ok(Json(envelope(
        BACKUPS,
        ARTIFACT_BUNDLES.category,
        ARTIFACT_BUNDLES.list_type,
        members,
        &q,
    )?))
}

/// One backup.
#[utoipa::path(get, path = "/rest/artifact-bundles/backups/{id}", tag = "artifact-bundles",
    responses((status = 200, description = "ArtifactsBundle", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read_backup(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(
        &bundles::get(&*st.services.meta, &id, true)?,
        &ctx,
    )))
}

/// Downloads a backup's zip.
#[utoipa::path(get, path = "/rest/artifact-bundles/backups/archive/{id}", tag = "artifact-bundles",
    responses((status = 200, description = "application/zip", content_type = "application/zip", body = Vec<u8>),
              (status = 404, body = ErrorBody)))]
pub async fn download_backup(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download_file(&st, &bundles::get(&*st.services.meta, &id, true)?)
}

/// Creates the backup: a bundle of every artifact on the appliance; the previous backup is
/// deleted once the new one is stored. 202 with a task.
#[utoipa::path(post, path = "/rest/artifact-bundles/backups", tag = "artifact-bundles",
    request_body = BackupInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 400, body = ErrorBody)))]
pub async fn create_backup(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: BackupInput = if body.iter().all(u8::is_ascii_whitespace) {
        BackupInput::default()
    } else {
        parse_body(&body)?
    };
    let task = bundles::create_backup(&st.services, ctx.user(), input)?;
    Ok(accepted(&st.services.tasks, &task))
}

/// Restores a backup: extracts it like a bundle. 202 with a task.
#[utoipa::path(put, path = "/rest/artifact-bundles/backups/{id}", tag = "artifact-bundles",
    request_body = BackupInput,
    responses((status = 202, description = "TaskResourceV2", body = Object),
              (status = 404, body = ErrorBody)))]
pub async fn restore_backup(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = &st.services;
    let r = bundles::get(&*s.meta, &id, true)?;
    let task = bundles::start_extract(s, ctx.user(), r)?;
    Ok(accepted(&s.tasks, &task))
}
