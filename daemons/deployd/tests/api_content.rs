//! Golden images, OS volumes and artifact bundles through the real HTTPS API, with a real
//! storaged, on HPE's own bundles from the corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use common::{Api, TestServer};
use deployd::meta::{Expect, Kind, Op};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/bundles"
);
const DEV_2017: &str = "HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip";
const FOUNDATION: &str = "HPE_Foundation_Artifacts-5_00.zip";

fn corpus() -> Option<Vec<PathBuf>> {
    let Ok(dir) = std::fs::read_dir(CORPUS) else {
        eprintln!("skipped: the bundle corpus {CORPUS} is missing");
        return None;
    };
    let mut v: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zip"))
        .collect();
    v.sort();
    Some(v)
}

fn corpus_file(name: &str) -> Option<Vec<u8>> {
    corpus()?;
    Some(std::fs::read(PathBuf::from(CORPUS).join(name)).unwrap())
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Entries of a zip, in order.
fn entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            (e.name().to_string(), b)
        })
        .collect()
}

fn make_zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (n, b) in files {
        w.start_file(
            n.as_str(),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(b).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Rebuilds a bundle after `edit`, with a fresh SHA256SUM when `resum`.
fn rewrite(bundle: &[u8], resum: bool, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = entries(bundle)
        .into_iter()
        .map(|(n, b)| {
            let b = edit(&n, b);
            (n, b)
        })
        .collect();
    if resum {
        files.retain(|(n, _)| !n.starts_with("SHA"));
        let sums: String = files
            .iter()
            .map(|(n, b)| format!("{n}\t{}\n", sha256(b)))
            .collect();
        files.push(("SHA256SUM.sha256sum".into(), sums.into_bytes()));
    }
    make_zip(&files)
}

fn with_manifest_name(name: &str, b: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(b).unwrap();
    text.lines()
        .map(|l| {
            if l.starts_with("Artifact Name:") {
                format!("Artifact Name:{name}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>()
        .into_bytes()
}

fn count(s: &TestServer, k: Kind) -> usize {
    s.state.services.meta.list(k).unwrap().len()
}

fn counts(s: &TestServer) -> [usize; 5] {
    [
        count(s, Kind::PlanScript),
        count(s, Kind::BuildPlan),
        count(s, Kind::DeploymentPlan),
        count(s, Kind::GoldenImage),
        count(s, Kind::ArtifactBundle),
    ]
}

/// Uploads a bundle; returns its URI.
fn upload_bundle(api: &Api, name: &str, bytes: Vec<u8>) -> String {
    let t = api.wait_task(api.upload("/rest/artifact-bundles", name, bytes, &[]));
    assert_eq!(t["taskState"], "Completed", "{t}");
    t["associatedResource"]["resourceUri"]
        .as_str()
        .unwrap()
        .to_string()
}

fn extract(api: &Api, uri: &str) -> Value {
    let r = api
        .req(
            reqwest::Method::PUT,
            &format!("{uri}?extract=true&forceImport=true"),
        )
        .header("Content-Type", "text/plain;charset=UTF-8")
        .send()
        .unwrap();
    api.wait_task(r)
}

/// The raw image inside a golden image zip, and its member name.
fn inner_image(gi_zip: &[u8]) -> (String, Vec<u8>) {
    let mut e = entries(gi_zip);
    assert_eq!(e.len(), 1);
    e.remove(0)
}

/// Every reference among the appliance's artifacts resolves.
fn assert_references_resolve(s: &TestServer) {
    let m = &s.state.services.meta;
    for bp in m.list(Kind::BuildPlan).unwrap() {
        for step in bp.value["buildStep"].as_array().unwrap() {
            let uri = step["planScriptUri"].as_str().unwrap();
            let id = uri.strip_prefix("/rest/plan-scripts/").unwrap();
            let ps = m.get(Kind::PlanScript, id).unwrap().expect(uri);
            assert_eq!(ps.value["name"], step["planScriptName"]);
        }
    }
    for dp in m.list(Kind::DeploymentPlan).unwrap() {
        let uri = dp.value["oeBuildPlanURI"].as_str().unwrap();
        let id = uri.strip_prefix("/rest/build-plans/").unwrap();
        assert!(m.get(Kind::BuildPlan, id).unwrap().is_some(), "{uri}");
        if let Some(gi) = dp.value["goldenImageURI"].as_str() {
            let id = gi.strip_prefix("/rest/golden-images/").unwrap();
            assert!(m.get(Kind::GoldenImage, id).unwrap().is_some(), "{gi}");
        }
    }
}

#[test]
fn every_corpus_bundle_uploads_and_extracts_with_references_resolved() {
    let Some(bundles) = corpus() else { return };
    for path in bundles {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let s = TestServer::start_with_storage();
        let api = s.login(800);
        let uri = upload_bundle(&api, &file, bytes.clone());
        let b = api.get_json(&uri);
        assert_eq!(b["type"], "ArtifactsBundle");
        assert_eq!(b["readOnly"], true);
        assert_eq!(counts(&s)[..4], [0, 0, 0, 0], "upload must not extract");
        let t = extract(&api, &uri);
        assert_eq!(t["taskState"], "Completed", "{file}: {t}");
        let c = counts(&s);
        assert_eq!(b["planScripts"].as_array().unwrap().len(), c[0], "{file}");
        assert_eq!(b["buildPlans"].as_array().unwrap().len(), c[1], "{file}");
        assert_eq!(
            b["deploymentPlans"].as_array().unwrap().len(),
            c[2],
            "{file}"
        );
        assert_eq!(b["goldenimage"].as_array().unwrap().len(), c[3], "{file}");
        assert_eq!(
            b["artifactsCount"].as_u64().unwrap() as usize,
            c[0] + c[1] + c[2] + c[3]
        );
        assert_references_resolve(&s);
        for k in [Kind::PlanScript, Kind::BuildPlan, Kind::DeploymentPlan] {
            for r in s.state.services.meta.list(k).unwrap() {
                assert_eq!(r.value["readOnly"], true, "manifest Read Only:true");
            }
        }
        // Golden images: content equals the raw image of the bundle's inner zip.
        let vols = s.volumes();
        assert_eq!(vols.len(), c[3]);
        for gi in s.state.services.meta.list(Kind::GoldenImage).unwrap() {
            let name = gi.value["name"].as_str().unwrap();
            let payload = entries(&bytes)
                .into_iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1;
            let (_, raw) = inner_image(&payload);
            let want = format!("sha256:{}", sha256(&raw));
            assert_eq!(gi.value["checkSum"], want.as_str());
            let vol = vols
                .iter()
                .find(|v| Some(v.record.id.as_str()) == gi.value["storageVolume"].as_str())
                .expect("golden image volume");
            assert_eq!(vol.record.checksum.as_deref(), Some(want.as_str()));
            assert_eq!(vol.record.size, raw.len() as u64);
            let api_gi = api.get_json(&format!("/rest/golden-images/{}", gi.id));
            assert_eq!(api_gi["type"], "GoldenImage");
            assert_eq!(api_gi["importedFromBundle"], true);
        }
        println!(
            "{file}: {} plan scripts, {} build plans, {} deployment plans, {} golden images",
            c[0], c[1], c[2], c[3]
        );
        assert_eq!(s.temp_files(), 0);
    }
}

#[test]
fn extracting_twice_reuses_and_a_changed_script_is_renamed() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let uri = upload_bundle(&api, DEV_2017, dev.clone());
    assert_eq!(extract(&api, &uri)["taskState"], "Completed");
    let first = counts(&s);
    let vols = s.volumes().len();
    let t = extract(&api, &uri);
    assert_eq!(t["taskState"], "Completed", "{t}");
    assert!(
        t["taskStatus"]
            .as_str()
            .unwrap()
            .contains("reused 7 identical plan scripts"),
        "{t}"
    );
    assert_eq!(counts(&s), first, "identical artifacts are reused");
    assert_eq!(
        s.volumes().len(),
        vols,
        "the redundant image volume is deleted"
    );

    // Same bundle with one script changed (and another bundle name).
    let target = "HPE - Developer 1.0 - attempt or fail deployment - 2017-03-24";
    let changed = rewrite(&dev, true, |n, b| {
        if n == "MANIFEST.MF" {
            return with_manifest_name("changed", b);
        }
        if n.ends_with("_planscript.json") {
            let mut v: Value = serde_json::from_slice(&b).unwrap();
            if v["name"] == target {
                v["content"] = json!("echo changed");
                return serde_json::to_vec(&v).unwrap();
            }
        }
        b
    });
    let uri2 = upload_bundle(&api, "changed.zip", changed);
    let t = extract(&api, &uri2);
    assert_eq!(t["taskState"], "Completed", "{t}");
    let c = counts(&s);
    assert_eq!(c[0], first[0] + 1, "only the changed script is new");
    let m = &s.state.services.meta;
    let renamed = m
        .list(Kind::PlanScript)
        .unwrap()
        .into_iter()
        .find(|r| r.value["name"] == format!("{target} (2)"))
        .expect("renamed script");
    assert_eq!(renamed.value["content"], "echo changed");
    // Build plans using it are new (renamed) and point at the renamed script.
    let users: Vec<_> = m
        .list(Kind::BuildPlan)
        .unwrap()
        .into_iter()
        .filter(|bp| {
            bp.value["buildStep"]
                .as_array()
                .unwrap()
                .iter()
                .any(|st| st["planScriptUri"] == format!("/rest/plan-scripts/{}", renamed.id))
        })
        .collect();
    assert_eq!(users.len(), 2, "both build plans using the script");
    for bp in &users {
        assert!(bp.value["name"].as_str().unwrap().ends_with(" (2)"));
    }
    assert_references_resolve(&s);
    assert_eq!(c[3], first[3], "the identical golden image is reused");
}

#[test]
fn bad_bundles_are_refused_and_store_nothing() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let before = (counts(&s), s.volumes().len());
    let tampered = rewrite(&dev, false, |n, b| {
        if n.starts_with("f244c12d") {
            let mut b = b;
            b[10] ^= 1;
            b
        } else {
            b
        }
    });
    let mut evil = entries(&dev);
    evil.push(("../evil".into(), b"x".to_vec()));
    let evil = rewrite(&make_zip(&evil), true, |_, b| b);
    let truncated = dev[..dev.len() / 2].to_vec();
    for (what, bytes, needle) in [
        (
            "bad checksum",
            tampered,
            "f244c12d-a830-4432-92b6-6e1d5d46abca_planscript.json",
        ),
        ("zip slip", evil, "../evil"),
        ("truncated", truncated, "zip"),
    ] {
        let r = api.upload("/rest/artifact-bundles", "b.zip", bytes, &[]);
        assert_eq!(r.status(), 400, "{what}");
        let body: Value = r.json().unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
        assert_eq!((counts(&s), s.volumes().len()), before, "{what}");
        assert_eq!(s.temp_files(), 0, "{what}");
    }
    // A bundle that verifies but references a build plan nowhere to be found: the extract
    // fails after importing the golden image, and everything is rolled back.
    let dangling = rewrite(&dev, true, |n, b| {
        if n.ends_with("_deploymentplan.json") {
            let mut v: Value = serde_json::from_slice(&b).unwrap();
            v["oeBuildPlanURI"] = json!("No Such Build Plan");
            return serde_json::to_vec(&v).unwrap();
        }
        b
    });
    let uri = upload_bundle(&api, "dangling.zip", dangling);
    let t = extract(&api, &uri);
    assert_eq!(t["taskState"], "Error");
    assert!(
        t["taskErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("No Such Build Plan"),
        "{t}"
    );
    let after = counts(&s);
    assert_eq!(after[..4], before.0[..4], "no artifact left");
    assert_eq!(s.volumes().len(), 0, "no golden image volume left");
    assert_eq!(s.temp_files(), 0);
}

#[test]
fn created_bundle_round_trips_into_a_fresh_server() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    let a = TestServer::start_with_storage();
    let api = a.login(800);
    let uri = upload_bundle(&api, DEV_2017, dev);
    assert_eq!(extract(&api, &uri)["taskState"], "Completed");
    let dp = a
        .state
        .services
        .meta
        .list(Kind::DeploymentPlan)
        .unwrap()
        .into_iter()
        .find(|d| d.value["name"] == "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24")
        .unwrap();
    let r = api.post(
        "/rest/artifact-bundles",
        &json!({"name": "round trip", "description": "d",
                "deploymentPlans": [{"resourceUri": format!("/rest/deployment-plans/{}", dp.id), "readOnly": "false"}]}),
    );
    let t = api.wait_task(r);
    assert_eq!(t["taskState"], "Completed", "{t}");
    let b = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    assert_eq!(
        b["deploymentPlans"][0]["deploymentplanName"],
        dp.value["name"]
    );
    let zip = api
        .get(b["downloadURI"].as_str().unwrap())
        .bytes()
        .unwrap()
        .to_vec();
    let files: BTreeMap<String, Vec<u8>> = entries(&zip).into_iter().collect();
    assert!(files.contains_key("MANIFEST.MF"));
    let sums = String::from_utf8(files["SHA256SUM.sha256sum"].clone()).unwrap();
    for line in sums.lines() {
        let (n, h) = line.split_once('\t').unwrap();
        assert_eq!(sha256(&files[n]), h, "{n}");
    }
    assert_eq!(sums.lines().count(), files.len() - 1);
    let kinds = |suffix: &str| files.keys().filter(|k| k.ends_with(suffix)).count();
    assert_eq!(kinds("_deploymentplan.json"), 1);
    assert_eq!(kinds("_buildplan.json"), 1);
    assert_eq!(kinds("_goldenimage.json"), 1);
    assert_eq!(kinds("_planscript.json"), 1);
    let gi_name = "HPE - Developer 1.0 - UEFI Test Image - 2017-03-24";
    let (member, raw) = inner_image(&files[gi_name]);
    let gi_a = a
        .state
        .services
        .meta
        .list(Kind::GoldenImage)
        .unwrap()
        .remove(0);
    assert_eq!(member, gi_a.id);
    assert_eq!(
        format!("sha256:{}", sha256(&raw)),
        gi_a.value["checkSum"].as_str().unwrap()
    );

    let b_srv = TestServer::start_with_storage();
    let api_b = b_srv.login(800);
    let uri = upload_bundle(&api_b, "round trip.zip", zip);
    assert_eq!(extract(&api_b, &uri)["taskState"], "Completed");
    assert_eq!(counts(&b_srv)[..4], [1, 1, 1, 1]);
    assert_references_resolve(&b_srv);
    let m_a = &a.state.services.meta;
    let m_b = &b_srv.state.services.meta;
    let dp_b = m_b.list(Kind::DeploymentPlan).unwrap().remove(0);
    assert_eq!(dp_b.value["name"], dp.value["name"]);
    assert_eq!(dp_b.value["customAttributes"], dp.value["customAttributes"]);
    let bp_of = |m: &std::sync::Arc<dyn deployd::meta::MetaStore>, uri: &Value| {
        m.get(
            Kind::BuildPlan,
            uri.as_str().unwrap().rsplit('/').next().unwrap(),
        )
        .unwrap()
        .unwrap()
    };
    let (bp_a, bp_b) = (
        bp_of(m_a, &dp.value["oeBuildPlanURI"]),
        bp_of(m_b, &dp_b.value["oeBuildPlanURI"]),
    );
    assert_eq!(bp_a.value["name"], bp_b.value["name"]);
    assert_eq!(
        bp_a.value["customAttributes"],
        bp_b.value["customAttributes"]
    );
    assert_eq!(bp_a.value["buildStep"], bp_b.value["buildStep"]);
    let ps_b = m_b.list(Kind::PlanScript).unwrap().remove(0);
    let ps_a = m_a.get(Kind::PlanScript, &ps_b.id).unwrap().unwrap();
    assert_eq!(ps_a.value["content"], ps_b.value["content"]);
    let gi_b = m_b.list(Kind::GoldenImage).unwrap().remove(0);
    assert_eq!(gi_b.value["checkSum"], gi_a.value["checkSum"]);
    assert_eq!(gi_b.value["name"], gi_a.value["name"]);
}

#[test]
fn golden_image_upload_download_update_and_delete() {
    let Some(dev) = corpus_file(DEV_2017) else {
        return;
    };
    let gi_zip = entries(&dev)
        .into_iter()
        .find(|(n, _)| n == "HPE - Developer 1.0 - UEFI Test Image - 2017-03-24")
        .unwrap()
        .1;
    let (_, raw) = inner_image(&gi_zip);
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    // Python style: name and description in the query.
    let r = api.upload(
        "/rest/golden-images?name=GI%20one&description=Description%20of%20it",
        "image.zip",
        gi_zip,
        &[],
    );
    let t = api.wait_task(r);
    assert_eq!(t["taskState"], "Completed", "{t}");
    let uri = t["associatedResource"]["resourceUri"]
        .as_str()
        .unwrap()
        .to_string();
    let gi = api.get_json(&uri);
    assert_eq!(gi["name"], "GI one");
    assert_eq!(gi["description"], "Description of it");
    assert_eq!(gi["imageCapture"], false);
    assert_eq!(gi["checkSum"], format!("sha256:{}", sha256(&raw)).as_str());
    assert_eq!(gi["size"], raw.len() as u64);
    let id = gi["id"].as_str().unwrap().to_string();
    let dl = api.get(&format!("/rest/golden-images/download/{id}"));
    assert_eq!(dl.status(), 200);
    let (member, bytes) = inner_image(&dl.bytes().unwrap());
    assert_eq!(member, id);
    assert_eq!(
        sha256(&bytes),
        sha256(&raw),
        "download gives the same bytes"
    );
    let log = api
        .get(&format!("/rest/golden-images/archive/{id}"))
        .text()
        .unwrap();
    assert!(
        log.contains("imported from uploaded file \"image.zip\""),
        "{log}"
    );

    // Ruby style: form fields; a gzip of the raw image is accepted too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let r = api.upload(
        "/rest/golden-images",
        "image.gz",
        gz.finish().unwrap(),
        &[("name", "GI two"), ("description", "gzip")],
    );
    let t = api.wait_task(r);
    assert_eq!(t["taskState"], "Completed", "{t}");
    let two = api.get_json(t["associatedResource"]["resourceUri"].as_str().unwrap());
    assert_eq!(two["checkSum"], gi["checkSum"]);
    // Duplicate names are refused before anything is stored.
    let r = api.upload(
        "/rest/golden-images?name=GI%20two",
        "x.raw",
        vec![1; 4096],
        &[],
    );
    assert_eq!(r.status(), 409);

    // PUT renames.
    let r = api.put(&uri, &json!({"name": "GI renamed", "description": "new"}));
    assert_eq!(api.wait_task(r)["taskState"], "Completed");
    assert_eq!(api.get_json(&uri)["name"], "GI renamed");

    // Delete is refused while a deployment plan references it.
    s.state
        .services
        .meta
        .apply(vec![Op::Put {
            kind: Kind::DeploymentPlan,
            id: "dp1".into(),
            value: json!({"name": "uses it", "oeBuildPlanURI": "/rest/build-plans/x", "goldenImageURI": uri}),
            expect: Expect::Absent,
        }])
        .unwrap();
    let r = api.delete(&uri);
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("uses it"));
    assert_eq!(s.volumes().len(), 2);
    s.state
        .services
        .meta
        .apply(vec![Op::Delete {
            kind: Kind::DeploymentPlan,
            id: "dp1".into(),
            expect: Expect::Present,
        }])
        .unwrap();
    let t = api.wait_task(api.delete(&uri));
    assert_eq!(t["name"], "Delete");
    assert_eq!(t["taskState"], "Completed");
    assert_eq!(api.get(&uri).status(), 404);
    assert_eq!(s.volumes().len(), 1, "its volume is gone");
}

#[test]
fn cut_uploads_and_bad_images_leave_nothing() {
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    body.extend_from_slice(&vec![7u8; 300_000]);
    // No closing boundary: the upload was cut.
    for path in ["/rest/golden-images?name=cut", "/rest/artifact-bundles"] {
        let r = api
            .req(reqwest::Method::POST, path)
            .header("Content-Type", "multipart/form-data; boundary=XyZ")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let msg: Value = r.json().unwrap();
        assert!(
            msg["message"].as_str().unwrap().contains("incomplete"),
            "{msg}"
        );
    }
    // A .zip that is not a zip, and a zip with two members.
    let two = make_zip(&[("a".into(), vec![1; 10]), ("b".into(), vec![2; 10])]);
    for (name, bytes) in [("x.zip", vec![0u8; 8192]), ("y.zip", two)] {
        let r = api.upload("/rest/golden-images?name=bad", name, bytes, &[]);
        assert_eq!(r.status(), 400, "{name}");
    }
    assert_eq!(counts(&s), [0; 5]);
    assert!(s.volumes().is_empty());
    assert_eq!(s.temp_files(), 0);
    assert_eq!(api.get_json("/rest/tasks")["total"], 0);
}

#[test]
fn os_volumes_are_listed_from_records_and_storaged() {
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let socket = s.state.config.storaged_socket.clone();
    let vol = s.block_on(async move {
        storaged::control::client::StorageClient::connect(&socket)
            .await
            .unwrap()
            .create("osvol-1", 8 << 20)
            .await
            .unwrap()
    });
    let id = deployd::domain::os_volumes::create_record(
        &s.state.services,
        &deployd::domain::os_volumes::NewOsVolume {
            name: "OSVolume-5".into(),
            description: String::new(),
            storage_volume: vol.record.id.clone(),
            deployment_plan_uri: Some("/rest/deployment-plans/x".into()),
            golden_image_uri: None,
            server_profile_uri: None,
            deploying: None,
        },
    )
    .unwrap();
    let list = api.get_json("/rest/os-volumes");
    assert_eq!(list["total"], 1);
    let v = &list["members"][0];
    assert_eq!(v["type"], "OeVolume");
    assert_eq!(v["name"], "OSVolume-5");
    assert_eq!(v["size"], 8 << 20);
    assert_eq!(v["state"], "writable");
    assert_eq!(v["oeVolumeId"], vol.record.id.as_str());
    let storage = api.get_json(&format!("/rest/os-volumes/{id}/storage"));
    assert_eq!(storage["volumeName"], "osvol-1");
    assert_eq!(storage["allocatedBytes"], 0);
    for key in [id.as_str(), "OSVolume-5"] {
        let r = api.get(&format!("/rest/os-volumes/archive/{key}"));
        assert_eq!(r.status(), 200);
        assert!(r.text().unwrap().contains("/rest/deployment-plans/x"));
    }
    assert_eq!(api.get("/rest/os-volumes/archive/nope").status(), 404);
    // No server profile uses it: it can be deleted, content and all.
    let r = api.delete(&format!("/rest/os-volumes/{id}"));
    assert_eq!(r.status(), 202);
    assert_eq!(api.get_json("/rest/os-volumes")["total"], 0);
    assert!(s.volumes().iter().all(|v| v.record.name != "osvol-1"));
}

#[test]
fn capture_requests_are_validated() {
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let r = api.post(
        "/rest/golden-images",
        &json!({"name": "c", "imageCapture": "true"}),
    );
    assert_eq!(r.status(), 400);
    let m = r.text().unwrap();
    assert!(
        m.contains("osVolumeURI is missing") && m.contains("buildPlanUri is missing"),
        "{m}"
    );
    let put = |kind, id: &str, v: Value| {
        s.state
            .services
            .meta
            .apply(vec![Op::Put {
                kind,
                id: id.into(),
                value: v,
                expect: Expect::Absent,
            }])
            .unwrap();
    };
    put(
        Kind::OsVolume,
        "v1",
        json!({"name": "OSVolume-1", "storageVolume": "x"}),
    );
    put(
        Kind::BuildPlan,
        "deploy1",
        json!({"name": "d", "oeBuildPlanType": "deploy", "buildStep": []}),
    );
    put(
        Kind::BuildPlan,
        "cap1",
        json!({"name": "c", "oeBuildPlanType": "capture", "buildStep": []}),
    );
    let body = |bp: &str| json!({"name": "c", "imageCapture": true, "osVolumeURI": "/rest/os-volumes/v1", "buildPlanUri": format!("/rest/build-plans/{bp}")});
    let r = api.post("/rest/golden-images", &body("deploy1"));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not a capture plan"));
    let r = api.post("/rest/golden-images", &body("missing"));
    assert!(
        r.text()
            .unwrap()
            .contains("/rest/build-plans/missing does not exist")
    );
    // Validated; the capture task fails because the OS volume has no content in storaged.
    let t = api.wait_task(api.post("/rest/golden-images", &body("cap1")));
    assert_eq!(t["taskState"], "Error", "{t}");
    assert_eq!(count(&s, Kind::GoldenImage), 0);
}

#[test]
fn backup_keeps_one_bundle_of_everything_and_restores() {
    let Some(found) = corpus_file(FOUNDATION) else {
        return;
    };
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let uri = upload_bundle(&api, FOUNDATION, found);
    assert_eq!(extract(&api, &uri)["taskState"], "Completed");
    let before = counts(&s);
    for _ in 0..2 {
        let r = api.post(
            "/rest/artifact-bundles/backups",
            &json!({"deploymentGroupURI": "/rest/deployment-groups/g"}),
        );
        assert_eq!(api.wait_task(r)["taskState"], "Completed");
    }
    let list = api.get_json("/rest/artifact-bundles/backups");
    assert_eq!(list["total"], 1, "only one backup is kept");
    let b = &list["members"][0];
    assert_eq!(
        b["artifactsCount"],
        (before[0] + before[1] + before[2] + before[3]) as u64
    );
    assert_eq!(
        api.get_json("/rest/artifact-bundles")["total"],
        1,
        "backups are not bundles"
    );
    let zip = api.get(b["downloadURI"].as_str().unwrap()).bytes().unwrap();
    assert!(
        entries(&zip)
            .iter()
            .any(|(n, _)| n == "SHA256SUM.sha256sum")
    );
    let r = api
        .req(reqwest::Method::PUT, b["uri"].as_str().unwrap())
        .json(&json!({"deploymentGroupURI": "/rest/deployment-groups/g"}))
        .send()
        .unwrap();
    let t = api.wait_task(r);
    assert_eq!(t["taskState"], "Completed", "{t}");
    assert_eq!(
        counts(&s)[..4],
        before[..4],
        "restoring onto the same artifacts reuses them"
    );
    let t = api.wait_task(api.delete(&uri));
    assert_eq!(t["name"], "Delete");
    assert_eq!(api.get(&uri).status(), 404);
}
