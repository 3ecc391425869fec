//! Artifact bundles: bundles of artifacts, uploaded, created from the appliance's artifacts,
//! extracted, downloaded; and the backup (a bundle of every artifact, only one kept).
//!
//! Bundle files live in `<state>/bundles/<id>.zip`; the record holds HPE's `ArtifactsBundle`
//! fields (the artifact lists come from the bundle as verified on upload). Uploading does not
//! extract (as on HPE); an extract runs in a task, with every record it creates committed in
//! one transaction (see [`super::bundle::import`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::bundle::export::{self, ImageFile, Selection, Wanted};
use super::bundle::import::{self, Existing, ImportedImage};
use super::bundle::manifest::Manifest;
use super::bundle::read::{self, Contents};
use super::bundle::{BundleError, image};
use super::collection::{
    ARTIFACT_BUNDLES, BUILD_PLANS, DEPLOYMENT_PLANS, GOLDEN_IMAGES, PLAN_SCRIPTS,
};
use super::error::DomainError;
use super::golden_images;
use super::input::{check_name, loose_bool};
use super::records::{self, Change, start_task, with_retries};
use crate::meta::{Kind, MetaStore, Op, Record};
use crate::services::Services;
use crate::services::clock::now_iso;
use crate::services::tasks::TaskHandle;

/// Where backups are served.
pub const BACKUPS: &str = "/rest/artifact-bundles/backups";
/// Activity log directory name.
const LOG: &str = "artifact-bundles";

pub fn is_backup(r: &Record) -> bool {
    r.value["backup"].as_bool() == Some(true)
}

/// The bundle's URI: under [`BACKUPS`] for the backup.
pub fn uri_of(r: &Record) -> String {
    if is_backup(r) {
        format!("{BACKUPS}/{}", r.id)
    } else {
        ARTIFACT_BUNDLES.uri(&r.id)
    }
}

/// Where the bundle's zip is kept.
pub fn file_of(s: &Services, id: &str) -> PathBuf {
    s.files.bundles_dir().join(format!("{id}.zip"))
}

/// The bundle (or, with `backup`, the backup) `id`, or a 404.
pub fn get(meta: &dyn MetaStore, id: &str, backup: bool) -> Result<Record, DomainError> {
    let noun = if backup { "backup" } else { "artifact bundle" };
    meta.get(Kind::ArtifactBundle, id)?
        .filter(|r| is_backup(r) == backup)
        .ok_or_else(|| DomainError::not_found(format!("The {noun} {id}")))
}

/// The bundles (or the backups).
pub fn list(meta: &dyn MetaStore, backup: bool) -> Result<Vec<Record>, DomainError> {
    Ok(meta
        .list(Kind::ArtifactBundle)?
        .into_iter()
        .filter(|r| is_backup(r) == backup)
        .collect())
}

/// Checks a bundle file and returns what it holds and its SHA-256.
async fn verify_file(path: PathBuf) -> Result<(Contents, String, u64), DomainError> {
    Ok(tokio::task::spawn_blocking(move || {
        let contents = read::read(&path)?;
        let mut f = std::fs::File::open(&path).map_err(BundleError::io("reading the bundle"))?;
        let mut h = Sha256::new();
        let size = std::io::copy(&mut f, &mut h).map_err(BundleError::io("reading the bundle"))?;
        Ok::<_, BundleError>((contents, hex::encode(h.finalize()), size))
    })
    .await??)
}

