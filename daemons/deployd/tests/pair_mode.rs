//! deployd as a node of a pair: the metadata store is etcd (a real one, Debian's), the role
//! comes from clusterd's control interface (served here by a stand-in whose answers the test
//! sets, as clusterd's election would). Checks who takes changes, what a standby answers,
//! the takeover, and that a node that still believes it is active cannot land a write once
//! the other node has won (etcd refuses it: the election key's create-revision changed).
//! Needs etcd (Debian's etcd-server); skips with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterd::alerts::{Alert, Alerts, Condition};
use clusterd::control::{self, View};
use clusterd::status::{ELECTION_KEY, Fence, NodeInfo, Role, Status, monotonic_ns};
use common::TestServer;
use parking_lot::Mutex;
use serde_json::{Value, json};

struct Stand {
    status: Mutex<Status>,
    alerts: Mutex<Alerts>,
}

impl View for Stand {
    fn status(&self) -> Status {
        self.status.lock().clone()
    }
    fn nodes(&self) -> Vec<NodeInfo> {
        ["node-a", "node-b"]
            .iter()
            .map(|n| NodeInfo {
                name: (*n).into(),
                kind: "node".into(),
                address: "10.0.0.1".parse().unwrap(),
                role: if *n == "node-a" { "Active" } else { "Standby" }.into(),
                health: "OK".into(),
                version: Some("0.1.0".into()),
                last_heartbeat: Some("2026-12-05T10:00:00Z".into()),
                store_reachable: true,
            })
            .collect()
    }
    fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().list()
    }
}

fn status(me: &str, endpoint: &str) -> Status {
    Status {
        me: me.into(),
        role: Role::Standby,
        active: None,
        active_address: None,
        fence: None,
        active_until_ns: None,
        active_since_ns: None,
        store_endpoint: Some(endpoint.into()),
        store_tls: None,
        storage_address: None,
    }
}

fn make_active(st: &mut Status, revision: i64) {
    st.role = Role::Active;
    st.active = Some(st.me.clone());
    st.active_address = Some(
        if st.me == "node-a" {
            "10.0.0.1"
        } else {
            "10.0.0.2"
        }
        .parse()
        .unwrap(),
    );
    st.fence = Some(Fence {
        key: ELECTION_KEY.into(),
        create_revision: revision,
    });
    st.active_since_ns = Some(monotonic_ns());
    st.active_until_ns = Some(monotonic_ns() + 3_600_000_000_000);
}

fn make_standby(st: &mut Status, active: &str) {
    st.role = Role::Standby;
    st.active = Some(active.into());
    st.active_address = Some(
        if active == "node-a" {
            "10.0.0.1"
        } else {
            "10.0.0.2"
        }
        .parse()
        .unwrap(),
    );
    st.fence = None;
    st.active_since_ns = None;
    st.active_until_ns = None;
}

/// (Re)creates the election key as a new winner would; returns its create-revision.
fn win(rt: &tokio::runtime::Runtime, endpoint: &str, who: &str) -> i64 {
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        c.delete(ELECTION_KEY, None).await.unwrap();
        let r = c.put(ELECTION_KEY, who, None).await.unwrap();
        r.header().unwrap().revision()
    })
}

fn plan_script(name: &str) -> Value {
    json!({"name": name, "type": "PlanScript", "planType": "deploy", "content": "echo hi\n", "description": ""})
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 10 s");
}

