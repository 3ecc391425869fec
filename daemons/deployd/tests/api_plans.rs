//! Build plans, deployment plans and deployment groups through the real HTTPS API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Api, TestServer};
use deployd::meta::{Expect, Kind, MetaStore, Op, RedbStore};
use reqwest::Method;
use serde_json::{Value, json};

const DEPLOY_SCRIPT: &str = "mount /dev/sda1 /\necho @Hostname:web01@ @Nic.ipaddress@ @Nic.mac@\n\
                             echo @_Initiator1.ip@ @Count:3@\n";

fn plan_script(api: &Api, name: &str, plan_type: &str, content: &str) -> String {
    let r = api.post(
        "/rest/plan-scripts",
        &json!({"name": name, "planType": plan_type, "content": content}),
    );
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string()
}

fn created(r: reqwest::blocking::Response) -> Value {
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// A 4xx with its error body.
fn refused(r: reqwest::blocking::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    let e: Value = r.json().unwrap();
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    e
}

/// Stops the server, lets `f` write to its metadata store, and starts it again.
fn with_meta(s: TestServer, f: impl FnOnce(&RedbStore)) -> TestServer {
    let dir = s.stop();
    {
        let store = RedbStore::open(&dir.path().join("meta.redb")).unwrap();
        f(&store);
    }
    TestServer::start_in(dir)
}

fn put_record(store: &RedbStore, kind: Kind, id: &str, value: Value) {
    store
        .apply(vec![Op::Put {
            kind,
            id: id.into(),
            value,
            expect: Expect::Absent,
        }])
        .unwrap();
}

#[test]
fn build_plan_crud_at_api_300_and_800() {
    let s = TestServer::start();
    for (version, type_name) in [(300, "OeBuildPlan"), (800, "OeBuildPlanV5")] {
        let api = s.login(version);
        let deploy = plan_script(&api, &format!("deploy {version}"), "deploy", DEPLOY_SCRIPT);
        let mount = plan_script(&api, &format!("mount {version}"), "general", "echo @Extra@");
        // Steps out of order, serial numbers as a number and as a string; the other type
        // string on input is accepted.
        let other_type = if version == 300 {
            "OeBuildPlanV5"
        } else {
            "OeBuildPlan"
        };
        let bp = created(api.post(
            "/rest/build-plans",
            &json!({"name": format!("bp {version}"), "type": other_type,
                    "oeBuildPlanType": "Deploy", "hpProvided": "false",
                    "buildStep": [
                        {"serialNumber": "2", "planScriptUri": deploy, "parameters": "1"},
                        {"serialNumber": 1, "planScriptUri": mount, "parameters": null}]}),
        ));
        assert_eq!(bp["type"], type_name);
        assert_eq!(bp["category"], "oe-build-plans");
        assert_eq!(bp["oeBuildPlanType"], "deploy");
        assert_eq!(bp["buildPlanid"], bp["id"]);
        let steps = bp["buildStep"].as_array().unwrap();
        assert_eq!(steps[0]["serialNumber"], "1");
        assert_eq!(steps[0]["planScriptUri"], mount.as_str());
        assert_eq!(steps[0]["planScriptName"], format!("mount {version}"));
        assert!(steps[0]["parameters"].is_null());
        assert_eq!(steps[1]["serialNumber"], "2");
        assert_eq!(steps[1]["planScriptName"], format!("deploy {version}"));
        assert_eq!(steps[1]["parameters"], "1");
        // Attributes derived from the scripts, in step order; the system attribute skipped.
        let attrs = bp["customAttributes"].as_array().unwrap();
        let names: Vec<&str> = attrs.iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Extra", "Hostname", "Nic", "Count"]);
        assert_eq!(attrs[1]["value"], "web01");
        assert_eq!(attrs[1]["type"], "string");
        assert_eq!(attrs[2]["type"], "nic");
        assert!(attrs[2]["value"].is_null());
        let nic: Value = serde_json::from_str(attrs[2]["constraints"].as_str().unwrap()).unwrap();
        assert_eq!(nic["parameters"], json!(["ipaddress", "mac"]));

        let uri = bp["uri"].as_str().unwrap().to_string();
        assert_eq!(api.get_json(&uri)["type"], type_name);
        let list = api.get_json("/rest/build-plans");
        assert_eq!(list["category"], "oe-build-plans");
        assert!(
            list["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["uri"] == uri.as_str())
        );

        // Update: stale eTag 412; current eTag a completed task, attributes as sent.
        let mut changed = bp.clone();
        changed["description"] = json!("changed");
        changed["customAttributes"] = json!([{"name": "Count", "type": "Number", "value": "4",
            "constraints": "{\"minimum\":\"1\",\"maximum\":\"4\"}"}]);
        let stale = api
            .req(Method::PUT, &uri)
            .header("If-Match", "\"1\"")
            .json(&changed)
            .send()
            .unwrap();
        assert_eq!(refused(stale, 412)["errorCode"], "ETAG_MISMATCH");
        let ok = api
            .req(Method::PUT, &uri)
            .header("If-Match", bp["eTag"].as_str().unwrap())
            .json(&changed)
            .send()
            .unwrap();
        let task = api.wait_task(ok);
        assert_eq!(task["taskState"], "Completed");
        assert_eq!(task["associatedResource"]["resourceUri"], uri.as_str());
        let now = api.get_json(&uri);
        assert_eq!(now["description"], "changed");
        assert_eq!(
            now["customAttributes"],
            json!([{"name": "Count", "type": "number",
            "value": "4", "description": "", "constraints": "{\"minimum\":\"1\",\"maximum\":\"4\"}"}])
        );
        assert_ne!(now["eTag"], bp["eTag"]);

        assert_eq!(api.delete(&uri).status(), 204);
        assert_eq!(api.get(&uri).status(), 404);
    }
}

#[test]
fn build_plan_references_and_steps_are_checked() {
    let s = TestServer::start();
    let api = s.login(800);
    let script = plan_script(&api, "capture", "capture", "echo capture");
    let cases = [
        (
            json!([{"serialNumber": "1", "planScriptUri": script},
                   {"serialNumber": "2", "planScriptUri": "/rest/plan-scripts/nope"}]),
            vec!["step 2", "/rest/plan-scripts/nope"],
        ),
        (
            json!([{"serialNumber": "1", "planScriptUri": "HPE - ESXi - mount"}]),
            vec!["step 1", "HPE - ESXi - mount"],
        ),
        (
            json!([{"serialNumber": "1", "planScriptUri": script},
                   {"serialNumber": 1, "planScriptUri": script}]),
            vec!["serialNumber 1 is used by more than one step"],
        ),
    ];
    for (steps, wants) in cases {
        let e = refused(
            api.post(
                "/rest/build-plans",
                &json!({"name": "bp", "oeBuildPlanType": "capture", "buildStep": steps}),
            ),
            400,
        );
        assert_eq!(e["errorCode"], "INVALID_BUILD_STEP");
        for want in wants {
            assert!(e["message"].as_str().unwrap().contains(want), "{want}: {e}");
        }
    }
    let e = refused(
        api.post(
            "/rest/build-plans",
            &json!({"name": "bp", "oeBuildPlanType": "capture",
                    "customAttributes": [{"name": "A", "type": "string", "value": ""}]}),
        ),
        400,
    );
    assert!(e["message"].as_str().unwrap().contains("capture"), "{e}");
    for body in [
        json!({"name": "bp", "oeBuildPlanType": "general"}),
        json!({"name": "bp", "oeBuildPlanType": "deploy", "type": "PlanScript"}),
        json!({"name": "bp", "oeBuildPlanType": "deploy",
               "buildStep": [{"serialNumber": "first", "planScriptUri": script}]}),
    ] {
        refused(api.post("/rest/build-plans", &body), 400);
    }
    // A capture plan with no steps is valid (HPE Foundation ships one) and has no attributes.
    let bp = created(api.post(
        "/rest/build-plans",
        &json!({"name": "as is", "oeBuildPlanType": "CAPTURE", "buildStep": null}),
    ));
    assert_eq!(bp["customAttributes"], json!([]));
    assert_eq!(bp["buildStep"], json!([]));
    assert_eq!(api.get_json("/rest/build-plans")["total"], 1);
}

#[test]
fn attribute_errors_name_every_bad_attribute_at_once() {
    let s = TestServer::start();
    let api = s.login(800);
    let r = api.post(
        "/rest/build-plans",
        &json!({"name": "bp", "oeBuildPlanType": "deploy", "customAttributes": [
            {"name": "GoodString", "type": "String", "value": "Example123",
             "constraints": "{\"regex\":\"[A-Z][a-z]*[0-9]*\",\"helpText\":\"\"}"},
            {"name": "BadRegexValue", "type": "string", "value": "lower",
             "constraints": "{\"regex\":\"[A-Z][a-z]*\",\"helpText\":\"\"}"},
            {"name": "BrokenRegex", "type": "string", "value": "", "constraints": "{\"regex\":\"(\"}"},
            {"name": "TooBig", "type": "number", "value": "51201",
             "constraints": "{\"minimum\":\"1\",\"maximum\":\"51200\",\"unit\":\"MiB\"}"},
            {"name": "NoSuchOption", "type": "option", "value": "Maybe",
             "constraints": "{\"options\":[\"Enable\",\"Disable\"]}"},
            {"name": "NoOptions", "type": "option", "value": "", "constraints": "{}"},
            {"name": "DottedHost", "type": "hostname", "value": "web.example", "constraints": "{\"helpText\":\"\"}"},
            {"name": "ShortDomain", "type": "fqdn", "value": "localhost", "constraints": "{\"helpText\":\"\"}"},
            {"name": "BadIp", "type": "ipv4", "value": "10.0.0.256", "constraints": "{}"},
            {"name": "LongPassword", "type": "password", "value": "TopSecretValue",
             "constraints": "{\"maxlen\":\"10\"}"},
            {"name": "BadNic", "type": "nic", "value": null, "constraints": "{\"ipv4dhcp\":\"sometimes\"}"},
            {"name": "Unknown", "type": "float", "value": "1"},
            {"name": "GoodNumber", "type": "number", "value": "2", "constraints": "{\"minimum\":\"1\",\"maximum\":\"4\",\"increment\":\"1\"}"},
        ]}),
    );
    let e = refused(r, 400);
    assert_eq!(e["errorCode"], "INVALID_CUSTOM_ATTRIBUTES");
    let m = e["message"].as_str().unwrap();
    for bad in [
        "BadRegexValue:",
        "BrokenRegex:",
        "TooBig:",
        "NoSuchOption:",
        "NoOptions:",
        "DottedHost:",
        "ShortDomain:",
        "BadIp:",
        "LongPassword:",
        "BadNic:",
        "Unknown:",
    ] {
        assert!(m.contains(bad), "{bad} missing from {m}");
    }
    assert!(
        !m.contains("GoodString") && !m.contains("GoodNumber"),
        "{m}"
    );
    assert!(!m.contains("TopSecretValue"), "a password leaked: {m}");
    assert!(m.starts_with("11 custom attribute(s)"), "{m}");
    assert_eq!(api.get_json("/rest/build-plans")["total"], 0);
}

#[test]
fn in_use_artifacts_cannot_be_deleted_and_the_message_names_the_users() {
    let s = TestServer::start();
    let api = s.login(800);
    let script = plan_script(&api, "shared script", "deploy", "echo @Host@");
    let mut bps = Vec::new();
    for name in ["first bp", "second bp"] {
        let bp = created(api.post(
            "/rest/build-plans",
            &json!({"name": name, "oeBuildPlanType": "deploy",
                    "buildStep": [{"serialNumber": "1", "planScriptUri": script}]}),
        ));
        bps.push(bp["uri"].as_str().unwrap().to_string());
    }
    let script_id = script.rsplit('/').next().unwrap();
    let used = api.get_json(&format!("/rest/plan-scripts/{script_id}/usedby/readonly"));
    assert_eq!(used["usedBy"].as_array().unwrap().len(), 2);
    let e = refused(api.delete(&script), 409);
    assert_eq!(e["errorCode"], "RESOURCE_IN_USE");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("first bp") && m.contains("second bp") && m.contains(&bps[0]),
        "{m}"
    );

    let dp = created(api.post(
        "/rest/deployment-plans",
        &json!({"name": "the dp", "oeBuildPlanURI": bps[0], "hpProvided": false}),
    ));
    let dp_uri = dp["uri"].as_str().unwrap();
    let e = refused(api.delete(&bps[0]), 409);
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("the dp") && m.contains(dp_uri), "{m}");
    // Users gone, deletes go through.
    assert_eq!(api.delete(dp_uri).status(), 204);
    for bp in &bps {
        assert_eq!(api.delete(bp).status(), 204);
    }
    assert_eq!(api.delete(&script).status(), 204);
}

