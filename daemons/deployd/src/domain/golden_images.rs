//! Golden images: the immutable disk images OS volumes are cloned from.
//!
//! The record holds HPE's fields; the content is a frozen storaged volume named by the golden
//! image id (`storageVolume` is its storaged id). An uploaded file is checked before its task
//! starts (a bad zip is a 400), then imported by the task; a cut or failed import leaves no
//! record, no volume and no temporary file. Capture makes one from an OS volume (the
//! orchestration is `deploy::capture`; the request's rules are here). Downloads are HPE's format: a zip with one raw member named
//! by the id. Each golden image keeps a text activity log.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use tempfile::NamedTempFile;

use super::bundle::image::{self, Packing};
use super::collection::{BUILD_PLANS, GOLDEN_IMAGES, OS_VOLUMES};
use super::error::DomainError;
use super::input::{check_name, loose_bool};
use super::records::{self, Change, name_of, start_task, with_retries};
use super::references::refuse_if_used;
use crate::meta::Record;
use crate::services::Services;
use crate::services::clock::now_iso;
use crate::services::storage::StorageError;
use crate::services::tasks::TaskHandle;

/// Activity log directory name.
pub const LOG: &str = "golden-images";

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

/// Checks a capture request's references, naming everything that is missing or wrong.
pub fn validate_capture(s: &Services, input: CaptureInput) -> Result<CaptureRequest, DomainError> {
    if !input.image_capture {
        return Err(DomainError::invalid(
            "INVALID_REQUEST",
            "To add a golden image from a file, POST it as multipart/form-data (part \"file\"); \
             to capture one from an OS volume, send imageCapture: true with osVolumeURI and \
             buildPlanUri.",
        ));
    }
    check_name("golden image", &input.name)?;
    records::check_name_free(&*s.meta, &GOLDEN_IMAGES, &input.name, None)?;
    let mut problems = Vec::new();
    let os_volume = match input.os_volume_uri.as_deref().filter(|s| !s.is_empty()) {
        None => {
            problems.push("osVolumeURI is missing".to_string());
            None
        }
        Some(uri) => {
            let found = records::at_uri(&*s.meta, &OS_VOLUMES, uri)?;
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
        Some(uri) => match records::at_uri(&*s.meta, &BUILD_PLANS, uri)? {
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
        },
    };
    match (os_volume, build_plan) {
        (Some(os_volume), Some(build_plan)) if problems.is_empty() => Ok(CaptureRequest {
            name: input.name,
            description: input.description.unwrap_or_default(),
            os_volume,
            build_plan,
        }),
        _ => Err(DomainError::invalid(
            "INVALID_CAPTURE_REQUEST",
            format!(
                "The golden image cannot be captured: {}.",
                problems.join("; ")
            ),
        )),
    }
}

/// An uploaded image file to add as a golden image.
#[derive(Debug)]
pub struct Upload {
    pub name: String,
    pub description: String,
    /// The content (removed when dropped).
    pub file: NamedTempFile,
    /// The client's name for the file.
    pub file_name: Option<String>,
}

/// Checks an uploaded image (name, packing) and starts the task that imports it; the task's
/// resource is the new golden image.
pub async fn add_from_upload(
    s: &Arc<Services>,
    user: &str,
    up: Upload,
) -> Result<TaskHandle, DomainError> {
    check_name("golden image", &up.name)?;
    records::check_name_free(&*s.meta, &GOLDEN_IMAGES, &up.name, None)?;
    let claims_zip = up
        .file_name
        .as_deref()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".zip"));
    let mut f = up
        .file
        .reopen()
        .map_err(|e| DomainError::Internal(format!("reopening the upload: {e}")))?;
    let packing = tokio::task::spawn_blocking(move || image::sniff(&mut f, claims_zip)).await??;
    let id = uuid::Uuid::new_v4().to_string();
    let task = start_task(
        s,
        &GOLDEN_IMAGES,
        "Add",
        user,
        &up.name,
        &GOLDEN_IMAGES.uri(&id),
    )?;
    let origin = up.file_name.clone().unwrap_or_else(|| up.name.clone());
    let bg = Arc::clone(s);
    let t = task.clone();
    tokio::spawn(async move {
        t.progress(10, "Importing the image");
        match import_upload(&bg, &id, up, packing, &origin).await {
            Ok(()) => t.complete(Some(&GOLDEN_IMAGES.uri(&id)), "Golden image added"),
            Err(e) => t.fail(&e),
        }
    });
    Ok(task)
}

