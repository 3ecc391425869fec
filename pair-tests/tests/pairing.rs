//! Pairing by token, on the host: two single appliances (namespaces A and B) and a witness
//! host (W) on a bridge, real daemons and etcd. A has an artifact; an administrator makes a
//! pairing on A; bad, forged, foreign-certificate, wrong-version and early-witness joins are
//! refused with HPE error bodies and change nothing; B joins with the token (a second use is
//! refused); both restart as pair members with mutual TLS, the witness joins; A's artifact is
//! served on the virtual IP; etcd refuses a client with no certificate or one of another
//! CA; B unpairs and comes back a single appliance with the pair's artifacts, and A raises
//! the alert that it is no longer highly available.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use clusterd::config::{ClusterConfig, MemberRole};
use clusterd::pairing::{self, JoinRequest};
use pair_harness::{API_PORT, Enclosure, PASSWORD, VIP, in_ns};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One API call from the witness host's namespace: (status, body).
fn call(
    enc: &Enclosure,
    method: &str,
    url: String,
    token: Option<String>,
    body: Option<Value>,
) -> (u16, Value) {
    let method: reqwest::Method = method.parse().unwrap();
    in_ns(&enc.client_ns(), move || {
        let mut r = http().request(method, &url).header("X-API-Version", "1000");
        if let Some(t) = token {
            r = r.header("auth", t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    })
}

fn login(enc: &Enclosure, host: &str) -> String {
    let end = Instant::now() + LIMIT;
    loop {
        let url = format!("https://{host}:{API_PORT}/rest/login-sessions");
        let body = json!({"userName": "Administrator", "password": PASSWORD});
        let ns = enc.client_ns();
        let r = in_ns(&ns, move || {
            http()
                .post(&url)
                .header("X-API-Version", "1000")
                .json(&body)
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<Value>().ok())
        });
        if let Some(v) = r {
            return v["sessionID"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < end, "cannot log in at {host}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn api(host: impl std::fmt::Display, path: &str) -> String {
    format!("https://{host}:{API_PORT}{path}")
}

/// A join request straight to A's API, as a member would send it.
fn join_request(token: &str, version: &str, role: MemberRole, last: u8) -> Value {
    let creds = pairing::credentials("node-b").unwrap();
    serde_json::to_value(JoinRequest {
        token: token.into(),
        version: version.into(),
        name: if role == MemberRole::Node {
            "node-b".into()
        } else {
            pairing::WITNESS_NAME.into()
        },
        address: format!("10.77.0.{last}").parse().unwrap(),
        role,
        csr: creds.csr_pem,
        storage_ip: None,
    })
    .unwrap()
}

fn paired(enc: &Enclosure, i: usize) -> bool {
    ClusterConfig::load(&enc.nodes[i].clusterd_dir())
        .unwrap()
        .is_some()
}

/// Whether an etcd client with `tls` (or none) reads the member list at node A's etcd.
fn etcd_answers(enc: &Enclosure, tls: Option<etcd_client::TlsOptions>) -> bool {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://10.77.0.1:2379");
    in_ns(&enc.client_ns(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut opts = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(2));
            if let Some(t) = tls {
                opts = opts.with_tls(t);
            }
            match etcd_client::Client::connect([url], Some(opts)).await {
                Ok(mut c) => c.member_list().await.is_ok(),
                Err(_) => false,
            }
        })
    })
}

#[test]
fn two_appliances_pair_by_token_and_unpair_keeping_every_artifact() {
    if let Some(why) = pair_harness::unusable() {
        eprintln!("skipping: {why}");
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pair-node"));
    let mut enc = Enclosure::unpaired(bin).unwrap();
    enc.nodes[0].start_single(bin);
    enc.nodes[1].start_single(bin);
    enc.wait_api(0, LIMIT).unwrap();
    enc.wait_api(1, LIMIT).unwrap();
    let (a, b) = ("10.77.0.1", "10.77.0.2");
    let ta = login(&enc, a);
    let tb = login(&enc, b);

    // A has an artifact.
    let (st, script) = call(
        &enc,
        "POST",
        api(a, "/rest/plan-scripts"),
        Some(ta.clone()),
        Some(
            json!({"name": "kept-through-pairing", "type": "PlanScript", "planType": "deploy", "content": "echo hi\n", "description": ""}),
        ),
    );
    assert_eq!(st, 201, "{script}");
    let script_uri = script["uri"].as_str().unwrap().to_string();

    // Only an administrator's session may pair; a bad body is named.
    let (st, _) = call(
        &enc,
        "POST",
        api(a, "/rest/appliance/pair"),
        None,
        Some(json!({})),
    );
    assert_eq!(st, 401);
    let (st, e) = call(
        &enc,
        "POST",
        api(a, "/rest/appliance/pair"),
        Some(ta.clone()),
        Some(json!({"address": a, "virtualIp": "10.77.0.100", "witnessAddress": "10.77.0.3"})),
    );
    assert_eq!(
        (st, e["errorCode"].as_str()),
        (400, Some("INVALID_PAIRING_REQUEST")),
        "{e}"
    );

    let (st, offer) = call(
        &enc,
        "POST",
        api(a, "/rest/appliance/pair"),
        Some(ta.clone()),
        Some(json!({
            "address": a, "virtualIp": format!("{VIP}/24"), "witnessAddress": "10.77.0.3",
            "name": "node-a",
        })),
    );
    assert_eq!(st, 201, "{offer}");
    let token = offer["joinToken"].as_str().unwrap().to_string();
    let witness_token = offer["witnessToken"].as_str().unwrap().to_string();
    // Shown once: the state view has no token.
    let (_, view) = call(
        &enc,
        "GET",
        api(a, "/rest/appliance/pair"),
        Some(ta.clone()),
        None,
    );
    assert_eq!(view["state"], "Pairing", "{view}");
    assert!(!view.to_string().contains(&token[4..36]));

    // Refusals, each with HPE's error body, none changing anything.
    let join = |tok: &str| {
        call(
            &enc,
            "POST",
            api(b, "/rest/appliance/pair/join"),
            Some(tb.clone()),
            Some(json!({
                "pairWith": format!("{a}:{API_PORT}"), "token": tok, "address": b,
                "name": "node-b",
            })),
        )
    };
    let flip = |s: &str, at: usize| {
        let mut c: Vec<char> = s.chars().collect();
        c[at] = if c[at] == '0' { '1' } else { '0' };
        c.into_iter().collect::<String>()
    };
    let refusals = [
        ("garbage".to_string(), 401, "JOIN_TOKEN_INVALID"),
        // A secret A never made.
        (flip(&token, 5), 401, "JOIN_TOKEN_INVALID"),
        // A fingerprint that is not A's certificate: B does not talk to it.
        (flip(&token, token.len() - 1), 502, "PEER_UNREACHABLE"),
    ];
    for (tok, status, code) in refusals {
        let (st, e) = join(&tok);
        assert_eq!((st, e["errorCode"].as_str()), (status, Some(code)), "{e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
        assert!(e["recommendedActions"][0].is_string(), "{e}");
    }
    let direct = |body: Value| call(&enc, "POST", api(a, pairing::JOIN_PATH), None, Some(body));
    let (st, e) = direct(join_request(&token, "0.0.0-other", MemberRole::Node, 2));
    assert_eq!(
        (st, e["errorCode"].as_str()),
        (409, Some("VERSION_MISMATCH")),
        "{e}"
    );
    let (st, e) = direct(join_request(
        &witness_token,
        pairing::VERSION,
        MemberRole::Witness,
        3,
    ));
    assert_eq!(
        (st, e["errorCode"].as_str()),
        (409, Some("PAIR_NOT_FORMED")),
        "{e}"
    );
    assert!(!paired(&enc, 0) && !paired(&enc, 1));

    // B joins; the token works once.
    let (st, joined) = join(&token);
    assert_eq!(st, 200, "{joined}");
    assert_eq!(joined["members"].as_array().unwrap().len(), 3, "{joined}");
    let (st, e) = direct(join_request(&token, pairing::VERSION, MemberRole::Node, 4));
    assert_eq!(
        (st, e["errorCode"].as_str()),
        (401, Some("JOIN_TOKEN_USED")),
        "{e}"
    );
    assert!(paired(&enc, 0) && paired(&enc, 1));

    // Both deployds ask to be started again as pair members (init reboots an appliance).
    for i in 0..2 {
        assert_eq!(
            enc.nodes[i].wait_exit("deployd", Duration::from_secs(20)),
            Some(deployd::services::pairing::RESTART_STATUS),
            "{}'s deployd",
            enc.nodes[i].name
        );
    }
    for i in 0..2 {
        enc.nodes[i].start_member(bin);
    }
    // The seed takes the management role first: its records are the pair's.
    assert_eq!(enc.wait_for_active(None, LIMIT).unwrap(), 0);
    enc.wait_api(0, LIMIT).unwrap();

    // The witness host joins with its token and runs its etcd member.
    let wdir = enc.nodes[2].clusterd_dir();
    let out = in_ns(&enc.client_ns(), {
        let (bin, wdir, wt) = (bin.to_path_buf(), wdir.clone(), witness_token.clone());
        move || {
            std::process::Command::new(bin)
                .args([
                    "clusterd",
                    "--state-dir",
                    wdir.to_str().unwrap(),
                    "witness",
                    "join",
                ])
                .args(["--api", &format!("https://{a}:{API_PORT}"), "--token", &wt])
                .args(["--address", "10.77.0.3"])
                .output()
                .unwrap()
        }
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    enc.nodes[2].start_etcd(bin);

    // Everything of A's is served on the virtual IP, to A's administrator.
    let tv = login(&enc, VIP);
    let (st, got) = call(&enc, "GET", api(VIP, &script_uri), Some(tv.clone()), None);
    assert_eq!(
        (st, got["name"].as_str()),
        (200, Some("kept-through-pairing")),
        "{got}"
    );
    let (_, view) = call(
        &enc,
        "GET",
        api(VIP, "/rest/appliance/pair"),
        Some(tv.clone()),
        None,
    );
    assert_eq!(view["state"], "Paired", "{view}");

    // The audit log is the pair's: a login on the standby (B) shows on the active (A).
    let tb = login(&enc, b);
    let end = Instant::now() + LIMIT;
    loop {
        let (st, log) = call(
            &enc,
            "GET",
            api(VIP, "/rest/audit-logs"),
            Some(tv.clone()),
            None,
        );
        assert_eq!(st, 200, "{log}");
        let nodes: std::collections::BTreeSet<&str> = log["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["node"].as_str())
            .collect();
        if nodes.contains("node-a") && nodes.contains("node-b") {
            break;
        }
        assert!(Instant::now() < end, "not both nodes' entries: {log}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // etcd speaks mutual TLS with the pair's CA only.
    let files = pairing::tls_files(&wdir);
    assert!(etcd_answers(
        &enc,
        Some(pairing::connect_options(&files).unwrap())
    ));
    assert!(!etcd_answers(&enc, None), "plain HTTP must be refused");
    let other = tempfile::tempdir().unwrap();
    {
        let ca = pairing::Ca::new("another-pair").unwrap();
        let creds = pairing::credentials("intruder").unwrap();
        let cert = ca
            .issue(&creds.csr_pem, "intruder", "10.77.0.3".parse().unwrap())
            .unwrap();
        let f = pairing::tls_files(other.path());
        std::fs::create_dir_all(f.ca.parent().unwrap()).unwrap();
        // The pair's CA to check the server by, but a certificate of another CA to show.
        std::fs::copy(&files.ca, &f.ca).unwrap();
        std::fs::write(&f.cert, cert).unwrap();
        std::fs::write(&f.key, creds.key_pem).unwrap();
        assert!(
            !etcd_answers(&enc, Some(pairing::connect_options(&f).unwrap())),
            "a certificate of another CA must be refused"
        );
    }

    // Unpairing B: confirmed only; then B is a single appliance with the pair's artifacts.
    let (st, e) = call(
        &enc,
        "DELETE",
        api(b, "/rest/appliance/pair"),
        Some(tb.clone()),
        None,
    );
    assert_eq!(
        (st, e["errorCode"].as_str()),
        (400, Some("CONFIRMATION_REQUIRED")),
        "{e}"
    );
    let (st, done) = call(
        &enc,
        "DELETE",
        api(b, "/rest/appliance/pair?confirm=true"),
        Some(tb),
        None,
    );
    assert_eq!(st, 200, "{done}");
    assert!(done["recordsKept"].as_u64().unwrap() > 0, "{done}");
    assert!(!paired(&enc, 1));
    assert_eq!(
        enc.nodes[1].wait_exit("deployd", Duration::from_secs(20)),
        Some(deployd::services::pairing::RESTART_STATUS)
    );
    enc.nodes[1].stop("clusterd");
    enc.nodes[1].stop("etcd");
    enc.nodes[1].start_deployd_as(bin, false);
    enc.wait_api(1, LIMIT).unwrap();
    let tb = login(&enc, b);
    let (st, got) = call(&enc, "GET", api(b, &script_uri), Some(tb.clone()), None);
    assert_eq!(
        (st, got["name"].as_str()),
        (200, Some("kept-through-pairing")),
        "{got}"
    );
    let (_, view) = call(&enc, "GET", api(b, "/rest/appliance/pair"), Some(tb), None);
    assert_eq!(view["state"], "Single", "{view}");

    // A goes on with the witness, and says it is no longer highly available.
    let end = Instant::now() + LIMIT;
    loop {
        let (st, alerts) = call(
            &enc,
            "GET",
            api(VIP, "/rest/alerts"),
            Some(tv.clone()),
            None,
        );
        assert_eq!(st, 200, "{alerts}");
        let active = alerts["members"].as_array().unwrap().iter().any(|m| {
            m["alertState"] == "Active"
                && m["description"].as_str().unwrap_or("").contains("node-b")
        });
        if active {
            break;
        }
        assert!(Instant::now() < end, "no alert about node-b: {alerts}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