fn check_name_free(meta: &dyn MetaStore, name: &str) -> Result<(), DomainError> {
    match records::by_name(meta, &ARTIFACT_BUNDLES, name)? {
        Some(r) => Err(DomainError::conflict(
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

/// Keeps a verified bundle file and records it; returns the record's id.
fn store(
    s: &Services,
    file: NamedTempFile,
    contents: &Contents,
    checksum: &str,
    size: u64,
    extra: Value,
) -> Result<String, DomainError> {
    let id = uuid::Uuid::new_v4().to_string();
    let dest = file_of(s, &id);
    file.persist(&dest)
        .map_err(|e| DomainError::Internal(format!("keeping the bundle file: {e}")))?;
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
    let backup = extra["backup"].as_bool() == Some(true);
    let r = with_retries(|| {
        if !backup {
            check_name_free(&*s.meta, &m.name)?;
        }
        let mut change = Change::new(&*s.meta);
        change.create(Kind::ArtifactBundle, &id, value.clone());
        change.commit()?;
        Ok(())
    });
    if let Err(e) = r {
        let _ = std::fs::remove_file(&dest);
        return Err(e);
    }
    Ok(id)
}

/// Keeps an uploaded bundle, verified first (layout, manifest, every checksum: a bad bundle is
/// a 400 naming the file at fault). Returns the completed "Upload" task.
pub async fn upload(
    s: &Services,
    user: &str,
    file: NamedTempFile,
    file_name: Option<String>,
) -> Result<TaskHandle, DomainError> {
    let (contents, checksum, size) = verify_file(file.path().to_path_buf()).await?;
    check_name_free(&*s.meta, &contents.manifest.name)?;
    let id = store(
        s,
        file,
        &contents,
        &checksum,
        size,
        json!({"importbundle": true, "backup": false, "uploadFileName": file_name}),
    )?;
    s.files.log(
        LOG,
        &id,
        &format!(
            "uploaded by {user}: {} artifacts, sha256 {checksum}",
            contents.artifacts_count()
        ),
    );
    let uri = ARTIFACT_BUNDLES.uri(&id);
    let task = start_task(
        s,
        &ARTIFACT_BUNDLES,
        "Upload",
        user,
        &contents.manifest.name,
        &uri,
    )?;
    task.complete(Some(&uri), "Artifact bundle uploaded");
    Ok(task)
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

/// Starts making a bundle of the chosen artifacts (and what they depend on); the task
/// ("Create") ends with the new bundle as its resource.
pub fn create(
    s: &Arc<Services>,
    user: &str,
    input: &BundleInput,
) -> Result<TaskHandle, DomainError> {
    check_name("artifact bundle", &input.name)?;
    check_name_free(&*s.meta, &input.name)?;
    let ids = |items: &[BundleItem], prefix: &str| -> Result<Vec<String>, DomainError> {
        items
            .iter()
            .map(|i| {
                i.resource_uri
                    .strip_prefix(prefix)
                    .and_then(|s| s.strip_prefix('/'))
                    .filter(|s| !s.is_empty() && !s.contains('/'))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        DomainError::invalid(
                            "INVALID_REFERENCE",
                            format!("{:?} is not a {prefix}/<id> URI.", i.resource_uri),
                        )
                    })
            })
            .collect()
    };
    let wanted = Wanted {
        plan_scripts: ids(&input.plan_scripts, PLAN_SCRIPTS.path)?,
        build_plans: ids(&input.build_plans, BUILD_PLANS.path)?,
        deployment_plans: ids(&input.deployment_plans, DEPLOYMENT_PLANS.path)?,
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
    let selection = export::select(&*s.meta, &wanted)?;
    let manifest = Manifest {
        name: input.name.clone(),
        description: input.description.clone().unwrap_or_default(),
        read_only,
        time_stamp: now_iso(),
        artifact_type: "USER".into(),
    };
    let task = start_task(
        s,
        &ARTIFACT_BUNDLES,
        "Create",
        user,
        &input.name,
        ARTIFACT_BUNDLES.path,
    )?;
    let (bg, t) = (Arc::clone(s), task.clone());
    tokio::spawn(async move {
        let r = async {
            check_name_free(&*bg.meta, &manifest.name)?;
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
    Ok(task)
}

/// Writes the bundle of `sel` into a temporary file and verifies it as an upload would be.
async fn build(
    s: &Services,
    sel: &Selection,
    manifest: &Manifest,
) -> Result<(NamedTempFile, Contents, String, u64), DomainError> {
    let docs = export::documents(sel, &manifest.name, manifest.read_only)?;
    let mut images = Vec::new();
    for (id, r) in &sel.golden_images {
        images.push(ImageFile {
            id: id.clone(),
            name: r.value["name"].as_str().unwrap_or(id).to_string(),
            raw: golden_images::export_raw(s, r).await?,
        });
    }
    let tmp_dir = s.files.tmp_dir();
    let mut out = s.files.temp_file()?;
    let manifest = manifest.clone();
    let out = tokio::task::spawn_blocking(move || {
        export::write(out.as_file_mut(), &manifest, &docs, &mut images, &tmp_dir).map(|()| out)
    })
    .await??;
    let (contents, checksum, size) = verify_file(out.path().to_path_buf()).await?;
    Ok((out, contents, checksum, size))
}

/// Renames bundle `current`. Returns the completed "Update" task.
pub fn rename(
    s: &Services,
    user: &str,
    current: &Record,
    name: &str,
) -> Result<TaskHandle, DomainError> {
    check_name("artifact bundle", name)?;
    with_retries(|| {
        if current.value["name"].as_str() != Some(name) {
            check_name_free(&*s.meta, name)?;
        }
        let mut value = current.value.clone();
        value["name"] = json!(name);
        value["modified"] = json!(now_iso());
        let mut change = Change::new(&*s.meta);
        change.replace(current, value)?;
        change.commit()?;
        Ok(())
    })?;
    let task = start_task(
        s,
        &ARTIFACT_BUNDLES,
        "Update",
        user,
        name,
        &ARTIFACT_BUNDLES.uri(&current.id),
    )?;
    task.complete(None, "Artifact bundle renamed");
    Ok(task)
}

/// Starts extracting bundle (or backup) `r` into the appliance's artifacts ("Extract").
pub fn start_extract(s: &Arc<Services>, user: &str, r: Record) -> Result<TaskHandle, DomainError> {
    let uri = uri_of(&r);
    let name = r.value["name"].as_str().unwrap_or(&r.id).to_string();
    let task = start_task(s, &ARTIFACT_BUNDLES, "Extract", user, &name, &uri)?;
    let (bg, t) = (Arc::clone(s), task.clone());
    tokio::spawn(async move {
        t.progress(5, "Verifying the bundle");
        match extract(&bg, &r).await {
            Ok(summary) => {
                bg.files.log(LOG, &r.id, &format!("extracted: {summary}"));
                t.complete(Some(&uri), &format!("Extracted: {summary}"));
            }
            Err(e) => {
                bg.files.log(LOG, &r.id, &format!("extract failed: {e}"));
                t.fail(&e);
            }
        }
    });
    Ok(task)
}

/// Extracts bundle `r` into the store; on any failure nothing is left (no records, no
/// volumes). Returns a summary of what was created, reused and renamed.
pub async fn extract(s: &Services, r: &Record) -> Result<String, DomainError> {
    let path = file_of(s, &r.id);
    let (contents, _, _) = verify_file(path.clone()).await?;
    let mut taken: HashSet<String> = s
        .meta
        .list(Kind::GoldenImage)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut imported: Vec<ImportedImage> = Vec::new();
    for gi in &contents.golden_images {
        let new_id = import::choose_id(&gi.id, &mut taken);
        let r = import_payload(s, &path, gi.name(), &new_id, &contents.manifest.name).await;
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
                s.storage.delete_quietly(&vols).await;
                return Err(e);
            }
        }
    }
    let all_volumes: Vec<String> = imported.iter().map(|i| i.volume.clone()).collect();
    let committed = with_retries(|| {
        let existing = Existing {
            plan_scripts: s.meta.list(Kind::PlanScript)?,
            build_plans: s.meta.list(Kind::BuildPlan)?,
            deployment_plans: s.meta.list(Kind::DeploymentPlan)?,
            golden_images: s.meta.list(Kind::GoldenImage)?,
        };
        let mut plan = import::plan(&existing, &contents, &imported, &uri_of(r), &now_iso())
            .map_err(DomainError::from)?;
        let ops = std::mem::take(&mut plan.ops);
        if !ops.is_empty() {
            let mut change = Change::new(&*s.meta);
            for op in ops {
                if let Op::Put {
                    kind, id, value, ..
                } = op
                {
                    change.create(kind, &id, value);
                }
            }
            change.commit()?;
        }
        Ok(plan)
    });
    let plan = match committed {
        Ok(p) => p,
        Err(e) => {
            s.storage.delete_quietly(&all_volumes).await;
            return Err(e);
        }
    };
    let summary = plan.describe();
    s.storage.delete_quietly(&plan.redundant_volumes).await;
    for (gi, volume) in &plan.new_images {
        golden_images::log(
            s,
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
    s: &Services,
    bundle: &Path,
    entry: &str,
    name: &str,
    bundle_name: &str,
) -> Result<golden_images::ImportedVolume, DomainError> {
    let mut payload = s.files.temp_file()?;
    let (b, e) = (bundle.to_path_buf(), entry.to_string());
    let (payload, packing) = tokio::task::spawn_blocking(move || {
        read::extract_entry(&b, &e, payload.as_file_mut())?;
        let packing = image::sniff(payload.as_file_mut(), false)?;
        Ok::<_, BundleError>((payload, packing))
    })
    .await??;
    golden_images::import_image(s, name, payload.path(), packing, bundle_name).await
}

/// Deletes bundle `current` (its artifacts stay). Returns the completed "Delete" task.
pub fn delete(s: &Services, user: &str, current: &Record) -> Result<TaskHandle, DomainError> {
    delete_bundle(s, current)?;
    let name = current.value["name"].as_str().unwrap_or(&current.id);
    let task = start_task(
        s,
        &ARTIFACT_BUNDLES,
        "Delete",
        user,
        name,
        &ARTIFACT_BUNDLES.uri(&current.id),
    )?;
    task.complete(None, "Artifact bundle deleted");
    Ok(task)
}

fn delete_bundle(s: &Services, r: &Record) -> Result<(), DomainError> {
    let mut change = Change::new(&*s.meta);
    change.delete(r)?;
    change.commit().map_err(|e| match e {
        records::WriteError::Failed(e) => e,
        records::WriteError::Race(m) => DomainError::Internal(m),
    })?;
    if let Err(e) = std::fs::remove_file(file_of(s, &r.id)) {
        tracing::warn!("artifact bundle {} file: {e}", r.id);
    }
    s.files.remove_log(LOG, &r.id);
    Ok(())
}

/// Body of a backup request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupInput {
    #[serde(default, rename = "deploymentGroupURI")]
    pub deployment_group_uri: Option<String>,
}

/// Starts the backup: a bundle of every artifact on the appliance; the previous backup is
/// deleted once the new one is stored ("Create backup").
pub fn create_backup(
    s: &Arc<Services>,
    user: &str,
    input: BackupInput,
) -> Result<TaskHandle, DomainError> {
    let all = |k: Kind| -> Result<Vec<String>, DomainError> {
        Ok(s.meta.list(k)?.into_iter().map(|r| r.id).collect())
    };
    let wanted = Wanted {
        plan_scripts: all(Kind::PlanScript)?,
        build_plans: all(Kind::BuildPlan)?,
        deployment_plans: all(Kind::DeploymentPlan)?,
        golden_images: all(Kind::GoldenImage)?,
    };
    let selection = export::select(&*s.meta, &wanted)?;
    let now = now_iso();
    let manifest = Manifest {
        name: format!("backup-{now}"),
        description: "Backup of every artifact of the appliance".into(),
        read_only: false,
        time_stamp: now,
        artifact_type: "USER".into(),
    };
    let task = start_task(
        s,
        &ARTIFACT_BUNDLES,
        "Create backup",
        user,
        &manifest.name,
        BACKUPS,
    )?;
    let (bg, t) = (Arc::clone(s), task.clone());
    tokio::spawn(async move {
        let r = async {
            let previous = list(&*bg.meta, true)?;
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
            Ok::<_, DomainError>(id)
        }
        .await;
        match r {
            Ok(id) => t.complete(Some(&format!("{BACKUPS}/{id}")), "Backup created"),
            Err(e) => t.fail(&e),
        }
    });
    Ok(task)
}