async fn import_upload(
    s: &Services,
    id: &str,
    up: Upload,
    packing: Packing,
    origin: &str,
) -> Result<(), DomainError> {
    let info = import_image(s, id, up.file.path(), packing, origin).await?;
    let Upload {
        name, description, ..
    } = up;
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
    let stored = with_retries(|| {
        records::check_name_free(&*s.meta, &GOLDEN_IMAGES, &name, None)?;
        let mut change = Change::new(&*s.meta);
        change.create(GOLDEN_IMAGES.kind, id, record.clone());
        change.commit()?;
        Ok(())
    });
    if let Err(e) = stored {
        s.storage
            .delete_quietly(std::slice::from_ref(&info.volume))
            .await;
        return Err(e);
    }
    log(
        s,
        id,
        &format!(
            "imported from uploaded file {origin:?} ({packing:?}): {} bytes, {}",
            info.size, info.checksum
        ),
    );
    Ok(())
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
    s: &Services,
    name: &str,
    path: &Path,
    packing: Packing,
    origin: &str,
) -> Result<ImportedVolume, DomainError> {
    let tmp_dir = s.files.tmp_dir();
    let limit = s.settings.max_image_bytes;
    let src = path.to_path_buf();
    let unpacked =
        tokio::task::spawn_blocking(move || image::unpack(&src, packing, &tmp_dir, limit))
            .await??;
    let file = match &unpacked {
        Some(t) => t.reopen(),
        None => File::open(path),
    }
    .map_err(|e| DomainError::Internal(format!("opening the unpacked image: {e}")))?;
    let info = s
        .storage
        .import_frozen(name, &file, origin)
        .await
        .map_err(|e| match e {
            StorageError::Refused(m) => DomainError::invalid(
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

/// Renames or re-describes golden image `current` (the content is immutable); read-only
/// images are refused. Returns the completed "Update" task.
pub fn update(
    s: &Services,
    user: &str,
    current: &Record,
    input: &GoldenImageUpdate,
) -> Result<TaskHandle, DomainError> {
    check_name("golden image", &input.name)?;
    if current.value["readOnly"].as_bool() == Some(true) {
        return Err(DomainError::conflict(
            "READ_ONLY",
            format!("The golden image {:?} is read-only.", name_of(current)),
            "Read-only golden images come from read-only artifact bundles and cannot be changed.",
        ));
    }
    with_retries(|| {
        records::check_name_free(&*s.meta, &GOLDEN_IMAGES, &input.name, Some(&current.id))?;
        let mut value = current.value.clone();
        value["name"] = json!(input.name);
        if let Some(d) = &input.description {
            value["description"] = json!(d);
        }
        value["modified"] = json!(now_iso());
        let mut change = Change::new(&*s.meta);
        change.replace(current, value)?;
        change.commit()?;
        Ok(())
    })?;
    let task = start_task(
        s,
        &GOLDEN_IMAGES,
        "Update",
        user,
        &input.name,
        &GOLDEN_IMAGES.uri(&current.id),
    )?;
    task.complete(None, "The golden image was updated");
    Ok(task)
}

/// Deletes golden image `current` and its volume; refused while a deployment plan uses it or
/// OS volumes are cloned from it. Returns the completed "Delete" task.
pub async fn delete(s: &Services, user: &str, current: &Record) -> Result<TaskHandle, DomainError> {
    let id = &current.id;
    let name = name_of(current);
    refuse_if_used(&*s.meta, &GOLDEN_IMAGES, &name, id)?;
    let volume = current.value["storageVolume"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !volume.is_empty() {
        match s.storage.info(&volume).await {
            Ok(info) if !info.children.is_empty() => {
                return Err(DomainError::conflict(
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
    with_retries(|| {
        refuse_if_used(&*s.meta, &GOLDEN_IMAGES, &name, id)?;
        let mut change = Change::new(&*s.meta);
        change.delete(current)?;
        change.commit()?;
        Ok(())
    })?;
    if !volume.is_empty()
        && let Err(e) = s.storage.delete(&volume).await
    {
        tracing::error!("golden image {id} deleted, but its volume {volume} was not: {e}");
    }
    s.files.remove_log(LOG, id);
    let task = start_task(
        s,
        &GOLDEN_IMAGES,
        "Delete",
        user,
        &name,
        &GOLDEN_IMAGES.uri(id),
    )?;
    task.complete(None, "Golden image deleted");
    Ok(task)
}

/// Exports the image of golden image `r` to an unlinked temporary raw file.
pub async fn export_raw(s: &Services, r: &Record) -> Result<File, DomainError> {
    let volume = r.value["storageVolume"].as_str().unwrap_or_default();
    if volume.is_empty() {
        return Err(DomainError::Internal(format!(
            "golden image {} has no volume",
            r.id
        )));
    }
    let raw = s.files.temp_file()?;
    s.storage.export_raw(volume, raw.as_file()).await?;
    Ok(raw.into_file())
}

/// Golden image `r` as HPE's golden image zip (one raw member named by the id), in an
/// unlinked temporary file.
pub async fn zip_of_image(s: &Services, r: &Record) -> Result<File, DomainError> {
    let mut raw = export_raw(s, r).await?;
    let zip = s.files.temp_file()?;
    let id = r.id.clone();
    let zip = tokio::task::spawn_blocking(move || {
        let mut zip = zip;
        image::pack_zip(&mut raw, &id, zip.as_file_mut()).map(|()| zip)
    })
    .await??;
    Ok(zip.into_file())
}

/// Appends to a golden image's activity log (import, bundle extraction, capture).
pub fn log(s: &Services, id: &str, line: &str) {
    s.files.log(LOG, id, line);
}

/// The golden image's activity log, as text.
pub fn read_log(s: &Services, id: &str) -> Result<String, DomainError> {
    Ok(s.files.read_log(LOG, id)?)
}
