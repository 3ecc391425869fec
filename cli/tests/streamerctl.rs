//! streamerctl against a real deployd (HTTPS, self-signed certificate) on a loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use deployd::state::{AppState, Config};
use deployd::tls::{TlsFiles, ensure_certificate};
use serde_json::Value;

const PASSWORD: &str = "cli-test-password";

struct Server {
    url: String,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = AppState::open(Config {
        state_dir: dir.path().join("deployd"),
        storaged_socket: dir.path().join("storaged.sock"),
        session_idle_timeout: Duration::from_secs(600),
        admin_password: Some(PASSWORD.into()),
        max_upload_bytes: Config::DEFAULT_MAX_UPLOAD,
        max_image_bytes: Config::DEFAULT_MAX_IMAGE,
        nbd_addr: Config::DEFAULT_NBD.parse().unwrap(),
        boot_nbd_addr: None,
        power_control_pid: None,
        max_concurrent_runs: Config::DEFAULT_CONCURRENT_RUNS,
        run_limits: Default::default(),
        clusterd_socket: None,
        cluster_state_dir: dir.path().join("clusterd"),
        api_port: 0,
    })
    .unwrap();
    let tls = TlsFiles::in_state_dir(&dir.path().join("deployd"));
    ensure_certificate(&tls, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.spawn(deployd::server::serve(Arc::new(state), listener, tls));
    for _ in 0..200 {
        if std::net::TcpStream::connect(url.trim_start_matches("https://")).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { url, dir, _rt: rt }
}

impl Server {
    fn session(&self) -> std::path::PathBuf {
        self.dir.path().join("session.json")
    }

    fn ctl(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamerctl"))
            .args(args)
            .env("STREAMERCTL_SESSION", self.session())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args, "");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    }

    fn login(&self) {
        let o = self.ctl(
            &[
                "login",
                "--url",
                &self.url,
                "--password-stdin",
                "--insecure",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn login_saves_a_private_session_and_logout_ends_it() {
    let s = start();
    let o = s.ctl(
        &["login", "--url", &s.url, "--password-stdin", "--insecure"],
        "wrong\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("error: Wrong user name or password. (AUTHORIZATION)"),
        "{}",
        text(&o.stderr)
    );
    assert!(!s.session().exists());
    // Without --insecure the self-signed certificate is refused: a connection error.
    let o = s.ctl(&["login", "--url", &s.url, "--password-stdin"], "x\n");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    // With the appliance's certificate as CA it is accepted.
    let ca = s.dir.path().join("deployd/tls/cert.pem");
    let o = s.ctl(
        &[
            "login",
            "--url",
            &s.url,
            "--password-stdin",
            "--ca-cert",
            ca.to_str().unwrap(),
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let meta = std::fs::metadata(s.session()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(s.session()).unwrap()).unwrap();
    assert_eq!(saved["url"], s.url.as_str());
    let token = saved["token"].as_str().unwrap().to_string();
    assert!(s.ok(&["task", "list"]).starts_with("NAME"));
    s.ok(&["logout"]);
    assert!(!s.session().exists());
    // The token no longer works on the server.
    let http = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/rest/tasks", s.url))
        .header("auth", token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // Not logged in: a usage error.
    let o = s.ctl(&["plan-script", "list"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("not logged in"));
}

#[test]
fn plan_script_crud_by_name_with_tasks_and_hpe_errors() {
    let s = start();
    s.login();
    let f = s.file(
        "ps.json",
        r#"{"name": "demo script", "planType": "deploy", "content": "echo @Host:web01@\n"}"#,
    );
    let created: Value =
        serde_json::from_str(&s.ok(&["--json", "plan-script", "create", "--file", &f])).unwrap();
    assert_eq!(created["name"], "demo script");
    let id = created["id"].as_str().unwrap().to_string();
    // Duplicate: the HPE error body, exit status 1.
    let o = s.ctl(&["plan-script", "create", "--file", &f], "");
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("(DUPLICATE_NAME)"),
        "{err}"
    );
    assert!(err.contains("recommended action: "), "{err}");
    // Table and name lookup.
    let table = s.ok(&["plan-script", "list", "--filter", "planType=deploy"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("demo script") && l.contains(&id)),
        "{table}"
    );
    assert_eq!(
        s.ok(&["plan-script", "list", "--filter", "planType=capture"])
            .lines()
            .count(),
        1
    );
    let got: Value =
        serde_json::from_str(&s.ok(&["--json", "plan-script", "get", "demo script"])).unwrap();
    assert_eq!(got["content"], "echo @Host:web01@\n");
    // Update by name: a 202 task, followed to the updated resource.
    let u = s.file(
        "upd.json",
        r#"{"description": "changed", "content": "echo @Host:db01@\n"}"#,
    );
    let updated: Value = serde_json::from_str(&s.ok(&[
        "--json",
        "plan-script",
        "update",
        "demo script",
        "--file",
        &u,
    ]))
    .unwrap();
    assert_eq!(updated["description"], "changed");
    assert_eq!(updated["planType"], "deploy");
    let tasks: Value = serde_json::from_str(&s.ok(&["--json", "task", "list"])).unwrap();
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "Update" && t["taskState"] == "Completed")
    );
    // A finished task cannot be cancelled and has no run log: both said, exit status 1.
    let done = tasks.as_array().unwrap()[0]["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let o = s.ctl(&["task", "cancel", &done], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("(TASK_ENDED)"),
        "{}",
        text(&o.stderr)
    );
    let o = s.ctl(&["task", "log", &done], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("has no activity log"),
        "{}",
        text(&o.stderr)
    );
    // Invalid update: 400 from the server, nothing changed.
    let bad = s.file("bad.json", r#"{"planType": "sideways"}"#);
    let o = s.ctl(&["plan-script", "update", &id, "--file", &bad], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let got: Value = serde_json::from_str(&s.ok(&["--json", "plan-script", "get", &id])).unwrap();
    assert_eq!(got["content"], "echo @Host:db01@\n");
    // A local file that is not JSON: exit status 3, no request.
    let notjson = s.file("x.json", "{");
    assert_eq!(
        s.ctl(&["plan-script", "create", "--file", &notjson], "")
            .status
            .code(),
        Some(3)
    );
    // Delete by id, then the name is unknown.
    s.ok(&["plan-script", "delete", &id]);
    let o = s.ctl(&["plan-script", "get", "demo script"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("RESOURCE_NOT_FOUND"));
}

#[test]
fn unreachable_appliance_is_exit_3_and_bad_usage_exit_2() {
    let s = start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = s.ctl(
        &[
            "login",
            "--url",
            &format!("https://127.0.0.1:{port}"),
            "--password-stdin",
            "--insecure",
        ],
        "x\n",
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(
        s.ctl(&["plan-script", "frobnicate"], "").status.code(),
        Some(2)
    );
    assert_eq!(
        s.ctl(&["login", "--url", "http://x"], "").status.code(),
        Some(2)
    );
}

#[test]
fn lint_prints_file_line_message_and_fails_on_errors() {
    let s = start();
    let good = s.file(
        "good.gfs",
        "mount /dev/sda1 /\nupload -<<END /x\n@A:b@\nEND\n",
    );
    let bad = s.file(
        "bad.gfs",
        "mount /dev/sda1 /\necho @Host:web01\nmkdirp /x\n",
    );
    let o = s.ctl(&["plan-script", "lint", &good], "");
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
    let o = s.ctl(&["plan-script", "lint", &good, &bad], "");
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("{bad}:2: error: ")), "{out}");
    assert!(
        lines[1].starts_with(&format!("{bad}:3: error: unknown guestfish command")),
        "{out}"
    );
    // The appliance's lint (POST /rest/plan-scripts/lint) says the same, line for line.
    s.login();
    let o = s.ctl(&["plan-script", "lint", "--appliance", &good, &bad], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), out);
    let o = s.ctl(&["plan-script", "lint", "--appliance", &good], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn dry_runs_print_the_substituted_plan_offline_and_from_the_appliance() {
    let s = start();
    let a = s.file("a.gfs", "upload -<<END /etc/hostname\n@Host:web01@\nEND\n");
    let b = s.file("b.gfs", "echo root@@@Host@ @Pw@\n");
    let out = s.ok(&["plan-script", "dry-run", &a, &b, "--attr", "Pw=s3cret"]);
    assert_eq!(
        out,
        format!(
            "# ==== plan script: {a}\nupload -<<END /etc/hostname\nweb01\nEND\n# ==== plan script: {b}\necho root@web01 s3cret\n"
        )
    );
    assert_eq!(
        s.ctl(&["plan-script", "dry-run", &a, "--attr", "novalue"], "")
            .status
            .code(),
        Some(2)
    );
    // From the appliance: the build plan's typed attributes apply, passwords are masked.
    s.login();
    let ps = s.file(
        "ps.json",
        r#"{"name": "dr", "planType": "deploy", "content": "echo @Host:web01@ @Pw@\n"}"#,
    );
    let created: Value =
        serde_json::from_str(&s.ok(&["--json", "plan-script", "create", "--file", &ps])).unwrap();
    let bp = s.file(
        "bp.json",
        &serde_json::json!({
            "name": "dr plan", "oeBuildPlanType": "deploy",
            "buildStep": [{"serialNumber": "1", "planScriptUri": created["uri"]}],
            "customAttributes": [
                {"name": "Host", "value": "web01", "type": "hostname", "constraints": "{\"helpText\":\"\"}", "description": ""},
                {"name": "Pw", "value": "", "type": "password", "constraints": "{\"maxlen\":\"20\"}", "description": ""}
            ]
        })
        .to_string(),
    );
    s.ok(&["build-plan", "create", "--file", &bp]);
    let out = s.ok(&[
        "build-plan",
        "dry-run",
        "dr plan",
        "--attr",
        "Host=node7",
        "--attr",
        "Pw=hunter22",
    ]);
    assert!(out.contains("echo node7 ********"), "{out}");
    let bad = s.ctl(
        &[
            "build-plan",
            "dry-run",
            "dr plan",
            "--attr",
            "Host=not.a.hostname",
        ],
        "",
    );
    assert_ne!(bad.status.code(), Some(0));
    assert!(text(&bad.stderr).contains("Host"), "{}", text(&bad.stderr));
}

#[test]
fn users_are_managed_by_name() {
    let s = start();
    s.login();
    let f = s.file(
        "u.json",
        r#"{"userName": "viewer", "fullName": "Viewer", "password": "viewer-pass", "roles": ["Read only"]}"#,
    );
    s.ok(&["user", "create", "--file", &f]);
    let got: Value = serde_json::from_str(&s.ok(&["--json", "user", "get", "viewer"])).unwrap();
    assert_eq!(got["roles"][0], "Read only");
    assert!(s.ok(&["user", "list"]).contains("viewer"));
    s.ok(&["user", "delete", "viewer"]);
    assert_eq!(s.ctl(&["user", "get", "viewer"], "").status.code(), Some(1));
    assert!(s.ok(&["server-hardware", "list"]).contains("NAME"));
    assert!(s.ok(&["server-profile", "list"]).contains("NAME"));
}

#[test]
fn appliance_pairing_state_audit_log_and_a_refused_join() {
    let s = start();
    s.login();
    let state = s.ok(&["--json", "appliance", "pairing"]);
    assert!(state.contains("\"Single\""), "{state}");
    let log = s.ok(&["appliance", "audit-log", "--count", "5"]);
    assert!(log.contains("LOGIN"), "{log}");
    // Unpairing asks for confirmation; a malformed token is refused by the appliance with
    // its error code.
    let o = s.ctl(&["appliance", "unpair"], "");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = s.ctl(
        &[
            "appliance",
            "join",
            "--pair-with",
            "127.0.0.1:1",
            "--token",
            "not-a-token",
            "--address",
            "127.0.0.1",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("JOIN_TOKEN_INVALID"),
        "{}",
        text(&o.stderr)
    );
}