#[test]
fn read_only_plans_refuse_changes() {
    let s = TestServer::start();
    let api = s.login(800);
    let bp = created(api.post(
        "/rest/build-plans",
        &json!({"name": "hpe bp", "oeBuildPlanType": "deploy", "hpProvided": true,
                "customAttributes": []}),
    ));
    assert_eq!(bp["readOnly"], true);
    let uri = bp["uri"].as_str().unwrap();
    let mut changed = bp.clone();
    changed["description"] = json!("mine now");
    assert_eq!(
        refused(api.put(uri, &changed), 409)["errorCode"],
        "READ_ONLY"
    );
    let dp = created(api.post(
        "/rest/deployment-plans",
        &json!({"name": "ro dp", "oeBuildPlanURI": uri, "readOnly": "true"}),
    ));
    let dp_uri = dp["uri"].as_str().unwrap();
    let mut changed = dp.clone();
    changed["description"] = json!("mine now");
    assert_eq!(
        refused(api.put(dp_uri, &changed), 409)["errorCode"],
        "READ_ONLY"
    );
    assert_eq!(refused(api.delete(dp_uri), 409)["errorCode"], "READ_ONLY");
    assert_eq!(api.get_json(uri)["description"], "");
}

/// A deploy build plan with one attribute of each kind that matters here.
fn attribute_build_plan(api: &Api) -> String {
    let bp = created(api.post(
        "/rest/build-plans",
        &json!({"name": "attrs", "oeBuildPlanType": "deploy", "customAttributes": [
            {"name": "Hostname", "type": "hostname", "value": "", "constraints": "{\"helpText\":\"\"}",
             "description": "host name"},
            {"name": "RootPassword", "type": "password", "value": "s3cretpw",
             "constraints": "{\"minlen\":\"6\",\"maxlen\":\"20\"}"},
            {"name": "SSH", "type": "option", "value": "Enable",
             "constraints": "{\"options\":[\"Enable\",\"Disable\"]}"},
            {"name": "ManagementNIC", "type": "nic", "value": null,
             "constraints": "{\"ipv4static\":true,\"ipv4dhcp\":true,\"ipv4disable\":false,\"parameters\":[\"ipaddress\",\"mac\"]}"},
        ]}),
    ));
    let text = bp.to_string();
    assert!(
        !text.contains("s3cretpw"),
        "password in a build plan response: {text}"
    );
    assert_eq!(bp["customAttributes"][1]["value"], "****");
    bp["uri"].as_str().unwrap().to_string()
}

