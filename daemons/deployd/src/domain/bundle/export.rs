//! Writing a bundle from the appliance's artifacts, in HPE's layout (see [`super`]).
//!
//! [`select`] pulls in dependencies (a deployment plan brings its build plan and golden
//! image, a build plan its plan scripts); [`documents`] renders each artifact as HPE exports
//! it (server fields nulled, deployment plans referring to build plan and golden image by
//! name); [`write`] streams everything into the zip with the manifest and SHA256SUM.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use super::checksum::{self, Algorithm, Hasher};
use super::manifest::Manifest;
use super::{BundleError, check_entry_name};
use crate::meta::{Kind, MetaStore, Record};

/// Artifact ids asked for.
#[derive(Debug, Default, Clone)]
pub struct Wanted {
    pub plan_scripts: Vec<String>,
    pub build_plans: Vec<String>,
    pub deployment_plans: Vec<String>,
    pub golden_images: Vec<String>,
}

/// The artifacts of a bundle, dependencies included, each once.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub plan_scripts: BTreeMap<String, Record>,
    pub build_plans: BTreeMap<String, Record>,
    pub deployment_plans: BTreeMap<String, Record>,
    pub golden_images: BTreeMap<String, Record>,
}

fn get(meta: &dyn MetaStore, kind: Kind, id: &str, why: &str) -> Result<Record, BundleError> {
    meta.get(kind, id)
        .map_err(|e| BundleError::Io(e.to_string()))?
        .ok_or_else(|| {
            BundleError::Reference(format!(
                "{why}: /rest/{}/{id} does not exist.",
                kind.prefix()
            ))
        })
}

fn id_in(uri: &str, kind: Kind) -> Option<&str> {
    uri.strip_prefix("/rest/")?
        .strip_prefix(kind.prefix())?
        .strip_prefix('/')
        .filter(|s| !s.is_empty())
}

/// The artifacts of `w` and everything they depend on.
pub fn select(meta: &dyn MetaStore, w: &Wanted) -> Result<Selection, BundleError> {
    let mut s = Selection::default();
    let mut bps = w.build_plans.clone();
    let mut gis = w.golden_images.clone();
    for id in &w.deployment_plans {
        let r = get(meta, Kind::DeploymentPlan, id, "requested deployment plan")?;
        let name = r.value["name"].as_str().unwrap_or(id).to_string();
        let bp = r.value["oeBuildPlanURI"].as_str().unwrap_or_default();
        let bp = id_in(bp, Kind::BuildPlan).ok_or_else(|| {
            BundleError::Reference(format!(
                "Deployment plan {name:?} has no build plan reference ({bp:?})."
            ))
        })?;
        bps.push(bp.to_string());
        if let Some(gi) = r.value["goldenImageURI"].as_str().filter(|s| !s.is_empty()) {
            let gi = id_in(gi, Kind::GoldenImage).ok_or_else(|| {
                BundleError::Reference(format!(
                    "Deployment plan {name:?} refers to {gi:?}, which is not a golden image URI."
                ))
            })?;
            gis.push(gi.to_string());
        }
        s.deployment_plans.insert(id.clone(), r);
    }
    let mut pss = w.plan_scripts.clone();
    for id in &bps {
        let r = get(meta, Kind::BuildPlan, id, "build plan")?;
        for step in r.value["buildStep"].as_array().into_iter().flatten() {
            let uri = step["planScriptUri"].as_str().unwrap_or_default();
            let ps = id_in(uri, Kind::PlanScript).ok_or_else(|| {
                BundleError::Reference(format!(
                    "Build plan {:?} has a step without a plan script URI ({uri:?}).",
                    r.value["name"]
                ))
            })?;
            pss.push(ps.to_string());
        }
        s.build_plans.insert(id.clone(), r);
    }
    for id in &pss {
        let r = get(meta, Kind::PlanScript, id, "plan script")?;
        s.plan_scripts.insert(id.clone(), r);
    }
    for id in &gis {
        let r = get(meta, Kind::GoldenImage, id, "golden image")?;
        let name = r.value["name"].as_str().unwrap_or_default();
        check_entry_name(name).map_err(|_| {
            BundleError::Reference(format!(
                "Golden image {name:?} cannot be put in a bundle: its name is the name of its \
                 file there, and must not contain '/', '\\' or be '..'."
            ))
        })?;
        s.golden_images.insert(id.clone(), r);
    }
    if s.plan_scripts.is_empty()
        && s.build_plans.is_empty()
        && s.deployment_plans.is_empty()
        && s.golden_images.is_empty()
    {
        return Err(BundleError::Reference(
            "The bundle would be empty: name at least one artifact.".into(),
        ));
    }
    Ok(s)
}

fn name_of(r: Option<&Record>) -> Value {
    r.map_or(Value::Null, |r| r.value["name"].clone())
}

fn nonempty<'a>(v: &'a Value, or: &'a Value) -> &'a Value {
    if v.is_null() { or } else { v }
}

