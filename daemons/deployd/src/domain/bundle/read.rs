//! Reading a bundle: layout and name checks, checksum verification of every file, and the
//! parsed artifact documents. Image payloads are only hashed here; [`extract_entry`] streams
//! one to a file when the import needs it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Value, json};

use super::checksum::{self, Algorithm};
use super::manifest::Manifest;
use super::{BundleError, JSON_LIMIT, check_entry_name};

/// One artifact document of a bundle.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Its id inside the bundle (from the entry name `<id>_<kind>.json`).
    pub id: String,
    /// The zip entry it came from.
    pub entry: String,
    pub value: Value,
}

impl Doc {
    pub fn name(&self) -> &str {
        self.value["name"].as_str().unwrap_or_default()
    }
}

/// A verified bundle.
#[derive(Debug, Clone)]
pub struct Contents {
    pub manifest: Manifest,
    pub plan_scripts: Vec<Doc>,
    pub build_plans: Vec<Doc>,
    pub deployment_plans: Vec<Doc>,
    /// Golden image documents; the payload entry is named like the golden image.
    pub golden_images: Vec<Doc>,
    /// Entry name → uncompressed size, for every file.
    pub sizes: BTreeMap<String, u64>,
}

impl Contents {
    pub fn artifacts_count(&self) -> usize {
        self.plan_scripts.len()
            + self.build_plans.len()
            + self.deployment_plans.len()
            + self.golden_images.len()
    }
}

fn invalid(m: String) -> BundleError {
    BundleError::Invalid(m)
}

fn zip_error(e: zip::result::ZipError) -> BundleError {
    invalid(format!(
        "The artifact bundle is not a readable zip archive (truncated or corrupt): {e}."
    ))
}

/// Number of entries the central directory declares, read from the end-of-central-directory
/// records. The zip reader keys entries by name, so a duplicate name would silently hide an
/// entry; comparing the counts exposes it.
fn declared_entries(f: &mut File) -> Result<u64, BundleError> {
    let io = BundleError::io("reading the bundle");
    let len = f.seek(SeekFrom::End(0)).map_err(&io)?;
    let tail_len = len.min(65_557);
    f.seek(SeekFrom::Start(len - tail_len)).map_err(&io)?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail).map_err(&io)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| invalid("The artifact bundle is not a zip archive (no end of central directory; truncated?).".into()))?;
    let total = u16::from_le_bytes([tail[eocd + 10], tail[eocd + 11]]);
    if total != 0xFFFF {
        return Ok(u64::from(total));
    }
    // Zip64: the locator sits just before the EOCD and points at the zip64 EOCD record.
    let loc = eocd
        .checked_sub(20)
        .filter(|&l| tail[l..l + 4] == [0x50, 0x4b, 0x06, 0x07])
        .ok_or_else(|| invalid("The artifact bundle's zip64 directory is missing.".into()))?;
    let mut off = [0u8; 8];
    off.copy_from_slice(&tail[loc + 8..loc + 16]);
    f.seek(SeekFrom::Start(u64::from_le_bytes(off) + 32))
        .map_err(&io)?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(&io)?;
    Ok(u64::from_le_bytes(n))
}

fn read_text(zip: &mut zip::ZipArchive<File>, name: &str) -> Result<String, BundleError> {
    let entry = zip.by_name(name).map_err(zip_error)?;
    let mut s = String::new();
    entry
        .take(JSON_LIMIT + 1)
        .read_to_string(&mut s)
        .map_err(|e| invalid(format!("{name} cannot be read as text: {e}.")))?;
    if s.len() as u64 > JSON_LIMIT {
        return Err(invalid(format!(
            "{name} is larger than {JSON_LIMIT} bytes."
        )));
    }
    Ok(s)
}

const KINDS: [&str; 4] = [
    "_planscript.json",
    "_buildplan.json",
    "_deploymentplan.json",
    "_goldenimage.json",
];