#[test]
fn deployment_plan_crud_defaults_masking_and_osdp() {
    let s = TestServer::start();
    for (version, type_name) in [(300, "OEDeploymentPlan"), (800, "OEDeploymentPlanV5")] {
        let api = s.login(version);
        let bp_uri =
            match api.get_json("/rest/build-plans?filter=name='attrs'")["members"][0]["uri"]
                .as_str()
            {
                Some(u) => u.to_string(),
                None => attribute_build_plan(&api),
            };
        // Defaults from the build plan.
        let dp = created(api.post(
            "/rest/deployment-plans",
            &json!({"name": format!("dp {version}"), "description": "", "hpProvided": "false",
                    "oeBuildPlanURI": bp_uri}),
        ));
        assert_eq!(dp["type"], type_name);
        assert_eq!(dp["category"], "oe-deployment-plans");
        assert!(dp["goldenImageURI"].is_null());
        let attrs = dp["customAttributes"].as_array().unwrap();
        assert_eq!(attrs.len(), 4);
        for a in attrs {
            assert!(
                uuid::Uuid::parse_str(a["id"].as_str().unwrap()).is_ok(),
                "{a}"
            );
            assert_eq!(a["visible"], true);
            assert_eq!(a["editable"], true);
        }
        assert_eq!(attrs[0]["description"], "host name");
        assert_eq!(attrs[1]["value"], "****");
        let uri = dp["uri"].as_str().unwrap().to_string();
        let id = dp["id"].as_str().unwrap().to_string();

        // GET-modify-PUT: the echoed mask keeps the password (minlen 6 would refuse "****"
        // itself), overrides apply, unmentioned attributes keep their defaults and ids.
        let mut changed = dp.clone();
        changed["customAttributes"] = json!([
            attrs[1].clone(),
            {"name": "SSH", "value": "Disable", "visible": "false", "editable": false},
        ]);
        let task = api.wait_task(api.put(&uri, &changed));
        assert_eq!(task["taskState"], "Completed");
        let now = api.get_json(&uri);
        let now_attrs = now["customAttributes"].as_array().unwrap();
        assert_eq!(now_attrs[1]["value"], "****");
        assert_eq!(now_attrs[1]["id"], attrs[1]["id"]);
        assert_eq!(now_attrs[2]["value"], "Disable");
        assert_eq!(now_attrs[2]["visible"], false);
        assert_eq!(now_attrs[2]["editable"], false);
        assert_eq!(now_attrs[2]["type"], "option");
        assert_eq!(now_attrs[0]["id"], attrs[0]["id"]);

        // The password is in no response.
        for path in [
            uri.clone(),
            "/rest/deployment-plans".into(),
            format!("{uri}/osdp"),
            bp_uri.clone(),
            "/rest/build-plans".into(),
        ] {
            let text = api.get(&path).text().unwrap();
            assert!(!text.contains("s3cretpw"), "password in {path}: {text}");
        }

        // A new password replaces it; a bad one is refused without being echoed.
        let mut pw = now.clone();
        pw["customAttributes"] = json!([{"name": "RootPassword", "value": "abc"}]);
        let e = refused(api.put(&uri, &pw), 400);
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("RootPassword") && !m.contains("abc"), "{m}");

        // OneView's projection: hidden attributes left out.
        let osdp = api.get_json(&format!("{uri}/osdp"));
        assert_eq!(osdp["type"], "Osdp");
        assert_eq!(osdp["nativePlanUri"], uri.as_str());
        let params = osdp["additionalParameters"].as_array().unwrap();
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Hostname", "RootPassword", "ManagementNIC"]);
        assert_eq!(params[0]["caId"], attrs[0]["id"]);
        assert_eq!(params[0]["caType"], "hostname");
        assert_eq!(params[0]["caEditable"], true);
        assert_eq!(params[0]["caConstraints"], "{\"helpText\":\"\"}");
        assert_eq!(params[1]["value"], "****");

        // Used by nothing yet; delete works.
        assert_eq!(api.get_json(&format!("{uri}/usedby"))["usedBy"], json!([]));
        assert_eq!(
            api.delete(&format!("/rest/deployment-plans/{id}")).status(),
            204
        );
        assert_eq!(api.get(&uri).status(), 404);
    }
}

