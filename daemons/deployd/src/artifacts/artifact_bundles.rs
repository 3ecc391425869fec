//! `/rest/artifact-bundles`: bundles of artifacts, uploaded, created from the appliance's
//! artifacts, extracted, downloaded; and the backup (a bundle of every artifact, only one
//! kept) under `/backups`.
//!
//! Bundle files live in `<state>/bundles/<id>.zip`; the record holds HPE's `ArtifactsBundle`
//! fields (the artifact lists come from the bundle as verified on upload). Uploading does not
//! extract (as on HPE); `PUT ...?extract=true` does, in a task, with every record of one
//! extract committed in one transaction (see [`crate::bundle::import`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::golden_images::{self, GOLDEN_IMAGES};
use super::{Collection, check_name, loose_bool, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::transport::Ctx;
use crate::bundle::export::{self, ImageFile, Selection, Wanted};
use crate::bundle::import::{self, Existing, ImportedImage};
use crate::bundle::manifest::Manifest;
use crate::bundle::read::{self, Contents};
use crate::bundle::{BundleError, image};
use crate::files;
use crate::meta::{Expect, Kind, Op, Record};
use crate::state::AppState;
use crate::storage::Storage;
use crate::tasks::{Associated, now_iso};
use crate::upload;

pub const ARTIFACT_BUNDLES: Collection = Collection {
    kind: Kind::ArtifactBundle,
    path: "/rest/artifact-bundles",
    category: "artifact-bundles",
    noun: "artifact bundle",
    type_v3: "ArtifactsBundle",
    type_v5: "ArtifactsBundle",
    list_type: "ArtifactsBundleCollection",
};

const BACKUPS: &str = "/rest/artifact-bundles/backups";
const LOG: &str = "artifact-bundles";

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

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(format!("background work failed: {e}"))
}

fn is_backup(r: &Record) -> bool {
    r.value["backup"].as_bool() == Some(true)
}

fn uri_of(r: &Record) -> String {
    if is_backup(r) {
        format!("{BACKUPS}/{}", r.id)
    } else {
        ARTIFACT_BUNDLES.uri(&r.id)
    }
}

fn file_of(st: &AppState, id: &str) -> PathBuf {
    files::bundles_dir(st).join(format!("{id}.zip"))
}

fn render(r: &Record, ctx: &Ctx) -> Value {
    let mut doc = ARTIFACT_BUNDLES.render(r, ctx.version);
    doc["uri"] = json!(uri_of(r));
    doc["artifactsbundleID"] = json!(r.id);
    doc["downloadURI"] = json!(if is_backup(r) {
        format!("{BACKUPS}/archive/{}", r.id)
    } else {
        format!("/rest/artifact-bundles/download/{}", r.id)
    });
    doc
}

fn bundle(st: &AppState, id: &str, backup: bool) -> Result<Record, ApiError> {
    let noun = if backup { "backup" } else { "artifact bundle" };
    st.meta
        .get(Kind::ArtifactBundle, id)?
        .filter(|r| is_backup(r) == backup)
        .ok_or_else(|| ApiError::not_found(format!("The {noun} {id}")))
}

fn list_of(st: &AppState, ctx: &Ctx, backup: bool) -> Result<Vec<Value>, ApiError> {
    Ok(st
        .meta
        .list(Kind::ArtifactBundle)?
        .iter()
        .filter(|r| is_backup(r) == backup)
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
    let members = list_of(&st, &ctx, false)?;
    Ok(Json(envelope(
        ARTIFACT_BUNDLES.path,
        ARTIFACT_BUNDLES.category,
        ARTIFACT_BUNDLES.list_type,
        members,
        &q,
    )?))
}

/// One artifact bundle.
#[utoipa::path(get, path = "/rest/artifact-bundles/{id}", tag = "artifact-bundles",
    responses((status = 200, description = "ArtifactsBundle", body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&bundle(&st, &id, false)?, &ctx)))
}

/// Checks a bundle file and returns what it holds and its SHA-256.
async fn verify_file(path: PathBuf) -> Result<(Contents, String, u64), ApiError> {
    tokio::task::spawn_blocking(move || {
        let contents = read::read(&path)?;
        let mut f = std::fs::File::open(&path).map_err(BundleError::io("reading the bundle"))?;
        let mut h = Sha256::new();
        let size = std::io::copy(&mut f, &mut h).map_err(BundleError::io("reading the bundle"))?;
        Ok::<_, BundleError>((contents, hex::encode(h.finalize()), size))
    })
    .await
    .map_err(join_error)?
    .map_err(ApiError::from)
}