/// Opens, checks and parses the bundle at `path`. Every file's digest must match the
/// checksum file, and every file must be listed in it.
pub fn read(path: &Path) -> Result<Contents, BundleError> {
    let mut f = File::open(path).map_err(BundleError::io("opening the bundle"))?;
    let declared = declared_entries(&mut f)?;
    f.seek(SeekFrom::Start(0))
        .map_err(BundleError::io("reading the bundle"))?;
    let mut zip = zip::ZipArchive::new(f).map_err(zip_error)?;
    if declared != zip.len() as u64 {
        return Err(invalid(format!(
            "The artifact bundle lists {declared} entries but only {} distinct names: \
             entries with duplicate names are refused.",
            zip.len()
        )));
    }
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    for n in &names {
        check_entry_name(n)?;
    }
    let (sum_file, algorithm) = [checksum::SHA256_FILE, checksum::SHA1_FILE]
        .into_iter()
        .find_map(|n| {
            names
                .iter()
                .any(|x| x == n)
                .then(|| (n, Algorithm::for_file(n)))
        })
        .and_then(|(n, a)| a.map(|a| (n, a)))
        .ok_or_else(|| {
            invalid(format!(
                "The artifact bundle has no checksum file ({} or {}).",
                checksum::SHA256_FILE,
                checksum::SHA1_FILE
            ))
        })?;
    let sums = checksum::parse(&read_text(&mut zip, sum_file)?, sum_file)?;
    let mut texts = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_error)?;
        let name = entry.name().to_string();
        if entry.is_dir() {
            return Err(invalid(format!(
                "The artifact bundle holds a directory ({name:?}); bundles are flat."
            )));
        }
        if name == checksum::SHA256_FILE || name == checksum::SHA1_FILE {
            continue;
        }
        let Some(want) = sums.get(&name) else {
            return Err(invalid(format!(
                "{name} is not listed in {sum_file}: the bundle cannot be verified."
            )));
        };
        let keep = name.ends_with(".json") || name == "MANIFEST.MF";
        let mut buf = Vec::new();
        let copied = if keep {
            checksum::copy_hashing(&mut entry, &mut buf, algorithm, JSON_LIMIT)
        } else {
            checksum::copy_hashing(&mut entry, &mut std::io::sink(), algorithm, u64::MAX)
        };
        let (got, size) = copied.map_err(|e| {
            invalid(format!(
                "{name} cannot be read from the bundle (truncated or corrupt): {e}."
            ))
        })?;
        if &got != want {
            return Err(invalid(format!(
                "Checksum mismatch for {name}: {sum_file} says {want}, the file has {got}."
            )));
        }
        sizes.insert(name.clone(), size);
        if keep {
            texts.insert(name, buf);
        }
    }
    if let Some(missing) = sums.keys().find(|k| !sizes.contains_key(*k)) {
        return Err(invalid(format!(
            "{missing} is listed in {sum_file} but missing from the bundle."
        )));
    }
    let manifest = texts
        .remove("MANIFEST.MF")
        .ok_or_else(|| invalid("The artifact bundle has no MANIFEST.MF.".into()))?;
    let manifest = Manifest::parse(&String::from_utf8_lossy(&manifest))?;
    let mut kinds: [Vec<Doc>; 4] = Default::default();
    for (entry, bytes) in texts {
        let Some(k) = KINDS.iter().position(|s| entry.ends_with(s)) else {
            return Err(invalid(format!(
                "{entry} is not an artifact file (<id>_planscript.json, _buildplan.json, \
                 _deploymentplan.json or _goldenimage.json)."
            )));
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{entry} is not valid JSON: {e}.")))?;
        if !value.is_object() || value["name"].as_str().is_none_or(|n| n.trim().is_empty()) {
            return Err(invalid(format!(
                "{entry} is not an artifact document: it needs a \"name\"."
            )));
        }
        let id = entry[..entry.len() - KINDS[k].len()].to_string();
        kinds[k].push(Doc { id, entry, value });
    }
    let [plan_scripts, build_plans, deployment_plans, golden_images] = kinds;
    let payloads: BTreeSet<&str> = golden_images.iter().map(Doc::name).collect();
    for gi in &golden_images {
        if !sizes.contains_key(gi.name()) {
            return Err(invalid(format!(
                "{} describes golden image {:?} but the bundle has no file of that name.",
                gi.entry,
                gi.name()
            )));
        }
    }
    for n in sizes.keys() {
        let known = n == "MANIFEST.MF" || n.ends_with(".json") || payloads.contains(n.as_str());
        if !known {
            return Err(invalid(format!(
                "{n} is neither an artifact file nor the image of a golden image in the bundle."
            )));
        }
    }
    Ok(Contents {
        manifest,
        plan_scripts,
        build_plans,
        deployment_plans,
        golden_images,
        sizes,
    })
}