#[test]
fn deployment_plan_references_and_values_are_checked() {
    let s = TestServer::start();
    let api = s.login(800);
    let bp = attribute_build_plan(&api);
    let capture = created(api.post(
        "/rest/build-plans",
        &json!({"name": "cap", "oeBuildPlanType": "capture"}),
    ));
    let cap_uri = capture["uri"].as_str().unwrap();
    for (body, want) in [
        (
            json!({"name": "d", "oeBuildPlanURI": "/rest/build-plans/missing"}),
            "/rest/build-plans/missing",
        ),
        (json!({"name": "d", "oeBuildPlanURI": "attrs"}), "\"attrs\""),
        (json!({"name": "d", "oeBuildPlanURI": cap_uri}), "capture"),
        (
            json!({"name": "d", "oeBuildPlanURI": bp, "goldenImageURI": "/rest/golden-images/gone"}),
            "/rest/golden-images/gone",
        ),
        (
            json!({"name": "d", "oeBuildPlanURI": bp, "type": "OeBuildPlanV5"}),
            "OeBuildPlanV5",
        ),
    ] {
        let e = refused(api.post("/rest/deployment-plans", &body), 400);
        assert!(e["message"].as_str().unwrap().contains(want), "{want}: {e}");
    }
    let e = refused(
        api.post(
            "/rest/deployment-plans",
            &json!({"name": "d", "oeBuildPlanURI": bp, "customAttributes": [
                {"name": "Hostname", "value": "web.01"},
                {"name": "SSH", "value": "Sometimes"},
                {"name": "NotInPlan", "value": "x", "type": "string"},
                {"name": "ManagementNIC", "value": {"ipaddress": "10.0.0.300", "mac": "16:05:A0:00:00:01"}},
                {"name": "RootPassword", "id": "not-a-uuid", "value": "goodpass"},
            ]}),
        ),
        400,
    );
    let m = e["message"].as_str().unwrap();
    for want in [
        "Hostname:",
        "SSH:",
        "NotInPlan:",
        "ManagementNIC:",
        "RootPassword: id",
    ] {
        assert!(m.contains(want), "{want} missing from {m}");
    }
    assert!(!m.contains("goodpass"), "{m}");
    assert_eq!(api.get_json("/rest/deployment-plans")["total"], 0);
    // A valid NIC value and a given id are kept.
    let id = uuid::Uuid::new_v4().to_string();
    let dp = created(api.post(
        "/rest/deployment-plans",
        &json!({"name": "d", "oeBuildPlanUri": bp, "goldenImageURI": "", "customAttributes": [
            {"name": "ManagementNIC", "id": id, "value": {"ipaddress": "10.0.0.30", "mac": "16:05:A0:00:00:01"}},
        ]}),
    ));
    assert_eq!(dp["customAttributes"][3]["id"], id.as_str());
    assert_eq!(dp["customAttributes"][3]["value"]["ipaddress"], "10.0.0.30");
    assert!(dp["goldenImageURI"].is_null());
}

