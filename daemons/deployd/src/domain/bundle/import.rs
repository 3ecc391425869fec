//! Extracting a verified bundle into the store.
//!
//! Golden image payloads are imported into storaged first (their checksums decide whether an
//! image is new); then [`plan`] decides, artifact by artifact, what to create and what to
//! reuse, rewrites the references, and returns every record as ONE metadata transaction.
//! Rules:
//! * ids: a bundle's id is kept when it is a UUID not used on the appliance, else a new one;
//! * an artifact with the name and definition of an existing one is reused (not copied);
//! * one with an existing name but another definition is renamed `name (2)`, `name (3)`...,
//!   and the references inside the bundle follow the rename;
//! * build steps refer to plan scripts by URI (ids inside the bundle); deployment plans
//!   refer to their build plan and golden image by NAME (or by URI); a reference that is
//!   neither in the bundle nor on the appliance fails the whole extract;
//! * `Read Only:true` in the manifest makes every created artifact read-only.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::BundleError;
use super::read::{Contents, Doc};
use crate::domain::plan_scripts::{self, PlanScriptInput};
use crate::meta::{Expect, Kind, Op, Record};

/// The appliance's artifacts when the extract is planned.
#[derive(Debug, Default, Clone)]
pub struct Existing {
    pub plan_scripts: Vec<Record>,
    pub build_plans: Vec<Record>,
    pub deployment_plans: Vec<Record>,
    pub golden_images: Vec<Record>,
}

/// A golden image payload already imported into storaged.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The golden image's id in the bundle.
    pub bundle_id: String,
    /// The id chosen for it (and the storaged volume's name).
    pub new_id: String,
    /// storaged's volume id.
    pub volume: String,
    pub size: u64,
    /// storaged's `sha256:<hex>` of the content.
    pub checksum: String,
}

/// Counts per kind: plan scripts, build plans, deployment plans, golden images.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub plan_scripts: usize,
    pub build_plans: usize,
    pub deployment_plans: usize,
    pub golden_images: usize,
}

/// What an extract will do.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub created: Counts,
    pub reused: Counts,
    /// `(kind, bundle name, new name)`.
    pub renamed: Vec<(&'static str, String, String)>,
    /// Imported volumes not needed because an identical golden image exists.
    pub redundant_volumes: Vec<String>,
    /// `(golden image id, storaged volume)` of the golden images created.
    pub new_images: Vec<(String, String)>,
}

impl Plan {
    pub fn describe(&self) -> String {
        let c = &self.created;
        let r = &self.reused;
        let mut s = format!(
            "created {} plan scripts, {} build plans, {} deployment plans, {} golden images; \
             reused {} identical plan scripts, {} build plans, {} deployment plans, {} golden images",
            c.plan_scripts,
            c.build_plans,
            c.deployment_plans,
            c.golden_images,
            r.plan_scripts,
            r.build_plans,
            r.deployment_plans,
            r.golden_images
        );
        for (kind, from, to) in &self.renamed {
            s.push_str(&format!("; {kind} {from:?} renamed {to:?}"));
        }
        s
    }
}

/// Keeps `wanted` as the id if it is a UUID nobody uses, else makes a new one.
pub fn choose_id(wanted: &str, taken: &mut HashSet<String>) -> String {
    let id = match uuid::Uuid::parse_str(wanted) {
        Ok(u) if !taken.contains(&u.to_string()) => u.to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    taken.insert(id.clone());
    id
}

fn free_name(base: &str, taken: &HashSet<String>) -> String {
    (2..)
        .map(|i| format!("{base} ({i})"))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| format!("{base} ({})", uuid::Uuid::new_v4()))
}

fn names(records: &[Record]) -> HashSet<String> {
    records
        .iter()
        .filter_map(|r| r.value["name"].as_str().map(str::to_string))
        .collect()
}

fn ids(records: &[Record]) -> HashSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn by_name<'a>(records: &'a [Record], name: &str) -> Option<&'a Record> {
    records
        .iter()
        .find(|r| r.value["name"].as_str() == Some(name))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Build-plan custom attributes in the stored shape, sorted by name for comparison.
