//! Transport conventions and plan scripts through the real HTTPS API.

mod common;

use common::TestServer;
use serde_json::{Value, json};

#[test]
fn version_is_public_and_everything_else_needs_a_session() {
    let s = TestServer::start();
    let http = s.anonymous();
    let v: Value = http
        .get(format!("{}/rest/version", s.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["currentVersion"], 2020);
    assert_eq!(v["minimumVersion"], 300);
    for path in ["/rest/plan-scripts", "/rest/tasks", "/rest/openapi.json"] {
        let r = http.get(format!("{}{path}", s.base)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["errorCode"], "AUTHORIZATION");
    }
    let r = http
        .post(format!("{}/rest/login-sessions", s.base))
        .json(&json!({"userName": "Administrator", "password": "wrong"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn api_versions_outside_300_to_2020_get_412() {
    let s = TestServer::start();
    let api = s.login(300);
    for (v, status) in [
        ("299", 412),
        ("2021", 412),
        ("abc", 412),
        ("300", 200),
        ("2020", 200),
    ] {
        let r = api
            .http
            .get(format!("{}/rest/plan-scripts", api.base))
            .header("auth", &api.token)
            .header("X-API-Version", v)
            .send()
            .unwrap();
        assert_eq!(r.status(), status, "version {v}");
    }
}

#[test]
fn plan_script_crud_with_etags_and_derived_attributes() {
    let s = TestServer::start();
    let api = s.login(800);
    let r = api.post(
        "/rest/plan-scripts",
        &json!({"name": "demo", "planType": "Deploy", "hpProvided": "false",
                "content": "echo @Hostname:web01@\necho @Nic.ipaddress@\n"}),
    );
    assert_eq!(r.status(), 201);
    let ps: Value = r.json().unwrap();
    let uri = ps["uri"].as_str().unwrap().to_string();
    assert_eq!(ps["type"], "PlanScript");
    assert_eq!(ps["planType"], "deploy");
    let attrs: Vec<Value> = serde_json::from_str(ps["customAttributes"].as_str().unwrap()).unwrap();
    assert_eq!(attrs[0]["name"], "Hostname");
    assert_eq!(attrs[0]["value"], "web01");
    assert_eq!(attrs[1]["type"], "nic");
    // Duplicate names are refused.
    let dup = api.post(
        "/rest/plan-scripts",
        &json!({"name": "demo", "planType": "general"}),
    );
    assert_eq!(dup.status(), 409);
    // Update with a stale eTag: 412; with the current one: a completed task.
    let mut changed = ps.clone();
    changed["content"] = json!("echo changed");
    let stale = api
        .req(reqwest::Method::PUT, &uri)
        .header("If-Match", "\"1\"")
        .json(&changed)
        .send()
        .unwrap();
    assert_eq!(stale.status(), 412);
    let ok = api
        .req(reqwest::Method::PUT, &uri)
        .header("If-Match", ps["eTag"].as_str().unwrap())
        .json(&changed)
        .send()
        .unwrap();
    let task = api.wait_task(ok);
    assert_eq!(task["taskState"], "Completed");
    assert_eq!(task["type"], "TaskResourceV2");
    assert_eq!(task["associatedResource"]["resourceUri"], uri.as_str());
    assert_eq!(api.get_json(&uri)["content"], "echo changed");
    // Paging: nextPageUri null on the last page.
    for i in 0..4 {
        api.post(
            "/rest/plan-scripts",
            &json!({"name": format!("p{i}"), "planType": "capture"}),
        );
    }
    let page = api.get_json("/rest/plan-scripts?start=0&count=2");
    assert_eq!(page["total"], 5);
    assert!(page["nextPageUri"].is_string());
    let last = api.get_json("/rest/plan-scripts?start=4&count=2");
    assert!(last["nextPageUri"].is_null());
    let filtered = api.get_json("/rest/plan-scripts?filter=%22planType%3D%27capture%27%22");
    assert_eq!(filtered["total"], 4);
    // Delete.
    assert_eq!(api.delete(&uri).status(), 204);
    assert_eq!(api.get(&uri).status(), 404);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let s = TestServer::start();
    let api = s.login(800);
    let cases = [
        ("{not json", "INVALID_JSON"),
        ("{\"name\": 5, \"planType\": \"deploy\"}", "INVALID_JSON"),
        (
            "{\"name\": \"x\", \"planType\": \"sideways\"}",
            "INVALID_JSON",
        ),
        ("{\"name\": \"\", \"planType\": \"deploy\"}", "INVALID_NAME"),
        ("", "EMPTY_BODY"),
    ];
    for (body, code) in cases {
        let r = api
            .req(reqwest::Method::POST, "/rest/plan-scripts")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["errorCode"], code, "{body}: {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let big = "x".repeat(9 << 20);
    let r = api.post(
        "/rest/plan-scripts",
        &json!({"name": "big", "planType": "deploy", "content": big}),
    );
    assert_eq!(r.status(), 413);
    assert_eq!(api.get_json("/rest/plan-scripts")["total"], 0);
}

#[test]
fn changes_survive_a_restart() {
    let s = TestServer::start();
    let api = s.login(300);
    let r = api.post(
        "/rest/plan-scripts",
        &json!({"name": "kept", "planType": "deploy"}),
    );
    assert_eq!(r.status(), 201);
    let dir = s.stop();
    let s = TestServer::start_in(dir);
    let api = s.login(300);
    assert_eq!(
        api.get_json("/rest/plan-scripts?filter=name='kept'")["total"],
        1
    );
}

#[test]
fn read_only_users_can_read_but_not_change() {
    let s = TestServer::start();
    let admin = s.login(800);
    let r = admin.post(
        "/rest/users",
        &json!({"userName": "viewer", "fullName": "V", "password": "viewer-pass", "roles": ["Read only"]}),
    );
    assert_eq!(r.status(), 201);
    let u: Value = r.json().unwrap();
    assert!(
        u.get("password").is_none() && u.get("passwordHash").is_none(),
        "{u}"
    );
    let weak = admin.post(
        "/rest/users",
        &json!({"userName": "w", "password": "short", "roles": ["Read only"]}),
    );
    assert_eq!(weak.status(), 400);
    let viewer = s.login_as("viewer", "viewer-pass", 800);
    assert_eq!(viewer.get("/rest/plan-scripts").status(), 200);
    let denied = viewer.post(
        "/rest/plan-scripts",
        &json!({"name": "x", "planType": "deploy"}),
    );
    assert_eq!(denied.status(), 403);
    assert_eq!(admin.get_json("/rest/plan-scripts")["total"], 0);
    // The last administrator can be neither deleted nor demoted.
    assert_eq!(admin.delete("/rest/users/Administrator").status(), 409);
    let demote = admin.put(
        "/rest/users/Administrator",
        &json!({"roles": ["Read only"]}),
    );
    assert_eq!(demote.status(), 409);
    // Every change is audited with who and the result; the failed one too.
    let audit = std::fs::read_to_string(s.state_dir.path().join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"user\":\"viewer\"") && l.contains("\"status\":403")),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"user\":\"Administrator\"")
                && l.contains("/rest/users")
                && l.contains("\"status\":201"))
    );
    assert!(!audit.contains("viewer-pass"));
    // The API serves it too, newest first, filtered as any collection.
    let listed = viewer.get_json("/rest/audit-logs?filter=user='viewer'");
    let members = listed["members"].as_array().unwrap();
    assert!(!members.is_empty(), "{listed}");
    assert!(members.iter().all(|m| m["user"] == "viewer"), "{listed}");
    assert!(members.iter().any(|m| m["status"] == 403), "{listed}");
    let all = admin.get_json("/rest/audit-logs?count=2");
    assert_eq!(all["members"].as_array().unwrap().len(), 2, "{all}");
}

#[test]
fn appliance_shutdown_needs_an_administrator_a_valid_type_and_an_appliance() {
    let s = TestServer::start();
    let anonymous = s.anonymous();
    let r = anonymous
        .post(format!("{}/rest/appliance/shutdown?type=HALT", s.base))
        .header("X-API-Version", "2020")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let admin = s.login(2020);
    let bad = admin.post("/rest/appliance/shutdown?type=NAP", &json!({}));
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("INVALID_SHUTDOWN_TYPE"));
    // This deployd was started without --power-control-pid: nothing to signal.
    let r = admin.post("/rest/appliance/shutdown?type=REBOOT", &json!({}));
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("NOT_AN_APPLIANCE"));
    admin.post(
        "/rest/users",
        &json!({"userName": "viewer", "password": "viewer-pass", "roles": ["Read only"]}),
    );
    let viewer = s.login_as("viewer", "viewer-pass", 2020);
    let r = viewer.post("/rest/appliance/shutdown?type=HALT", &json!({}));
    assert_eq!(r.status(), 403);
}

