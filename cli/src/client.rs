//! HTTPS to the appliance with HPE's conventions: `auth` and `X-API-Version` headers, JSON
//! bodies, HPE error bodies, and `202 Accepted` tasks followed to the end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

use crate::error::CliError;
use crate::session::Session;

/// Task states after which nothing changes (HPE SDKs' lists, plus Go's `Interrupted`).
const TERMINAL: &[&str] = &[
    "Completed",
    "Warning",
    "Error",
    "Terminated",
    "Killed",
    "Interrupted",
];

/// TLS choices shared by login and every later command.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub insecure: bool,
    pub ca_cert: Option<PathBuf>,
}

/// Builds the HTTP client; `timeout` `None` for transfers of any length.
pub fn http(tls: &Tls, timeout: Option<Duration>) -> Result<Client, CliError> {
    let mut b = Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(timeout)
        .danger_accept_invalid_certs(tls.insecure);
    if let Some(path) = &tls.ca_cert {
        let pem = std::fs::read(path).map_err(|e| CliError::file("cannot read", path, e))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            CliError::file(
                "not a PEM certificate:",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| CliError::Connection {
        url: String::new(),
        source: e,
    })
}

/// A logged-in connection.
#[derive(Debug)]
pub struct Api {
    pub session: Session,
    http: Client,
    transfer: Client,
}

/// What a request answered: a JSON body, and the Location of a 202's task.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub location: Option<String>,
}