fn build_plan_attributes(v: &Value) -> Value {
    let mut list: Vec<Value> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    json!({
                        "name": text(&x["name"]),
                        "description": text(&x["description"]),
                        "value": text(&x["value"]),
                        "constraints": text(&x["constraints"]),
                        "type": text(&x["type"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort_by(|a, b| text(&a["name"]).cmp(&text(&b["name"])));
    Value::Array(list)
}

/// Deployment-plan custom attributes in the stored shape (ids kept or made).
fn deployment_plan_attributes(v: &Value) -> Value {
    let mut list: Vec<Value> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let id = x["id"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
                    json!({
                        "id": id,
                        "name": text(&x["name"]),
                        "description": text(&x["description"]),
                        "value": text(&x["value"]),
                        "constraints": text(&x["constraints"]),
                        "type": text(&x["type"]),
                        "visible": x["visible"].as_bool().unwrap_or(true),
                        "editable": x["editable"].as_bool().unwrap_or(true),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort_by(|a, b| text(&a["name"]).cmp(&text(&b["name"])));
    Value::Array(list)
}

/// Attributes without their ids, for comparing definitions.
fn without_ids(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(a) = v.as_array_mut() {
        for x in a {
            if let Some(o) = x.as_object_mut() {
                o.remove("id");
            }
        }
    }
    v
}

fn steps_for_compare(v: &Value) -> Value {
    json!(
        v.as_array()
            .map(|a| a
                .iter()
                .map(|s| json!([
                    text(&s["serialNumber"]),
                    text(&s["planScriptUri"]),
                    s["parameters"]
                ]))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    )
}

/// The id at the end of `uri` if it is `<prefix>/<id>`.
fn id_of<'a>(uri: &'a str, prefix: &str) -> Option<&'a str> {
    uri.strip_prefix(prefix)?
        .strip_prefix('/')
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// Where a bundle artifact ended up: id and name on the appliance.
type Mapping = BTreeMap<String, (String, String)>;

/// Plans the extract of `c` (see the module documentation).
pub fn plan(
    existing: &Existing,
    c: &Contents,
    images: &[ImportedImage],
    bundle_uri: &str,
    now: &str,
) -> Result<Plan, BundleError> {
    let ro = c.manifest.read_only;
    let mut p = Plan::default();

    // Plan scripts.
    let mut ps_map = Mapping::new();
    let mut taken_ids = ids(&existing.plan_scripts);
    let mut taken_names = names(&existing.plan_scripts);
    for d in &c.plan_scripts {
        let mut input: PlanScriptInput = serde_json::from_value(d.value.clone())
            .map_err(|e| BundleError::Invalid(format!("{}: {e}.", d.entry)))?;
        let same = by_name(&existing.plan_scripts, &input.name);
        let identical = same.filter(|r| {
            r.value["planType"] == json!(input.plan_type)
                && r.value["content"].as_str() == Some(input.content.as_str())
        });
        if let Some(r) = identical {
            ps_map.insert(d.id.clone(), (r.id.clone(), input.name.clone()));
            p.reused.plan_scripts += 1;
            continue;
        }
        if taken_names.contains(&input.name) {
            let new = free_name(&input.name, &taken_names);
            p.renamed.push((
                "plan script",
                std::mem::replace(&mut input.name, new.clone()),
                new,
            ));
        }
        taken_names.insert(input.name.clone());
        let id = choose_id(&d.id, &mut taken_ids);
        ps_map.insert(d.id.clone(), (id.clone(), input.name.clone()));
        p.ops.push(Op::Put {
            kind: Kind::PlanScript,
            id,
            value: plan_scripts::document(&input, now, ro),
            expect: Expect::Absent,
        });
        p.created.plan_scripts += 1;
    }

    // Build plans.
    let mut bp_map = Mapping::new();
    let mut taken_ids = ids(&existing.build_plans);
    let mut taken_names = names(&existing.build_plans);
    for d in &c.build_plans {
        let v = &d.value;
        let mut steps = Vec::new();
        for (i, step) in v["buildStep"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let uri = text(&step["planScriptUri"]);
            let step_name = text(&step["planScriptName"]);
            let in_bundle = id_of(&uri, "/rest/plan-scripts")
                .and_then(|id| ps_map.get(id))
                .or_else(|| {
                    c.plan_scripts
                        .iter()
                        .find(|p| !step_name.is_empty() && p.name() == step_name)
                        .and_then(|p| ps_map.get(&p.id))
                })
                .cloned();
            let on_appliance = || {
                id_of(&uri, "/rest/plan-scripts").and_then(|id| {
                    existing
                        .plan_scripts
                        .iter()
                        .find(|r| r.id == id)
                        .map(|r| (r.id.clone(), text(&r.value["name"])))
                })
            };
            let Some((ps_id, ps_name)) = in_bundle.or_else(on_appliance) else {
                return Err(BundleError::Reference(format!(
                    "{}: build step {} refers to plan script {uri:?} ({step_name:?}), which is \
                     neither in the bundle nor on the appliance.",
                    d.entry,
                    i + 1
                )));
            };
            let serial = match &step["serialNumber"] {
                Value::Null => (i + 1).to_string(),
                s => text(s),
            };
            steps.push(json!({
                "serialNumber": serial,
                "planScriptUri": format!("/rest/plan-scripts/{ps_id}"),
                "planScriptName": ps_name,
                "parameters": step["parameters"],
            }));
        }
        let steps = Value::Array(steps);
        let kind = text(&v["oeBuildPlanType"]).to_ascii_lowercase();
        let kind = if kind.is_empty() {
            "deploy".into()
        } else {
            kind
        };
        let attrs = build_plan_attributes(&v["customAttributes"]);
        let mut name = d.name().to_string();
        let identical = by_name(&existing.build_plans, &name).filter(|r| {
            text(&r.value["oeBuildPlanType"]).eq_ignore_ascii_case(&kind)
                && steps_for_compare(&r.value["buildStep"]) == steps_for_compare(&steps)
                && build_plan_attributes(&r.value["customAttributes"]) == attrs
        });
        if let Some(r) = identical {
            bp_map.insert(d.id.clone(), (r.id.clone(), name));
            p.reused.build_plans += 1;
            continue;
        }
        if taken_names.contains(&name) {
            let new = free_name(&name, &taken_names);
            p.renamed
                .push(("build plan", std::mem::replace(&mut name, new.clone()), new));
        }
        taken_names.insert(name.clone());
        let id = choose_id(&d.id, &mut taken_ids);
        bp_map.insert(d.id.clone(), (id.clone(), name.clone()));
        let hp = v["hpProvided"].as_bool().unwrap_or(false);
        p.ops.push(Op::Put {
            kind: Kind::BuildPlan,
            id,
            value: json!({
                "name": name,
                "description": text(&v["description"]),
                "oeBuildPlanType": kind,
                "hpProvided": hp,
                "readOnly": ro || hp,
                "buildStep": steps,
                "customAttributes": attrs,
                "created": now,
                "modified": now,
            }),
            expect: Expect::Absent,
        });
        p.created.build_plans += 1;
    }

    // Golden images (payloads already imported).
    let mut gi_map = Mapping::new();
    let mut taken_names = names(&existing.golden_images);
    for d in &c.golden_images {
        let img = images
            .iter()
            .find(|i| i.bundle_id == d.id)
            .ok_or_else(|| BundleError::Io(format!("the image of {} was not imported", d.entry)))?;
        let mut name = d.name().to_string();
        let identical = by_name(&existing.golden_images, &name)
            .filter(|r| r.value["checkSum"].as_str() == Some(img.checksum.as_str()));
        if let Some(r) = identical {
            gi_map.insert(d.id.clone(), (r.id.clone(), name));
            p.redundant_volumes.push(img.volume.clone());
            p.reused.golden_images += 1;
            continue;
        }
        if taken_names.contains(&name) {
            let new = free_name(&name, &taken_names);
            p.renamed.push((
                "golden image",
                std::mem::replace(&mut name, new.clone()),
                new,
            ));
        }
        taken_names.insert(name.clone());
        gi_map.insert(d.id.clone(), (img.new_id.clone(), name.clone()));
        p.ops.push(Op::Put {
            kind: Kind::GoldenImage,
            id: img.new_id.clone(),
            value: json!({
                "name": name,
                "description": text(&d.value["description"]),
                "size": img.size,
                "checkSum": img.checksum,
                "imageCapture": false,
                "readOnly": ro,
                "importedFromBundle": true,
                "bundleName": c.manifest.name,
                "bundleURI": bundle_uri,
                "artifactBundleCategory": "artifact-bundles",
                "osVolumeURI": null,
                "buildPlanUri": null,
                "storageVolume": img.volume,
                "created": now,
                "modified": now,
            }),
            expect: Expect::Absent,
        });
        p.new_images.push((img.new_id.clone(), img.volume.clone()));
        p.created.golden_images += 1;
    }

    // Deployment plans.
    let mut taken_ids = ids(&existing.deployment_plans);
    let mut taken_names = names(&existing.deployment_plans);
    for d in &c.deployment_plans {
        let v = &d.value;
        let bp_ref = text(&v["oeBuildPlanURI"]);
        let bp = resolve(
            &bp_ref,
            "/rest/build-plans",
            &c.build_plans,
            &bp_map,
            &existing.build_plans,
        )
        .ok_or_else(|| {
            BundleError::Reference(format!(
                "{}: deployment plan {:?} refers to build plan {bp_ref:?}, which is neither in \
                 the bundle nor on the appliance.",
                d.entry,
                d.name()
            ))
        })?;
        let gi_ref = text(&v["goldenImageURI"]);
        let gi = if gi_ref.is_empty() {
            None
        } else {
            Some(
                resolve(
                    &gi_ref,
                    "/rest/golden-images",
                    &c.golden_images,
                    &gi_map,
                    &existing.golden_images,
                )
                .ok_or_else(|| {
                    BundleError::Reference(format!(
                        "{}: deployment plan {:?} refers to golden image {gi_ref:?}, which is \
                         neither in the bundle nor on the appliance.",
                        d.entry,
                        d.name()
                    ))
                })?,
            )
        };
        let bp_uri = format!("/rest/build-plans/{bp}");
        let gi_uri = gi.map(|g| format!("/rest/golden-images/{g}"));
        let attrs = deployment_plan_attributes(&v["customAttributes"]);
        let mut name = d.name().to_string();
        let identical = by_name(&existing.deployment_plans, &name).filter(|r| {
            r.value["oeBuildPlanURI"].as_str() == Some(bp_uri.as_str())
                && r.value["goldenImageURI"].as_str() == gi_uri.as_deref()
                && without_ids(&deployment_plan_attributes(&r.value["customAttributes"]))
                    == without_ids(&attrs)
        });
        if identical.is_some() {
            p.reused.deployment_plans += 1;
            continue;
        }
        if taken_names.contains(&name) {
            let new = free_name(&name, &taken_names);
            p.renamed.push((
                "deployment plan",
                std::mem::replace(&mut name, new.clone()),
                new,
            ));
        }
        taken_names.insert(name.clone());
        let id = choose_id(&d.id, &mut taken_ids);
        let hp = v["hpProvided"].as_bool().unwrap_or(false);
        p.ops.push(Op::Put {
            kind: Kind::DeploymentPlan,
            id,
            value: json!({
                "name": name,
                "description": text(&v["description"]),
                "hpProvided": hp,
                "readOnly": ro || hp,
                "oeBuildPlanURI": bp_uri,
                "goldenImageURI": gi_uri,
                "customAttributes": attrs,
                "created": now,
                "modified": now,
            }),
            expect: Expect::Absent,
        });
        p.created.deployment_plans += 1;
    }
    Ok(p)
}

/// Resolves a deployment plan's reference: a URI or a name, first among the bundle's own
/// artifacts (through where they ended up), then on the appliance. Returns the id.
fn resolve(
    reference: &str,
    prefix: &str,
    bundle: &[Doc],
    map: &Mapping,
    existing: &[Record],
) -> Option<String> {
    if let Some(id) = id_of(reference, prefix) {
        return map
            .get(id)
            .map(|(i, _)| i.clone())
            .or_else(|| existing.iter().find(|r| r.id == id).map(|r| r.id.clone()));
    }
    bundle
        .iter()
        .find(|d| d.name() == reference)
        .and_then(|d| map.get(&d.id))
        .map(|(i, _)| i.clone())
        .or_else(|| by_name(existing, reference).map(|r| r.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bundle::manifest::Manifest;

    fn doc(id: &str, kind: &str, v: Value) -> Doc {
        Doc {
            id: id.into(),
            entry: format!("{id}_{kind}.json"),
            value: v,
        }
    }

    fn contents(script: &str) -> Contents {
        let ps = "11111111-1111-4111-8111-111111111111";
        let bp = "22222222-2222-4222-8222-222222222222";
        let dp = "33333333-3333-4333-8333-333333333333";
        Contents {
            manifest: Manifest {
                name: "b".into(),
                description: String::new(),
                read_only: true,
                time_stamp: String::new(),
                artifact_type: "USER".into(),
            },
            plan_scripts: vec![doc(
                ps,
                "planscript",
                json!({"name": "S", "planType": "deploy", "content": script}),
            )],
            build_plans: vec![doc(
                bp,
                "buildplan",
                json!({"name": "B", "oeBuildPlanType": "Deploy", "buildStep": [
                    {"serialNumber": "1", "planScriptUri": format!("/rest/plan-scripts/{ps}"), "planScriptName": "S"}],
                    "customAttributes": [{"name": "X", "value": "1", "type": "string", "constraints": "{}"}]}),
            )],
            deployment_plans: vec![doc(
                dp,
                "deploymentplan",
                json!({"name": "D", "oeBuildPlanURI": "B", "goldenImageURI": null,
                       "customAttributes": [{"id": "a", "name": "X", "value": "1", "type": "string"}]}),
            )],
            golden_images: vec![],
            sizes: BTreeMap::new(),
        }
    }

    fn apply(existing: &mut Existing, plan: &Plan) {
        for op in &plan.ops {
            if let Op::Put {
                kind, id, value, ..
            } = op
            {
                let r = Record {
                    kind: *kind,
                    id: id.clone(),
                    created: 1,
                    revision: 1,
                    value: value.clone(),
                };
                match kind {
                    Kind::PlanScript => existing.plan_scripts.push(r),
                    Kind::BuildPlan => existing.build_plans.push(r),
                    Kind::DeploymentPlan => existing.deployment_plans.push(r),
                    _ => existing.golden_images.push(r),
                }
            }
        }
    }

    #[test]
    fn second_extract_reuses_and_changed_script_is_renamed_with_references_following() {
        let mut ex = Existing::default();
        let first = plan(&ex, &contents("echo 1"), &[], "/b", "now").unwrap();
        assert_eq!(first.created.plan_scripts, 1);
        assert_eq!(first.created.deployment_plans, 1);
        apply(&mut ex, &first);
        let bp = &ex.build_plans[0];
        assert_eq!(bp.value["oeBuildPlanType"], "deploy");
        assert_eq!(bp.value["readOnly"], true);
        assert_eq!(
            bp.value["buildStep"][0]["planScriptUri"],
            format!("/rest/plan-scripts/{}", ex.plan_scripts[0].id)
        );
        assert_eq!(
            ex.deployment_plans[0].value["oeBuildPlanURI"],
            format!("/rest/build-plans/{}", bp.id)
        );

        let again = plan(&ex, &contents("echo 1"), &[], "/b", "now").unwrap();
        assert!(again.ops.is_empty(), "{:?}", again.ops);
        assert_eq!(again.reused.plan_scripts, 1);
        assert_eq!(again.reused.deployment_plans, 1);

        let changed = plan(&ex, &contents("echo 2"), &[], "/b", "now").unwrap();
        assert_eq!(changed.created.plan_scripts, 1);
        apply(&mut ex, &changed);
        let new_ps = ex
            .plan_scripts
            .iter()
            .find(|r| r.value["name"] == "S (2)")
            .expect("renamed script");
        // The build plan differs now (another script), so it is renamed too and points at it.
        let new_bp = ex
            .build_plans
            .iter()
            .find(|r| r.value["name"] == "B (2)")
            .expect("renamed build plan");
        assert_eq!(
            new_bp.value["buildStep"][0]["planScriptUri"],
            format!("/rest/plan-scripts/{}", new_ps.id)
        );
        assert_eq!(new_bp.value["buildStep"][0]["planScriptName"], "S (2)");
        let new_dp = ex
            .deployment_plans
            .iter()
            .find(|r| r.value["name"] == "D (2)")
            .expect("renamed deployment plan");
        assert_eq!(
            new_dp.value["oeBuildPlanURI"],
            format!("/rest/build-plans/{}", new_bp.id)
        );
    }

    #[test]
    fn unresolved_references_fail_the_plan() {
        let mut c = contents("x");
        c.deployment_plans[0].value["goldenImageURI"] = json!("No Such Image");
        let e = plan(&Existing::default(), &c, &[], "/b", "now").unwrap_err();
        assert!(e.to_string().contains("No Such Image"), "{e}");
        let mut c = contents("x");
        c.build_plans[0].value["buildStep"][0]["planScriptUri"] = json!("/rest/plan-scripts/zz");
        c.build_plans[0].value["buildStep"][0]["planScriptName"] = json!("zz");
        assert!(plan(&Existing::default(), &c, &[], "/b", "now").is_err());
    }
}