/// Streams entry `name` of the bundle at `path` into `out`.
pub fn extract_entry(path: &Path, name: &str, out: &mut File) -> Result<u64, BundleError> {
    let f = File::open(path).map_err(BundleError::io("opening the bundle"))?;
    let mut zip = zip::ZipArchive::new(f).map_err(zip_error)?;
    let mut entry = zip.by_name(name).map_err(zip_error)?;
    let n = std::io::copy(&mut entry, out)
        .map_err(|e| invalid(format!("{name} cannot be read from the bundle: {e}.")))?;
    out.seek(SeekFrom::Start(0))
        .map_err(BundleError::io("rewinding"))?;
    Ok(n)
}

fn s(v: &Value) -> Value {
    json!(v.as_str().unwrap_or_default())
}

/// The artifact lists of the `ArtifactsBundle` resource (HPE's field names and casing).
pub fn summary(c: &Contents) -> Value {
    let ro = c.manifest.read_only;
    let step_names = |bp: &Value| -> String {
        bp["buildStep"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|s| s["planScriptName"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    json!({
        "planScripts": c.plan_scripts.iter().map(|d| json!({
            "psID": d.id, "planScriptName": d.name(), "description": s(&d.value["description"]), "readOnly": ro,
        })).collect::<Vec<_>>(),
        "buildPlans": c.build_plans.iter().map(|d| json!({
            "bpID": d.id, "buildPlanName": d.name(), "description": s(&d.value["description"]),
            "planScriptName": step_names(&d.value), "readOnly": ro,
        })).collect::<Vec<_>>(),
        "deploymentPlans": c.deployment_plans.iter().map(|d| json!({
            "dpId": d.id, "deploymentplanName": d.name(), "description": s(&d.value["description"]),
            "oebpName": s(&d.value["oeBuildPlanURI"]), "goldenImageName": s(&d.value["goldenImageURI"]),
            "readOnly": ro,
        })).collect::<Vec<_>>(),
        "goldenimage": c.golden_images.iter().map(|d| json!({
            "giId": d.id, "goldenimageName": d.name(), "description": s(&d.value["description"]), "readOnly": ro,
        })).collect::<Vec<_>>(),
        "artifactsCount": c.artifacts_count(),
        "readOnly": ro,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/bundles"
    );

    fn corpus() -> Option<Vec<std::path::PathBuf>> {
        let mut v: Vec<_> = std::fs::read_dir(CORPUS)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "zip"))
            .collect();
        v.sort();
        Some(v)
    }

    #[test]
    fn every_corpus_bundle_verifies_and_parses() {
        let Some(bundles) = corpus() else {
            eprintln!("skipped: corpus directory {CORPUS} is missing");
            return;
        };
        assert!(!bundles.is_empty());
        for b in bundles {
            let c = read(&b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
            assert!(c.artifacts_count() > 0, "{}", b.display());
            assert!(c.manifest.read_only);
            let s = summary(&c);
            assert_eq!(s["artifactsCount"], c.artifacts_count());
            for bp in &c.build_plans {
                for step in bp.value["buildStep"].as_array().unwrap() {
                    let uri = step["planScriptUri"].as_str().unwrap();
                    let id = uri.rsplit('/').next().unwrap();
                    assert!(
                        c.plan_scripts.iter().any(|p| p.id == id),
                        "{}: {uri} not in the bundle",
                        b.display()
                    );
                }
            }
        }
    }
}
