//! Test harness: a real deployd (HTTPS, self-signed certificate) in this process on a free
//! loopback port, and a small blocking client that logs in and speaks the API's JSON.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod deploy;
pub mod redfish;

use std::sync::Arc;
use std::time::Duration;

use deployd::state::{AppState, Config};
use deployd::tls::{TlsFiles, ensure_certificate};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

pub const PASSWORD: &str = "test-admin-password";

/// A running deployd; stopped when dropped (with its runtime).
pub struct TestServer {
    pub base: String,
    pub state_dir: tempfile::TempDir,
    /// The server's state, for tests that set up records directly.
    pub state: Arc<AppState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    /// Starts on an existing state directory (to test restarts).
    pub fn start_in(state_dir: tempfile::TempDir) -> Self {
        Self::start_with(state_dir, false)
    }

    /// Starts with a real storaged (in this process, store in `<state>/storaged`).
    pub fn start_with_storage() -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), true)
    }

    pub fn start_with(state_dir: tempfile::TempDir, storage: bool) -> Self {
        Self::start_inner(state_dir, storage, None, |_| {})
    }

    /// Starts with a real storaged and a configuration `configure` changed.
    pub fn start_configured(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_inner(tempfile::tempdir().unwrap(), true, None, configure)
    }

    /// Starts on `state_dir` against a storaged that runs on its own (it survives `stop`).
    /// A storage-backed server in `state_dir`, its configuration changed by `configure`.
    pub fn start_in_configured(
        state_dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_inner(state_dir, true, None, configure)
    }

    pub fn start_with_storaged(state_dir: tempfile::TempDir, storaged: &Storaged) -> Self {
        Self::start_inner(state_dir, false, Some(storaged), |_| {})
    }

    fn start_inner(
        state_dir: tempfile::TempDir,
        storage: bool,
        external: Option<&Storaged>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let socket = match external {
            Some(s) => s.socket.clone(),
            None => state_dir.path().join("storaged.sock"),
        };
        let nbd_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nbd_addr = match external {
            Some(s) => s.nbd_addr,
            None => nbd_listener.local_addr().unwrap(),
        };
        let mut config = Config {
            state_dir: state_dir.path().to_path_buf(),
            storaged_socket: socket.clone(),
            session_idle_timeout: Duration::from_secs(600),
            admin_password: Some(PASSWORD.into()),
            max_upload_bytes: Config::DEFAULT_MAX_UPLOAD,
            max_image_bytes: Config::DEFAULT_MAX_IMAGE,
            nbd_addr,
            boot_nbd_addr: None,
            power_control_pid: None,
            max_concurrent_runs: Config::DEFAULT_CONCURRENT_RUNS,
            run_limits: Default::default(),
            clusterd_socket: None,
            cluster_state_dir: state_dir.path().join("clusterd"),
            api_port: 0,
        };
        configure(&mut config);
        let (state, _) = AppState::open(config).unwrap();
        let state = Arc::new(state);
        let tls = TlsFiles::in_state_dir(state_dir.path());
        ensure_certificate(&tls, &["localhost".into()]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        if storage {
            // A restart on the same directory finds the last storaged's socket file: remove it,
            // so that waiting for the socket waits for this storaged.
            let _ = std::fs::remove_file(&socket);
            let store =
                Arc::new(storaged::store::Store::open(&state_dir.path().join("storaged")).unwrap());
            let catalog: Arc<dyn storaged::export::ExportCatalog> = store.clone();
            nbd_listener.set_nonblocking(true).unwrap();
            runtime.spawn(async move {
                let l = tokio::net::TcpListener::from_std(nbd_listener).unwrap();
                if let Err(e) = storaged::nbd::serve(l, catalog).await {
                    eprintln!("storaged NBD stopped: {e}");
                }
            });
            let sock = socket.clone();
            runtime.spawn(async move {
                if let Err(e) = storaged::control::server::serve(&sock, store, None).await {
                    eprintln!("storaged stopped: {e}");
                }
            });
            for _ in 0..100 {
                if socket.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        runtime.spawn(deployd::server::serve(Arc::clone(&state), listener, tls));
        let server = Self {
            base,
            state_dir,
            state,
            runtime: Some(runtime),
        };
        // Wait until it answers.
        for _ in 0..100 {
            if server
                .anonymous()
                .get(format!("{}/rest/version", server.base))
                .send()
                .is_ok()
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("deployd did not start");
    }

    /// Runs `f` on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(f)
    }

    /// storaged's volumes.
    pub fn volumes(&self) -> Vec<storaged::store::VolumeInfo> {
        let socket = self.state.config.storaged_socket.clone();
        self.block_on(async move {
            storaged::control::client::StorageClient::connect(&socket)
                .await
                .unwrap()
                .list()
                .await
                .unwrap()
        })
    }

    /// Files left in the temporary upload directory.
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.state_dir.path().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Stops the server and returns its state directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.state_dir, dir)
    }

    pub fn anonymous(&self) -> Client {
        Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// A client logged in as Administrator, sending X-API-Version `version`.
    pub fn login(&self, version: u32) -> Api {
        self.login_as("Administrator", PASSWORD, version)
    }

    pub fn login_as(&self, user: &str, password: &str, version: u32) -> Api {
        let http = self.anonymous();
        let r = http
            .post(format!("{}/rest/login-sessions", self.base))
            .json(&json!({"userName": user, "password": password}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "login failed: {}", r.text().unwrap());
        let token = r.json::<Value>().unwrap()["sessionID"]
            .as_str()
            .unwrap()
            .to_string();
        Api {
            http,
            base: self.base.clone(),
            token,
            version,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A storaged (control socket and NBD on loopback) on its own runtime, independent of any
/// `TestServer`: it keeps running while deployd stops and starts again.
pub struct Storaged {
    pub dir: tempfile::TempDir,
    pub socket: std::path::PathBuf,
    pub nbd_addr: std::net::SocketAddr,
    pub store: Arc<storaged::store::Store>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Storaged {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("storaged.sock");
        let store = Arc::new(storaged::store::Store::open(&dir.path().join("store")).unwrap());
        let nbd_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nbd_addr = nbd_listener.local_addr().unwrap();
        nbd_listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let catalog: Arc<dyn storaged::export::ExportCatalog> = store.clone();
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(nbd_listener).unwrap();
            if let Err(e) = storaged::nbd::serve(l, catalog).await {
                eprintln!("storaged NBD stopped: {e}");
            }
        });
        let (sock, st) = (socket.clone(), Arc::clone(&store));
        runtime.spawn(async move {
            if let Err(e) = storaged::control::server::serve(&sock, st, None).await {
                eprintln!("storaged stopped: {e}");
            }
        });
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            dir,
            socket,
            nbd_addr,
            store,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Storaged {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A logged-in API client.
pub struct Api {
    pub http: Client,
    pub base: String,
    pub token: String,
    pub version: u32,
}

impl Api {
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("auth", &self.token)
            .header("X-API-Version", self.version.to_string())
    }

    pub fn get(&self, path: &str) -> Response {
        self.req(reqwest::Method::GET, path).send().unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.req(reqwest::Method::POST, path)
            .json(body)
            .send()
            .unwrap()
    }

    pub fn put(&self, path: &str, body: &Value) -> Response {
        self.req(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .unwrap()
    }

    pub fn delete(&self, path: &str) -> Response {
        self.req(reqwest::Method::DELETE, path).send().unwrap()
    }

    /// POSTs `bytes` as a multipart upload in part `file` named `file_name`, with extra
    /// form fields.
    pub fn upload(
        &self,
        path: &str,
        file_name: &str,
        bytes: Vec<u8>,
        fields: &[(&str, &str)],
    ) -> Response {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let part = reqwest::blocking::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str("application/octet-stream")
            .unwrap();
        form = form.part("file", part);
        self.req(reqwest::Method::POST, path)
            .multipart(form)
            .send()
            .unwrap()
    }

    /// GETs `path`, asserting 200, as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().unwrap()
    }

    /// Follows a 202's task until it ends; returns the final task.
    pub fn wait_task(&self, accepted: Response) -> Value {
        assert_eq!(accepted.status(), 202, "expected 202 Accepted");
        let location = accepted.headers()["location"].to_str().unwrap().to_string();
        self.wait_task_at(&location)
    }

    /// Follows the task at `location` until it ends (up to two minutes).
    pub fn wait_task_at(&self, location: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let t = self.get_json(location);
            match t["taskState"].as_str() {
                Some("Running" | "New" | "Starting" | "Pending" | "Stopping") => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return t,
            }
        }
        panic!("task {location} did not finish");
    }
}