#[test]
fn golden_images_and_server_profiles_are_linked_through_the_store() {
    let s = TestServer::start();
    let api = s.login(800);
    let bp = attribute_build_plan(&api);
    let dp = created(api.post(
        "/rest/deployment-plans",
        &json!({"name": "used dp", "oeBuildPlanURI": bp}),
    ));
    let dp_uri = dp["uri"].as_str().unwrap().to_string();
    let dp_uri_in = dp_uri.clone();
    let s = with_meta(s, move |store| {
        put_record(
            store,
            Kind::GoldenImage,
            "gi-1",
            json!({"name": "rhel golden"}),
        );
        put_record(
            store,
            Kind::ServerProfile,
            "sp-1",
            json!({"name": "web profile",
                   "osDeploymentSettings": {"osDeploymentPlanUri": dp_uri_in}}),
        );
    });
    let api = s.login(800);
    let used = api.get_json(&format!("{dp_uri}/usedby"));
    assert_eq!(
        used["usedBy"],
        json!([{"category": "server-profiles", "name": "web profile", "uri": "/rest/server-profiles/sp-1"}])
    );
    let e = refused(api.delete(&dp_uri), 409);
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("web profile") && m.contains("/rest/server-profiles/sp-1"),
        "{m}"
    );
    let with_image = created(api.post(
        "/rest/deployment-plans",
        &json!({"name": "with image", "oeBuildPlanURI": bp,
                "goldenImageURI": "/rest/golden-images/gi-1"}),
    ));
    assert_eq!(with_image["goldenImageURI"], "/rest/golden-images/gi-1");
}