/// Keeps a verified bundle file and records it; returns the record's id.
fn store(
    st: &AppState,
    file: NamedTempFile,
    contents: &Contents,
    checksum: &str,
    size: u64,
    extra: Value,
) -> Result<String, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let dest = file_of(st, &id);
    file.persist(&dest)
        .map_err(|e| ApiError::Internal(format!("keeping the bundle file: {e}")))?;
    let now = now_iso();
    let mut value = read::summary(contents);
    let m = &contents.manifest;
    for (k, v) in [
        ("name", json!(m.name)),
        ("description", json!(m.description)),
        ("timeStamp", json!(m.time_stamp)),
        ("checkSum", json!(checksum)),
        ("size", json!(size)),
        ("state", json!("Uploaded")),
        ("status", json!("OK")),
        ("created", json!(now)),
        ("modified", json!(now)),
    ] {
        value[k] = v;
    }
    if let (Some(o), Some(e)) = (value.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let r = st.meta.apply(vec![Op::Put {
        kind: Kind::ArtifactBundle,
        id: id.clone(),
        value,
        expect: Expect::Absent,
    }]);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&dest);
        return Err(e.into());
    }
    Ok(id)
}

fn check_bundle_name_free(st: &AppState, name: &str) -> Result<(), ApiError> {
    let clash = st
        .meta
        .list(Kind::ArtifactBundle)?
        .into_iter()
        .find(|r| !is_backup(r) && r.value["name"].as_str() == Some(name));
    match clash {
        Some(r) => Err(ApiError::conflict(
            "DUPLICATE_NAME",
            format!(
                "An artifact bundle named {name:?} already exists ({}).",
                uri_of(&r)
            ),
            "Delete or rename it first.",
        )),
        None => Ok(()),
    }
}

/// One artifact of a create request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleItem {
    pub resource_uri: String,
    #[serde(default, deserialize_with = "loose_bool::deserialize")]
    #[schema(value_type = bool)]
    pub read_only: bool,
}