impl Api {
    pub fn new(session: Session) -> Result<Self, CliError> {
        let tls = Tls {
            insecure: session.insecure,
            ca_cert: session.ca_cert.clone(),
        };
        Ok(Self {
            http: http(&tls, Some(Duration::from_secs(120)))?,
            transfer: http(&tls, None)?,
            session,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.session.url)
    }

    fn req(&self, client: &Client, method: Method, path: &str) -> RequestBuilder {
        client
            .request(method, self.url(path))
            .header("auth", &self.session.token)
            .header("X-API-Version", self.session.api_version.to_string())
            .header("Accept", "application/json")
    }

    pub fn send(&self, rb: RequestBuilder) -> Result<Response, CliError> {
        rb.send().map_err(|e| CliError::Connection {
            url: self.session.url.clone(),
            source: e,
        })
    }

    /// Sends a request and checks its status (any 4xx/5xx is an [`CliError::Api`]).
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CliError> {
        let mut rb = self.req(&self.http, method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        answer(self.send(rb)?, &self.session.url)
    }

    /// `PUT` with an empty `text/plain` body, as the HPE SDKs extract artifact bundles.
    pub fn extract(&self, path: &str) -> Result<Answer, CliError> {
        let rb = self
            .req(&self.http, Method::PUT, path)
            .header("Content-Type", "text/plain;charset=UTF-8")
            .body("");
        answer(self.send(rb)?, &self.session.url)
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(Method::GET, path, None)?.body)
    }

    /// The error a response that is not a success stands for, whatever `answer` makes of it.
    fn refused(&self, resp: Response) -> CliError {
        match answer(resp, &self.session.url) {
            Err(e) => e,
            Ok(a) => CliError::Api {
                status: a.status,
                body: a.body,
            },
        }
    }

    /// A `text/plain` resource (an activity log).
    pub fn text(&self, path: &str) -> Result<String, CliError> {
        let resp = self.send(
            self.req(&self.http, Method::GET, path)
                .header("Accept", "text/plain"),
        )?;
        if !resp.status().is_success() {
            return Err(self.refused(resp));
        }
        resp.text().map_err(|e| CliError::Connection {
            url: self.session.url.clone(),
            source: e,
        })
    }

    /// Like [`Api::call`], then waits for the task of a 202 and returns the final resource
    /// (or the task, when there is no resource to show).
    pub fn call_and_wait(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let a = self.call(method, path, body)?;
        self.finish(a)
    }

    /// Waits for a 202's task, if the answer is one.
    pub fn finish(&self, a: Answer) -> Result<Value, CliError> {
        if a.status != 202 && a.body["category"] != "tasks" {
            return Ok(a.body);
        }
        let task_uri = a
            .location
            .clone()
            .or_else(|| a.body["uri"].as_str().map(str::to_string))
            .ok_or_else(|| CliError::Api {
                status: a.status,
                body: Value::String("202 Accepted without a task Location".into()),
            })?;
        let task = self.wait_task(&task_uri)?;
        let resource = task["associatedResource"]["resourceUri"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        match (task["name"].as_str(), resource) {
            (Some("Delete" | "Remove"), _) | (_, None) => Ok(task),
            (_, Some(uri)) => match self.get(&uri) {
                Ok(v) => Ok(v),
                Err(CliError::Api { status: 404, .. }) => Ok(task),
                Err(e) => Err(e),
            },
        }
    }

    /// Polls a task until it ends, showing its progress; an error if it did not complete.
    pub fn wait_task(&self, uri: &str) -> Result<Value, CliError> {
        let bar = ProgressBar::new(100).with_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}%")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut delay = Duration::from_millis(100);
        let task = loop {
            let t = self.get(uri)?;
            let state = t["taskState"].as_str().unwrap_or("Unknown");
            bar.set_message(format!(
                "{} {}: {state}",
                t["name"].as_str().unwrap_or("task"),
                t["associatedResource"]["resourceName"]
                    .as_str()
                    .unwrap_or("")
            ));
            bar.set_position(t["percentComplete"].as_u64().unwrap_or(0).min(100));
            if TERMINAL.contains(&state) {
                break t;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        };
        bar.finish_and_clear();
        match task["taskState"].as_str() {
            Some("Completed") => Ok(task),
            Some("Warning") => {
                for e in task["taskErrors"].as_array().into_iter().flatten() {
                    eprintln!("warning: {}", crate::error::error_message_text(e));
                }
                Ok(task)
            }
            _ => Err(CliError::Task { task }),
        }
    }

    /// POSTs `file` as HPE's single-part multipart upload (`file` field, `uploadfilename`
    /// header) with a progress bar, then waits for the task if there is one.
    pub fn upload(&self, path: &str, file: &Path) -> Result<Value, CliError> {
        let f = std::fs::File::open(file).map_err(|e| CliError::file("cannot open", file, e))?;
        let len = f
            .metadata()
            .map_err(|e| CliError::file("cannot stat", file, e))?
            .len();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "upload.zip".into());
        let bar = transfer_bar(len, &format!("uploading {name}"));
        let reader = ProgressRead {
            inner: f,
            bar: bar.clone(),
        };
        let part = reqwest::blocking::multipart::Part::reader_with_length(reader, len)
            .file_name(name.clone())
            .mime_str("application/octet-stream")
            .map_err(|e| CliError::Connection {
                url: self.session.url.clone(),
                source: e,
            })?;
        let form = reqwest::blocking::multipart::Form::new().part("file", part);
        let rb = self
            .req(&self.transfer, Method::POST, path)
            .header("uploadfilename", &name)
            .multipart(form);
        let resp = self.send(rb);
        bar.finish_and_clear();
        let a = answer(resp?, &self.session.url)?;
        self.finish(a)
    }

    /// GETs `path` into `dest` (through `dest.part`, renamed when complete) with a progress
    /// bar; returns the number of bytes written.
    pub fn download(&self, path: &str, dest: &Path) -> Result<u64, CliError> {
        let resp = self.send(self.req(&self.transfer, Method::GET, path))?;
        if !resp.status().is_success() {
            return Err(self.refused(resp));
        }
        let len = resp.content_length();
        let mut part_name = dest.file_name().unwrap_or_default().to_os_string();
        part_name.push(".part");
        let part = dest.with_file_name(part_name);
        let mut out =
            std::fs::File::create(&part).map_err(|e| CliError::file("cannot create", &part, e))?;
        let bar = transfer_bar(len.unwrap_or(0), &format!("downloading {}", dest.display()));
        let mut reader = ProgressRead {
            inner: resp,
            bar: bar.clone(),
        };
        let copied = std::io::copy(&mut reader, &mut out);
        bar.finish_and_clear();
        let n = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(CliError::file("download failed writing", &part, e));
            }
        };
        if let Some(expected) = len.filter(|&l| l != n) {
            let _ = std::fs::remove_file(&part);
            return Err(CliError::file(
                "download truncated",
                dest,
                std::io::Error::other(format!("{n} of {expected} bytes")),
            ));
        }
        out.flush()
            .and_then(|()| out.sync_all())
            .map_err(|e| CliError::file("cannot write", &part, e))?;
        std::fs::rename(&part, dest).map_err(|e| CliError::file("cannot write", dest, e))?;
        Ok(n)
    }
}

/// Turns a response into an [`Answer`], or an API error for 4xx/5xx.
pub fn answer(resp: Response, url: &str) -> Result<Answer, CliError> {
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| match l.find("/rest/") {
            // An absolute Location: keep the path, we talk to the host we logged in to.
            Some(i) if l.starts_with("http") => l[i..].to_string(),
            _ => l.to_string(),
        });
    let text = resp.text().map_err(|e| CliError::Connection {
        url: url.to_string(),
        source: e,
    })?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status >= 400 {
        return Err(CliError::Api { status, body });
    }
    Ok(Answer {
        status,
        body,
        location,
    })
}

fn transfer_bar(len: u64, msg: &str) -> ProgressBar {
    let bar = if len > 0 {
        ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_message(msg.to_string());
    bar
}

/// A reader that advances a progress bar.
#[derive(Debug)]
struct ProgressRead<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for ProgressRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