#[test]
fn users_change_their_own_password_with_the_current_one() {
    let s = TestServer::start();
    let admin = s.login(800);
    admin.post(
        "/rest/users",
        &json!({"userName": "viewer", "password": "viewer-pass", "roles": ["Read only"]}),
    );
    let viewer = s.login_as("viewer", "viewer-pass", 800);
    let change = |api: &common::Api, user: &str, current: &str, new: &str| {
        let body = json!({"userName": user, "currentPassword": current, "newPassword": new});
        api.put("/rest/users/changePassword", &body)
    };
    // A read-only user may change their own password, not anyone else's.
    let other = change(&viewer, "Administrator", "viewer-pass", "viewer-pass-2");
    assert_eq!(other.status(), 403);
    let wrong = change(&viewer, "viewer", "not-it", "viewer-pass-2");
    assert_eq!(wrong.status(), 400);
    assert!(wrong.text().unwrap().contains("WRONG_PASSWORD"));
    // The session survives a wrong current password; a weak new one is refused.
    assert_eq!(viewer.get("/rest/plan-scripts").status(), 200);
    assert_eq!(
        change(&viewer, "viewer", "viewer-pass", "short").status(),
        400
    );
    assert_eq!(
        change(&viewer, "viewer", "viewer-pass", "viewer-pass-2").status(),
        200
    );
    let login = |password: &str| {
        s.anonymous()
            .post(format!("{}/rest/login-sessions", s.base))
            .json(&json!({"userName": "viewer", "password": password}))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(login("viewer-pass"), 401);
    assert_eq!(login("viewer-pass-2"), 200);
    // Wrong current passwords count towards the login lockout: no way around it.
    for _ in 0..5 {
        assert_eq!(
            change(&viewer, "viewer", "guess", "viewer-pass-3").status(),
            400
        );
    }
    assert_eq!(
        change(&viewer, "viewer", "viewer-pass-2", "viewer-pass-3").status(),
        429
    );
}

#[test]
fn repeated_failed_logins_are_rate_limited() {
    let s = TestServer::start();
    let http = s.anonymous();
    let attempt = |password: &str| {
        http.post(format!("{}/rest/login-sessions", s.base))
            .json(&json!({"userName": "Administrator", "password": password}))
            .send()
            .unwrap()
            .status()
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong"), 401);
    }
    // Now even the right password is refused for a while.
    assert_eq!(attempt(common::PASSWORD), 429);
}

#[test]
fn a_single_appliances_storage_is_not_replicated() {
    let s = TestServer::start_with_storage();
    let api = s.login(800);
    let r = api.get("/rest/appliance/storage");
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["replicated"], false, "{v}");
    assert_eq!(v["redundant"], false, "{v}");
    assert_eq!(v["uri"], "/rest/appliance/storage");
    // Like every call but the version and login, it needs a session.
    let anon = s.anonymous();
    let r = anon
        .get(format!("{}/rest/appliance/storage", s.base))
        .header("X-API-Version", "800")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}