/// `POST /rest/artifact-bundles` as JSON: a bundle made of the appliance's artifacts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub plan_scripts: Vec<BundleItem>,
    #[serde(default)]
    pub build_plans: Vec<BundleItem>,
    #[serde(default)]
    pub deployment_plans: Vec<BundleItem>,
    #[serde(default)]
    pub golden_images: Vec<BundleItem>,
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
    if upload::is_multipart(&req) {
        let up = upload::receive(&st, req).await?;
        let (contents, checksum, size) = verify_file(up.file.path().to_path_buf()).await?;
        check_bundle_name_free(&st, &contents.manifest.name)?;
        let id = store(
            &st,
            up.file,
            &contents,
            &checksum,
            size,
            json!({"importbundle": true, "backup": false, "uploadFileName": up.file_name}),
        )?;
        files::log(
            &st,
            LOG,
            &id,
            &format!(
                "uploaded by {}: {} artifacts, sha256 {checksum}",
                ctx.user(),
                contents.artifacts_count()
            ),
        );
        let uri = ARTIFACT_BUNDLES.uri(&id);
        let task = st.tasks.start(
            "Upload",
            ctx.user(),
            &Associated {
                category: ARTIFACT_BUNDLES.category.into(),
                name: contents.manifest.name.clone(),
                uri: uri.clone(),
            },
        )?;
        task.complete(Some(&uri), "Artifact bundle uploaded");
        return Ok(task.accepted());
    }
    let body = axum::body::to_bytes(req.into_body(), crate::api::JSON_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("Reading the body: {e}.")))?;
    let input: BundleInput = parse_body(&body)?;
    check_name("artifact bundle", &input.name)?;
    check_bundle_name_free(&st, &input.name)?;
    let ids = |items: &[BundleItem], prefix: &str| -> Result<Vec<String>, ApiError> {
        items
            .iter()
            .map(|i| {
                i.resource_uri
                    .strip_prefix(prefix)
                    .and_then(|s| s.strip_prefix('/'))
                    .filter(|s| !s.is_empty() && !s.contains('/'))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "INVALID_REFERENCE",
                            format!("{:?} is not a {prefix}/<id> URI.", i.resource_uri),
                        )
                    })
            })
            .collect()
    };
    let wanted = Wanted {
        plan_scripts: ids(&input.plan_scripts, "/rest/plan-scripts")?,
        build_plans: ids(&input.build_plans, "/rest/build-plans")?,
        deployment_plans: ids(&input.deployment_plans, "/rest/deployment-plans")?,
        golden_images: ids(&input.golden_images, GOLDEN_IMAGES.path)?,
    };
    let read_only = [
        &input.plan_scripts,
        &input.build_plans,
        &input.deployment_plans,
        &input.golden_images,
    ]
    .iter()
    .flat_map(|v| v.iter())
    .any(|i| i.read_only);
    let selection = export::select(&*st.meta, &wanted)?;
    let manifest = Manifest {
        name: input.name.clone(),
        description: input.description.clone().unwrap_or_default(),
        read_only,
        time_stamp: now_iso(),
        artifact_type: "USER".into(),
    };
    let task = st.tasks.start(
        "Create",
        ctx.user(),
        &Associated {
            category: ARTIFACT_BUNDLES.category.into(),
            name: input.name.clone(),
            uri: ARTIFACT_BUNDLES.path.into(),
        },
    )?;
    let (bg, t) = (Arc::clone(&st), task.clone());
    tokio::spawn(async move {
        let r = async {
            check_bundle_name_free(&bg, &manifest.name)?;
            let (file, contents, checksum, size) = build(&bg, &selection, &manifest).await?;
            store(
                &bg,
                file,
                &contents,
                &checksum,
                size,
                json!({"importbundle": false, "backup": false}),
            )
        }
        .await;
        match r {
            Ok(id) => t.complete(Some(&ARTIFACT_BUNDLES.uri(&id)), "Artifact bundle created"),
            Err(e) => t.fail(&e),
        }
    });
    Ok(task.accepted())
}

/// Writes the bundle of `sel` into a temporary file and verifies it as an upload would be.
async fn build(
    st: &AppState,
    sel: &Selection,
    manifest: &Manifest,
) -> Result<(NamedTempFile, Contents, String, u64), ApiError> {
    let docs = export::documents(sel, &manifest.name, manifest.read_only)?;
    let mut images = Vec::new();
    for (id, r) in &sel.golden_images {
        images.push(ImageFile {
            id: id.clone(),
            name: r.value["name"].as_str().unwrap_or(id).to_string(),
            raw: golden_images::export_raw(st, r).await?,
        });
    }
    let tmp_dir = files::tmp_dir(st);
    let mut out = files::temp_file(st)?;
    let manifest = manifest.clone();
    let out = tokio::task::spawn_blocking(move || {
        export::write(out.as_file_mut(), &manifest, &docs, &mut images, &tmp_dir).map(|()| out)
    })
    .await
    .map_err(join_error)??;
    let (contents, checksum, size) = verify_file(out.path().to_path_buf()).await?;
    Ok((out, contents, checksum, size))
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
    let current = bundle(&st, &id, false)?;
    if q.extract
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("true"))
    {
        return start_extract(st, &ctx, current);
    }
    #[derive(Deserialize)]
    struct Rename {
        name: String,
    }
    let input: Rename = parse_body(&body)?;
    check_name("artifact bundle", &input.name)?;
    if current.value["name"].as_str() != Some(input.name.as_str()) {
        check_bundle_name_free(&st, &input.name)?;
    }
    let mut value = current.value.clone();
    value["name"] = json!(input.name);
    value["modified"] = json!(now_iso());
    st.meta.apply(vec![Op::Put {
        kind: Kind::ArtifactBundle,
        id: id.clone(),
        value,
        expect: Expect::Revision(current.revision),
    }])?;
    let task = st.tasks.start(
        "Update",
        ctx.user(),
        &Associated {
            category: ARTIFACT_BUNDLES.category.into(),
            name: input.name,
            uri: ARTIFACT_BUNDLES.uri(&id),
        },
    )?;
    task.complete(None, "Artifact bundle renamed");
    Ok(task.accepted())
}