#[test]
fn build_plans_page_and_filter_by_type() {
    let s = TestServer::start();
    let api = s.login(300);
    for i in 0..5 {
        let t = if i % 2 == 0 { "capture" } else { "deploy" };
        created(api.post(
            "/rest/build-plans",
            &json!({"name": format!("bp{i}"), "oeBuildPlanType": t, "customAttributes": []}),
        ));
    }
    let captures =
        api.get_json("/rest/build-plans?filter=oeBuildPlanType=capture&sort=name:descending");
    assert_eq!(captures["total"], 3);
    assert_eq!(captures["members"][0]["name"], "bp4");
    assert_eq!(captures["members"][0]["type"], "OeBuildPlan");
    let page = api
        .get_json("/rest/build-plans?filter=%22oeBuildPlanType%3D%27capture%27%22&start=0&count=2");
    assert_eq!(page["count"], 2);
    assert_eq!(page["total"], 3);
    let next = page["nextPageUri"].as_str().unwrap();
    let last = api.get_json(next);
    assert_eq!(last["count"], 1);
    assert!(last["nextPageUri"].is_null());
}

#[test]
fn the_one_deployment_group_is_read_only_and_stable() {
    let s = TestServer::start();
    let api = s.login(800);
    let groups = api.get_json("/rest/deployment-groups");
    assert_eq!(groups["total"], 1);
    assert_eq!(groups["category"], "deployment-groups");
    let g = &groups["members"][0];
    assert_eq!(g["name"], "default");
    let uri = g["uri"].as_str().unwrap().to_string();
    assert_eq!(api.get_json(&uri)["id"], g["id"]);
    assert_eq!(
        api.get_json("/rest/deployment-groups?filter=name='default'")["total"],
        1
    );
    for (method, path) in [
        (Method::POST, "/rest/deployment-groups"),
        (Method::PUT, uri.as_str()),
        (Method::DELETE, uri.as_str()),
    ] {
        let r = api
            .req(method.clone(), path)
            .json(&json!({"name": "x"}))
            .send()
            .unwrap();
        let e = refused(r, 405);
        assert_eq!(e["errorCode"], "METHOD_NOT_ALLOWED", "{method} {path}");
        assert!(e["recommendedActions"].is_array());
    }
    let doc = api.get_json("/rest/openapi.json");
    for path in [
        "/rest/build-plans/{id}",
        "/rest/deployment-plans/{id}/osdp",
        "/rest/deployment-plans/{id}/usedby",
        "/rest/deployment-groups",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }
    let dir = s.stop();
    let s = TestServer::start_in(dir);
    let api = s.login(300);
    let again = api.get_json("/rest/deployment-groups");
    assert_eq!(again["total"], 1);
    assert_eq!(again["members"][0]["uri"], uri.as_str());
}
