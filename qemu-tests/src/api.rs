//! A small blocking client of the appliance's REST API for the scenarios: log in, JSON
//! requests, multipart uploads, and following tasks.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

/// An HTTPS client that accepts the appliance's self-signed certificate.
pub fn insecure_client(timeout: Duration) -> Result<Client> {
    Ok(Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(timeout)
        .build()?)
}

/// An authenticated session.
#[derive(Debug, Clone)]
pub struct Api {
    http: Client,
    pub base: String,
    token: String,
}

impl Api {
    pub fn login(base: &str, user: &str, password: &str) -> Result<Api> {
        let http = insecure_client(Duration::from_secs(600))?;
        let r = http
            .post(format!("{base}/rest/login-sessions"))
            .header("X-API-Version", "2020")
            .json(&json!({"userName": user, "password": password}))
            .send()
            .with_context(|| format!("POST {base}/rest/login-sessions"))?;
        if r.status() != 200 {
            bail!(
                "login as {user}: {} {}",
                r.status(),
                r.text().unwrap_or_default()
            );
        }
        let v: Value = r.json()?;
        let token = v["sessionID"].as_str().context("no sessionID")?.to_owned();
        Ok(Api {
            http,
            base: base.to_owned(),
            token,
        })
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("auth", &self.token)
            .header("X-API-Version", "2020")
    }

    pub fn get_json(&self, path: &str) -> Result<Value> {
        let r = self.req(Method::GET, path).send()?;
        if r.status() != 200 {
            bail!(
                "GET {path}: {} {}",
                r.status(),
                r.text().unwrap_or_default()
            );
        }
        Ok(r.json()?)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Response> {
        Ok(self.req(Method::POST, path).json(body).send()?)
    }

    /// The URI of the member of `collection` named `name`.
    pub fn uri_named(&self, collection: &str, name: &str) -> Result<String> {
        let list = self.get_json(&format!("{collection}?count=500"))?;
        list["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == name)
            .and_then(|m| m["uri"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no {name:?} in {collection}"))
    }

    /// POSTs `bytes` as multipart part `file` named `file_name`.
    pub fn upload(&self, path: &str, file_name: &str, bytes: Vec<u8>) -> Result<Response> {
        let part = reqwest::blocking::multipart::Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str("application/octet-stream")?;
        let form = reqwest::blocking::multipart::Form::new().part("file", part);
        Ok(self.req(Method::POST, path).multipart(form).send()?)
    }

    /// Follows a 202's task until it ends (bounded by `timeout`); the final task.
    pub fn wait_task(&self, accepted: Response, timeout: Duration) -> Result<Value> {
        if accepted.status() != 202 {
            bail!(
                "expected 202 Accepted, got {} {}",
                accepted.status(),
                accepted.text().unwrap_or_default()
            );
        }
        let location = accepted
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("202 without Location")?
            .to_owned();
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.get_json(&location)?;
            match t["taskState"].as_str() {
                Some("Running" | "New" | "Starting" | "Pending") if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Some("Completed") => return Ok(t),
                _ => bail!("task {location} did not complete: {t}"),
            }
        }
    }

    /// Uploads an artifact bundle and extracts it.
    pub fn import_bundle(&self, file_name: &str, bytes: Vec<u8>) -> Result<()> {
        let t = self.wait_task(
            self.upload("/rest/artifact-bundles", file_name, bytes)?,
            Duration::from_secs(600),
        )?;
        let uri = t["associatedResource"]["resourceUri"]
            .as_str()
            .context("bundle task without resource")?;
        let r = self
            .req(Method::PUT, &format!("{uri}?extract=true&forceImport=true"))
            .header("Content-Type", "text/plain;charset=UTF-8")
            .send()?;
        self.wait_task(r, Duration::from_secs(600))?;
        Ok(())
    }
}