fn start_extract(st: Arc<AppState>, ctx: &Ctx, r: Record) -> Result<Response, ApiError> {
    let uri = uri_of(&r);
    let task = st.tasks.start(
        "Extract",
        ctx.user(),
        &Associated {
            category: ARTIFACT_BUNDLES.category.into(),
            name: r.value["name"].as_str().unwrap_or(&r.id).to_string(),
            uri: uri.clone(),
        },
    )?;
    let t = task.clone();
    tokio::spawn(async move {
        t.progress(5, "Verifying the bundle");
        match extract(&st, &r).await {
            Ok(summary) => {
                files::log(&st, LOG, &r.id, &format!("extracted: {summary}"));
                t.complete(Some(&uri), &format!("Extracted: {summary}"));
            }
            Err(e) => {
                files::log(&st, LOG, &r.id, &format!("extract failed: {e}"));
                t.fail(&e);
            }
        }
    });
    Ok(task.accepted())
}

/// Extracts bundle `r` into the store; on any failure nothing is left (no records, no
/// volumes). Returns a summary of what was created, reused and renamed.
pub async fn extract(st: &AppState, r: &Record) -> Result<String, ApiError> {
    let path = file_of(st, &r.id);
    let (contents, _, _) = verify_file(path.clone()).await?;
    let storage = Storage::new(&st.config.storaged_socket);
    let mut taken: HashSet<String> = st
        .meta
        .list(Kind::GoldenImage)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut imported: Vec<ImportedImage> = Vec::new();
    for gi in &contents.golden_images {
        let new_id = import::choose_id(&gi.id, &mut taken);
        let r = import_payload(st, &path, gi.name(), &new_id, &contents.manifest.name).await;
        match r {
            Ok(v) => imported.push(ImportedImage {
                bundle_id: gi.id.clone(),
                new_id,
                volume: v.volume,
                size: v.size,
                checksum: v.checksum,
            }),
            Err(e) => {
                let vols: Vec<String> = imported.iter().map(|i| i.volume.clone()).collect();
                storage.delete_quietly(&vols).await;
                return Err(e);
            }
        }
    }
    let all_volumes: Vec<String> = imported.iter().map(|i| i.volume.clone()).collect();
    let planned = (|| {
        let existing = Existing {
            plan_scripts: st.meta.list(Kind::PlanScript)?,
            build_plans: st.meta.list(Kind::BuildPlan)?,
            deployment_plans: st.meta.list(Kind::DeploymentPlan)?,
            golden_images: st.meta.list(Kind::GoldenImage)?,
        };
        let plan = import::plan(&existing, &contents, &imported, &uri_of(r), &now_iso())?;
        Ok::<_, ApiError>(plan)
    })();
    let mut plan = match planned {
        Ok(p) => p,
        Err(e) => {
            storage.delete_quietly(&all_volumes).await;
            return Err(e);
        }
    };
    let summary = plan.describe();
    let ops = std::mem::take(&mut plan.ops);
    if !ops.is_empty()
        && let Err(e) = st.meta.apply(ops)
    {
        storage.delete_quietly(&all_volumes).await;
        return Err(e.into());
    }
    storage.delete_quietly(&plan.redundant_volumes).await;
    for (gi, volume) in &plan.new_images {
        golden_images::log(
            st,
            gi,
            &format!(
                "extracted from artifact bundle {:?} ({}) into volume {volume}",
                contents.manifest.name,
                uri_of(r)
            ),
        );
    }
    Ok(summary)
}

/// Streams a golden image payload out of the bundle and imports it as volume `name`.
async fn import_payload(
    st: &AppState,
    bundle: &std::path::Path,
    entry: &str,
    name: &str,
    bundle_name: &str,
) -> Result<golden_images::ImportedVolume, ApiError> {
    let mut payload = files::temp_file(st)?;
    let (b, e) = (bundle.to_path_buf(), entry.to_string());
    let (payload, packing) = tokio::task::spawn_blocking(move || {
        read::extract_entry(&b, &e, payload.as_file_mut())?;
        let packing = image::sniff(payload.as_file_mut(), false)?;
        Ok::<_, BundleError>((payload, packing))
    })
    .await
    .map_err(join_error)??;
    golden_images::import_image(st, name, payload.path(), packing, bundle_name).await
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
    let current = bundle(&st, &id, false)?;
    delete_bundle(&st, &current)?;
    let task = st.tasks.start(
        "Delete",
        ctx.user(),
        &Associated {
            category: ARTIFACT_BUNDLES.category.into(),
            name: current.value["name"].as_str().unwrap_or(&id).to_string(),
            uri: ARTIFACT_BUNDLES.uri(&id),
        },
    )?;
    task.complete(None, "Artifact bundle deleted");
    Ok(task.accepted())
}