/// The JSON files of the bundle: `(entry name, document)`.
pub fn documents(
    s: &Selection,
    bundle_name: &str,
    read_only: bool,
) -> Result<Vec<(String, Value)>, BundleError> {
    let mut out = Vec::new();
    for (id, r) in &s.plan_scripts {
        let v = &r.value;
        out.push((
            format!("{id}_planscript.json"),
            json!({
                "type": "PlanScript", "dependentArtifacts": null, "hpProvided": v["hpProvided"],
                "eTag": null, "created": null, "modified": null, "customAttributes": null,
                "planType": v["planType"], "description": v["description"], "category": null,
                "status": null, "uri": null, "name": v["name"], "id": id, "state": null,
                "content": v["content"],
            }),
        ));
    }
    for (id, r) in &s.build_plans {
        let v = &r.value;
        out.push((
            format!("{id}_buildplan.json"),
            json!({
                "type": "OeBuildPlan", "dependentArtifacts": null,
                "customAttributes": nonempty(&v["customAttributes"], &json!([])),
                "buildStep": nonempty(&v["buildStep"], &json!([])), "eTag": null, "created": null,
                "modified": null, "hpProvided": v["hpProvided"], "buildPlanid": id,
                "oeBuildPlanType": v["oeBuildPlanType"], "description": v["description"],
                "category": null, "status": null, "uri": null, "name": v["name"],
            }),
        ));
    }
    for (id, r) in &s.deployment_plans {
        let v = &r.value;
        let bp = v["oeBuildPlanURI"]
            .as_str()
            .and_then(|u| id_in(u, Kind::BuildPlan))
            .and_then(|b| s.build_plans.get(b));
        let gi = v["goldenImageURI"]
            .as_str()
            .and_then(|u| id_in(u, Kind::GoldenImage))
            .and_then(|g| s.golden_images.get(g));
        out.push((
            format!("{id}_deploymentplan.json"),
            json!({
                "type": "OEDeploymentPlan", "hpProvided": v["hpProvided"],
                "customAttributes": nonempty(&v["customAttributes"], &json!([])),
                "importMetadata": false, "eTag": null, "created": null, "modified": null,
                "goldenImageURI": name_of(gi), "oeBuildPlanURI": name_of(bp),
                "description": v["description"], "category": null, "status": null, "uri": null,
                "name": v["name"], "id": id, "state": null,
            }),
        ));
    }
    for (id, r) in &s.golden_images {
        let v = &r.value;
        out.push((
            format!("{id}_goldenimage.json"),
            json!({
                "type": "GoldenImage", "dependentArtifacts": null, "osVolumeName": null,
                "checkSum": null, "importedFromBundle": true, "bundleName": bundle_name,
                "bundleURI": null, "artifactBundleCategory": "artifact-bundles",
                "osVolumeCategory": null, "buildPlanName": null, "buildPlanCategory": null,
                "imageCapture": false, "osVolumeURI": null, "buildPlanUri": null,
                "readOnly": read_only, "created": null, "modified": null,
                "description": v["description"], "category": null, "status": null, "uri": null,
                "name": v["name"], "id": id, "state": null, "size": 0, "eTag": null,
            }),
        ));
    }
    Ok(out)
}

/// A golden image to put in the bundle: its raw content exported from storaged.
#[derive(Debug)]
pub struct ImageFile {
    pub id: String,
    /// The payload's entry name: the golden image's name.
    pub name: String,
    pub raw: File,
}

struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hasher: Hasher,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the bundle into `out`.
pub fn write(
    out: &mut File,
    manifest: &Manifest,
    docs: &[(String, Value)],
    images: &mut [ImageFile],
    tmp_dir: &Path,
) -> Result<(), BundleError> {
    let zerr = |e: zip::result::ZipError| BundleError::Io(format!("writing the bundle: {e}"));
    let io = BundleError::io("writing the bundle");
    let mut w = zip::ZipWriter::new(BufWriter::new(&mut *out));
    let deflated = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut sums = Vec::new();
    let mut put = |w: &mut zip::ZipWriter<BufWriter<&mut File>>,
                   name: &str,
                   src: &mut dyn Read,
                   opts: SimpleFileOptions|
     -> Result<(), BundleError> {
        w.start_file(name, opts).map_err(zerr)?;
        let mut h = Hashing {
            inner: w,
            hasher: Hasher::new(Algorithm::Sha256),
        };
        std::io::copy(src, &mut h).map_err(&io)?;
        sums.push((name.to_string(), h.hasher.hex()));
        Ok(())
    };
    for (name, doc) in docs {
        let bytes = serde_json::to_vec(doc).map_err(|e| BundleError::Io(e.to_string()))?;
        put(&mut w, name, &mut bytes.as_slice(), deflated)?;
    }
    for img in images.iter_mut() {
        check_entry_name(&img.name)?;
        let mut inner = crate::services::files::temp_file_in(tmp_dir)
            .map_err(|e| BundleError::Io(e.to_string()))?;
        super::image::pack_zip(&mut img.raw, &img.id, inner.as_file_mut())?;
        let f = inner.as_file_mut();
        f.seek(SeekFrom::Start(0)).map_err(&io)?;
        put(&mut w, &img.name, f, stored)?;
    }
    put(
        &mut w,
        "MANIFEST.MF",
        &mut manifest.render().as_bytes(),
        deflated,
    )?;
    let sums_text = checksum::render(&sums);
    w.start_file(checksum::SHA256_FILE, deflated)
        .map_err(zerr)?;
    w.write_all(sums_text.as_bytes()).map_err(&io)?;
    let mut buffered = w.finish().map_err(zerr)?;
    buffered.flush().map_err(&io)?;
    Ok(())
}