#[test]
fn only_the_active_node_takes_changes_and_a_deposed_one_cannot_land_any() {
    let etcd = match etcd_member::Scratch::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let endpoint = etcd.endpoint();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let stands: Vec<(PathBuf, Arc<Stand>)> = ["node-a", "node-b"]
        .iter()
        .map(|me| {
            let sock = sockets.path().join(format!("{me}.sock"));
            let stand = Arc::new(Stand {
                status: Mutex::new(status(me, &endpoint)),
                alerts: Mutex::new(Alerts::default()),
            });
            let (s, v) = (sock.clone(), Arc::clone(&stand) as Arc<dyn View>);
            rt.spawn(async move { control::serve(&s, v).await });
            (sock, stand)
        })
        .collect();
    for (sock, _) in &stands {
        wait_until("the stand-in clusterd", || sock.exists());
    }
    let (a_sock, a) = &stands[0];
    let (b_sock, b) = &stands[1];
    let first = win(&rt, &endpoint, "node-a");
    make_active(&mut a.status.lock(), first);
    make_standby(&mut b.status.lock(), "node-a");

    // node-a was a single appliance with an artifact before it was paired.
    let single = TestServer::start_with_storage();
    let r = single
        .login(1000)
        .post("/rest/plan-scripts", &plan_script("from-single"));
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let a_dir = single.stop();
    let node_a =
        TestServer::start_in_configured(a_dir, |c| c.clusterd_socket = Some(a_sock.clone()));
    // The pair shares the key that seals secrets (pairing copies it).
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        node_a.state_dir.path().join("secrets.key"),
        b_dir.path().join("secrets.key"),
    )
    .unwrap();
    let node_b =
        TestServer::start_in_configured(b_dir, |c| c.clusterd_socket = Some(b_sock.clone()));
    let api_a = node_a.login(1000);
    let api_b = node_b.login(1000);

    // The active brought its records from before the pairing; both nodes see them.
    let brought = api_b.get_json("/rest/plan-scripts?filter=name='from-single'");
    assert_eq!(brought["count"], 1, "{brought}");

    // The active takes a change; the standby reads it and refuses its own.
    let r = api_a.post("/rest/plan-scripts", &plan_script("first"));
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let listed = api_b.get_json("/rest/plan-scripts?filter=name='first'");
    assert_eq!(listed["count"], 1, "{listed}");
    let r = api_b.post("/rest/plan-scripts", &plan_script("on-standby"));
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert_eq!(body["errorCode"], "NOT_ACTIVE", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("node-a (10.0.0.1)"),
        "{body}"
    );
    assert!(
        !body["recommendedActions"][0].as_str().unwrap().is_empty(),
        "{body}"
    );

    // Takeover: node-b wins; node-a learns it stood down.
    let second = win(&rt, &endpoint, "node-b");
    make_active(&mut b.status.lock(), second);
    make_standby(&mut a.status.lock(), "node-b");
    wait_until("node-b to take changes", || {
        api_b
            .post("/rest/plan-scripts", &plan_script("on-b"))
            .status()
            .is_success()
    });
    let r = api_a.post("/rest/plan-scripts", &plan_script("on-old-active"));
    assert_eq!(r.status(), 503);

    // The session opened on the old active is valid on the new one; a logout there ends it
    // on both.
    let a_on_b = common::Api {
        http: api_b.http.clone(),
        base: node_b.base.clone(),
        token: api_a.token.clone(),
        version: 1000,
    };
    assert_eq!(a_on_b.get("/rest/plan-scripts").status(), 200);
    let r = a_on_b.post("/rest/plan-scripts", &plan_script("by-a-session-on-b"));
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    assert_eq!(a_on_b.delete("/rest/login-sessions").status(), 204);
    assert_eq!(a_on_b.get("/rest/plan-scripts").status(), 401);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        api_a.get("/rest/plan-scripts").status(),
        401,
        "logged out on the other node"
    );
    let api_a = node_a.login(1000);

    // A node that still believes it is active (it was frozen, and resumed before it heard
    // otherwise) sends its write with the old fence: etcd refuses it, nothing lands.
    make_active(&mut a.status.lock(), first);
    std::thread::sleep(Duration::from_millis(400));
    let before = api_b.get_json("/rest/plan-scripts")["total"].clone();
    let r = api_a.post("/rest/plan-scripts", &plan_script("late-write"));
    assert_eq!(r.status(), 503, "a deposed node's write was taken");
    let body: Value = r.json().unwrap();
    assert_eq!(body["errorCode"], "NOT_ACTIVE", "{body}");
    assert_eq!(api_b.get_json("/rest/plan-scripts")["total"], before);
    assert_eq!(
        api_b.get_json("/rest/plan-scripts?filter=name='late-write'")["count"],
        0
    );

    // A hold that lapsed (its lease not renewed in time) stops writes without etcd's word.
    {
        let mut st = b.status.lock();
        st.active_until_ns = Some(monotonic_ns());
    }
    std::thread::sleep(Duration::from_millis(400));
    let r = api_b.post("/rest/plan-scripts", &plan_script("lapsed"));
    assert_eq!(r.status(), 503);

    // The pair's members and alerts, in OneView's shapes.
    b.alerts.lock().update(&[
        Condition::NodeUnavailable("node-a".into()),
        Condition::NotHighlyAvailable,
    ]);
    let nodes = api_b.get_json("/rest/appliance/nodes");
    assert_eq!(nodes["count"], 2, "{nodes}");
    assert_eq!(nodes["members"][0]["name"], "node-a");
    assert!(nodes["members"][0]["lastHeartbeat"].is_string());
    let alerts = api_b.get_json("/rest/alerts");
    assert_eq!(alerts["count"], 2, "{alerts}");
    let unavailable = alerts["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alertTypeId"] == "Cluster.NodeUnavailable")
        .unwrap();
    assert_eq!(unavailable["severity"], "Critical");
    assert_eq!(unavailable["alertState"], "Active");
    assert!(
        unavailable["correctiveAction"]
            .as_str()
            .unwrap()
            .contains("node-a")
    );
    let id = unavailable["id"].as_str().unwrap();
    assert_eq!(api_b.get_json(&format!("/rest/alerts/{id}"))["id"], id);
    b.alerts.lock().update(&[]);
    let alerts = api_b.get_json("/rest/alerts?filter=alertState='Active'");
    assert_eq!(alerts["count"], 0, "{alerts}");
    drop(etcd);
}