fn delete_bundle(st: &AppState, r: &Record) -> Result<(), ApiError> {
    st.meta.apply(vec![Op::Delete {
        kind: Kind::ArtifactBundle,
        id: r.id.clone(),
        expect: Expect::Revision(r.revision),
    }])?;
    if let Err(e) = std::fs::remove_file(file_of(st, &r.id)) {
        tracing::warn!("artifact bundle {} file: {e}", r.id);
    }
    files::remove_log(st, LOG, &r.id);
    Ok(())
}

fn download_file(st: &AppState, r: &Record) -> Result<Response, ApiError> {
    let f = std::fs::File::open(file_of(st, &r.id))
        .map_err(|e| ApiError::Internal(format!("bundle file of {}: {e}", r.id)))?;
    let name = r.value["name"].as_str().unwrap_or(&r.id);
    Ok(files::stream_file(
        f,
        "application/zip",
        &format!("{name}.zip"),
    ))
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
    download_file(&st, &bundle(&st, &id, false)?)
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
    Err(ApiError::conflict(
        "NOT_STOPPABLE",
        format!("Creating artifact bundle {id} cannot be stopped once started."),
        "Wait for the task to finish, then delete the bundle.",
    ))
}

/// Lists the backup (at most one).
#[utoipa::path(get, path = "/rest/artifact-bundles/backups", tag = "artifact-bundles", params(ListQuery),
    responses((status = 200, description = "ArtifactsBundle collection", body = Object)))]
pub async fn list_backups(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let members = list_of(&st, &ctx, true)?;
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
    Ok(Json(render(&bundle(&st, &id, true)?, &ctx)))
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
    download_file(&st, &bundle(&st, &id, true)?)
}

/// Body of a backup request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupInput {
    #[serde(default, rename = "deploymentGroupURI")]
    pub deployment_group_uri: Option<String>,
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
    let all = |k: Kind| -> Result<Vec<String>, ApiError> {
        Ok(st.meta.list(k)?.into_iter().map(|r| r.id).collect())
    };
    let wanted = Wanted {
        plan_scripts: all(Kind::PlanScript)?,
        build_plans: all(Kind::BuildPlan)?,
        deployment_plans: all(Kind::DeploymentPlan)?,
        golden_images: all(Kind::GoldenImage)?,
    };
    let selection = export::select(&*st.meta, &wanted)?;
    let now = now_iso();
    let manifest = Manifest {
        name: format!("backup-{now}"),
        description: "Backup of every artifact of the appliance".into(),
        read_only: false,
        time_stamp: now,
        artifact_type: "USER".into(),
    };
    let task = st.tasks.start(
        "Create backup",
        ctx.user(),
        &Associated {
            category: ARTIFACT_BUNDLES.category.into(),
            name: manifest.name.clone(),
            uri: BACKUPS.into(),
        },
    )?;
    let (bg, t) = (Arc::clone(&st), task.clone());
    tokio::spawn(async move {
        let r = async {
            let previous: Vec<Record> = bg
                .meta
                .list(Kind::ArtifactBundle)?
                .into_iter()
                .filter(is_backup)
                .collect();
            let (file, contents, checksum, size) = build(&bg, &selection, &manifest).await?;
            let id = store(
                &bg,
                file,
                &contents,
                &checksum,
                size,
                json!({"importbundle": false, "backup": true,
                       "deploymentGroupURI": input.deployment_group_uri}),
            )?;
            for p in &previous {
                delete_bundle(&bg, p)?;
            }
            Ok::<_, ApiError>(id)
        }
        .await;
        match r {
            Ok(id) => t.complete(Some(&format!("{BACKUPS}/{id}")), "Backup created"),
            Err(e) => t.fail(&e),
        }
    });
    Ok(task.accepted())
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
    let r = bundle(&st, &id, true)?;
    start_extract(st, &ctx, r)
}
