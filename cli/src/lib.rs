//! `streamerctl`: the command-line client of the Streamer REST API (HPE Image Streamer's API).
//!
//! It logs in once and keeps the session in a file only the user can read; it never prints a
//! password or a session token. `plan-script lint` works offline with the `planscript`
//! crate's checks, the same ones the appliance runs.
//!
//! Exit status: 0 ok; 1 the API refused the request, a task failed, or lint found errors;
//! 2 usage (bad arguments, not logged in); 3 no connection (refused, timeout, TLS) or a local
//! file that cannot be read or written.

mod client;
mod dryrun;
mod error;
mod lint;
mod password;
mod resources;
mod session;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use client::{Api, Tls};
use error::{CliError, EXIT_OK};
use resources::{Kind, resolve};
use session::Session;

#[derive(Debug, Parser)]
#[command(
    name = "streamerctl",
    version,
    about = "Command-line client of the Streamer (HPE Image Streamer) REST API",
    after_help = "Exit status: 0 ok, 1 API error or failed task (lint: errors found), \
                  2 usage or not logged in, 3 connection/TLS failure or local file error."
)]
struct Cli {
    /// Print raw JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in and save the session (URL and token) for later commands.
    Login(LoginArgs),
    /// End the session on the appliance and forget it here.
    Logout,
    /// Plan scripts (and `lint`, which works offline).
    #[command(subcommand)]
    PlanScript(PlanScriptCmd),
    /// OS build plans.
    #[command(subcommand)]
    BuildPlan(BuildPlanCmd),
    /// Deployment plans.
    #[command(subcommand)]
    DeploymentPlan(Crud),
    /// Golden images (and upload, download).
    #[command(subcommand)]
    GoldenImage(GoldenImageCmd),
    /// OS volumes.
    #[command(subcommand)]
    OsVolume(Crud),
    /// Artifact bundles (and upload, extract, download).
    #[command(subcommand)]
    ArtifactBundle(ArtifactBundleCmd),
    /// Deployment groups.
    #[command(subcommand)]
    DeploymentGroup(Crud),
    /// Compute modules (server hardware) and their Redfish power control.
    #[command(subcommand)]
    ServerHardware(Crud),
    /// Server profiles: creating one deploys its OS volume; changing it re-deploys.
    #[command(subcommand)]
    ServerProfile(Crud),
    /// Local users and their roles.
    #[command(subcommand)]
    User(Crud),
    /// Tasks (and cancel, log).
    #[command(subcommand)]
    Task(TaskCmd),
    /// The appliance: pairing two appliances into an HA pair, its nodes, alerts, audit log.
    #[command(subcommand)]
    Appliance(ApplianceCmd),
}

#[derive(Debug, Subcommand)]
enum ApplianceCmd {
    /// This appliance's pairing state (single, pairing, paired) and members.
    Pairing,
    /// Start a pairing here (the appliance whose artifacts the pair keeps): prints the
    /// one-time join tokens for the other appliance and the witness (valid 10 minutes).
    Pair {
        /// This appliance's address on the enclosure network.
        #[arg(long)]
        address: String,
        /// The management virtual IP with its prefix length, e.g. 10.0.0.100/24.
        #[arg(long)]
        virtual_ip: String,
        /// The witness host's address.
        #[arg(long)]
        witness: String,
        /// This appliance's name in the pair (default: its host name).
        #[arg(long)]
        name: Option<String>,
        /// This appliance's storage address with its prefix length, e.g. 10.0.0.11/24: its
        /// OS volumes' floating boot address (the pair then replicates them).
        #[arg(long)]
        storage_ip: Option<String>,
    },
    /// Join the pair being made on another appliance, with its join token.
    Join {
        /// The first appliance's API address (host, host:port or https://host:port).
        #[arg(long)]
        pair_with: String,
        #[arg(long)]
        token: String,
        /// This appliance's address on the enclosure network.
        #[arg(long)]
        address: String,
        #[arg(long)]
        name: Option<String>,
        /// This appliance's storage address, e.g. 10.0.0.12/24 (when the first gave one).
        #[arg(long)]
        storage_ip: Option<String>,
    },
    /// Take this appliance out of its pair (it keeps every artifact and restarts).
    Unpair {
        /// Confirm: the appliance restarts as a single appliance.
        #[arg(long)]
        yes: bool,
    },
    /// The pair's members: role, health, address, version, last heartbeat.
    Nodes,
    /// The pair's alerts.
    Alerts,
    /// The newest audit-log entries (the pair's, on a pair).
    AuditLog {
        #[arg(long, default_value_t = 50)]
        count: u32,
    },
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// Appliance address, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "Administrator")]
    user: String,
    /// Read the password from standard input (first line) instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// Accept any server certificate (the appliance's self-signed one).
    #[arg(long, conflicts_with = "ca_cert")]
    insecure: bool,
    /// Trust this CA certificate (PEM), e.g. the appliance's tls/cert.pem.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// X-API-Version to send (default: the newest the appliance supports, at most 2020).
    #[arg(long)]
    api_version: Option<u32>,
}

/// The commands every collection has.
#[derive(Debug, Subcommand)]
enum Crud {
    /// List members.
    List {
        /// OneView filter, e.g. "name matches 'HPE%'" or planType=deploy.
        #[arg(long)]
        filter: Option<String>,
        /// Sort order, e.g. name:ascending.
        #[arg(long)]
        sort: Option<String>,
    },
    /// Show one member.
    Get { name_or_id: String },
    /// Create from a JSON file ("-" for standard input).
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a member with the JSON in a file ("-" for standard input).
    Update {
        name_or_id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a member.
    Delete { name_or_id: String },
}

#[derive(Debug, Subcommand)]
enum PlanScriptCmd {
    #[command(flatten)]
    Crud(Crud),
    /// Check plan scripts (offline, or with --appliance by the logged-in appliance's
    /// POST /rest/plan-scripts/lint); prints file:line: message, exit status 1 on any error.
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Ask the appliance (the session of `streamerctl login`) instead of checking here:
        /// the same checks as the appliance's software version makes.
        #[arg(long)]
        appliance: bool,
    },
    /// Print the scripts (in argument order) concatenated with @Name@ substituted; offline.
    DryRun {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// An attribute value, NAME=VALUE (NIC fields as Nic.ipaddress=...); repeatable.
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BuildPlanCmd {
    #[command(flatten)]
    Crud(Crud),
    /// Print the plan's scripts in step order with @Name@ substituted (the plan's values,
    /// then --attr), every value validated as a deployment would; nothing runs.
    DryRun {
        name_or_id: String,
        /// An attribute value, NAME=VALUE (NIC fields as Nic.ipaddress=...); repeatable.
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
        /// Print password values instead of ********.
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GoldenImageCmd {
    #[command(flatten)]
    Crud(Crud),
    /// Upload a golden image (.zip) and wait until it is added.
    Upload {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Download a golden image to FILE.
    Download { name_or_id: String, file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum TaskCmd {
    #[command(flatten)]
    Crud(Crud),
    /// Cancel a running or queued deploy or capture; with --wait, until it has cleaned up.
    Cancel {
        id: String,
        #[arg(long)]
        wait: bool,
    },
    /// Print the activity log a failed or cancelled run left with its task.
    Log { id: String },
}

#[derive(Debug, Subcommand)]
enum ArtifactBundleCmd {
    #[command(flatten)]
    Crud(Crud),
    /// Upload an artifact bundle (.zip); its artifacts are added by `extract`.
    Upload { file: PathBuf },
    /// Extract a bundle's artifacts onto the appliance.
    Extract { name_or_id: String },
    /// Download a bundle to FILE.
    Download { name_or_id: String, file: PathBuf },
}

/// `streamerctl` with these arguments (the first is the program name), to its exit status.
/// `src/main.rs` and the appliance's multi-call binary both call it.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            if let CliError::Api { status: 401, .. } = e {
                eprintln!("(log in again with `streamerctl login`)");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<u8, CliError> {
    let json = cli.json;
    match cli.command {
        Command::Login(a) => login(a),
        Command::Logout => logout(),
        Command::PlanScript(PlanScriptCmd::Lint { files, appliance }) => {
            if appliance {
                lint::run_on(&Api::new(session::load()?)?, &files)
            } else {
                Ok(lint::run(&files))
            }
        }
        Command::PlanScript(PlanScriptCmd::DryRun { files, attrs }) => {
            print!("{}", dryrun::files(&files, &attrs)?);
            Ok(0)
        }
        Command::BuildPlan(BuildPlanCmd::DryRun {
            name_or_id,
            attrs,
            show_secrets,
        }) => {
            let api = Api::new(session::load()?)?;
            print!(
                "{}",
                dryrun::build_plan(&api, &name_or_id, &attrs, show_secrets)?
            );
            Ok(0)
        }
        Command::PlanScript(PlanScriptCmd::Crud(c)) => crud(&resources::PLAN_SCRIPT, c, json),
        Command::BuildPlan(BuildPlanCmd::Crud(c)) => crud(&resources::BUILD_PLAN, c, json),
        Command::DeploymentPlan(c) => crud(&resources::DEPLOYMENT_PLAN, c, json),
        Command::OsVolume(c) => crud(&resources::OS_VOLUME, c, json),
        Command::DeploymentGroup(c) => crud(&resources::DEPLOYMENT_GROUP, c, json),
        Command::ServerHardware(c) => crud(&resources::SERVER_HARDWARE, c, json),
        Command::ServerProfile(c) => crud(&resources::SERVER_PROFILE, c, json),
        Command::User(c) => crud(&resources::USER, c, json),
        Command::Task(TaskCmd::Crud(c)) => crud(&resources::TASK, c, json),
        Command::Task(TaskCmd::Cancel { id, wait }) => {
            let api = Api::new(session::load()?)?;
            let path = format!("{}/{id}", resources::TASK.path);
            let body = serde_json::json!({"taskState": "Cancelling"});
            let task = api.call(reqwest::Method::PUT, &path, Some(&body))?.body;
            if !wait {
                show_one(&task, json);
                return Ok(EXIT_OK);
            }
            // The task ends Terminated: that is what was asked for, not a failure.
            match api.wait_task(&path) {
                Ok(t) => show_one(&t, json),
                Err(CliError::Task { task }) if task["taskState"] == "Terminated" => {
                    show_one(&task, json)
                }
                Err(e) => return Err(e),
            }
            Ok(EXIT_OK)
        }
        Command::Appliance(cmd) => appliance(cmd, json),
        Command::Task(TaskCmd::Log { id }) => {
            let api = Api::new(session::load()?)?;
            print!(
                "{}",
                api.text(&format!("{}/{id}/log", resources::TASK.path))?
            );
            Ok(EXIT_OK)
        }
        Command::GoldenImage(GoldenImageCmd::Crud(c)) => crud(&resources::GOLDEN_IMAGE, c, json),
        Command::GoldenImage(GoldenImageCmd::Upload {
            file,
            name,
            description,
        }) => {
            let api = Api::new(session::load()?)?;
            let path = format!(
                "{}?name={}&description={}",
                resources::GOLDEN_IMAGE.path,
                resources::urlencode(&name),
                resources::urlencode(&description)
            );
            let v = api.upload(&path, &file)?;
            show_one(&v, json);
            Ok(EXIT_OK)
        }
        Command::GoldenImage(GoldenImageCmd::Download { name_or_id, file }) => {
            download(&resources::GOLDEN_IMAGE, &name_or_id, &file)
        }
        Command::ArtifactBundle(ArtifactBundleCmd::Crud(c)) => {
            crud(&resources::ARTIFACT_BUNDLE, c, json)
        }
        Command::ArtifactBundle(ArtifactBundleCmd::Upload { file }) => {
            let api = Api::new(session::load()?)?;
            let v = api.upload(resources::ARTIFACT_BUNDLE.path, &file)?;
            show_one(&v, json);
            Ok(EXIT_OK)
        }
        Command::ArtifactBundle(ArtifactBundleCmd::Extract { name_or_id }) => {
            let api = Api::new(session::load()?)?;
            let uri = resolve(&api, &resources::ARTIFACT_BUNDLE, &name_or_id)?;
            // HPE's SDKs send an empty text/plain body with these parameters.
            let a = api.extract(&format!("{uri}?extract=true&forceImport=true"))?;
            let v = api.finish(a)?;
            show_one(&v, json);
            Ok(EXIT_OK)
        }
        Command::ArtifactBundle(ArtifactBundleCmd::Download { name_or_id, file }) => {
            download(&resources::ARTIFACT_BUNDLE, &name_or_id, &file)
        }
    }
}

fn login(a: LoginArgs) -> Result<u8, CliError> {
    let url = a.url.trim_end_matches('/').to_string();
    if !url.starts_with("https://") {
        return Err(CliError::Usage(format!(
            "--url {url:?} must start with https://"
        )));
    }
    let tls = Tls {
        insecure: a.insecure,
        ca_cert: a.ca_cert.clone(),
    };
    let http = client::http(&tls, Some(std::time::Duration::from_secs(60)))?;
    let conn = |e| CliError::Connection {
        url: url.clone(),
        source: e,
    };
    let version = client::answer(
        http.get(format!("{url}/rest/version"))
            .send()
            .map_err(conn)?,
        &url,
    )?
    .body;
    let current = version["currentVersion"].as_u64().unwrap_or(300) as u32;
    let api_version = a.api_version.unwrap_or(current.min(2020));
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::file("cannot read", "standard input", e))?;
        s.lines().next().unwrap_or("").to_string()
    } else {
        password::prompt(&format!("Password for {}: ", a.user))
            .map_err(|e| CliError::file("cannot read the password from", "the terminal", e))?
    };
    let resp = http
        .post(format!("{url}/rest/login-sessions"))
        .header("X-API-Version", api_version.to_string())
        .json(&json!({"userName": a.user, "password": password,
                      "authLoginDomain": "local", "loginMsgAck": true}))
        .send()
        .map_err(conn)?;
    let body = client::answer(resp, &url)?.body;
    let token = body["sessionID"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CliError::Api {
            status: 200,
            body: Value::String("the login answer has no sessionID".into()),
        })?;
    let path = session::save(&Session {
        url: url.clone(),
        token: token.to_string(),
        user: a.user.clone(),
        api_version,
        insecure: a.insecure,
        ca_cert: a.ca_cert.map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
    })?;
    eprintln!(
        "logged in to {url} as {} (API version {api_version}); session saved in {}",
        a.user,
        path.display()
    );
    Ok(EXIT_OK)
}

fn logout() -> Result<u8, CliError> {
    let s = match session::load() {
        Ok(s) => s,
        Err(CliError::Usage(_)) => {
            eprintln!("not logged in");
            return Ok(EXIT_OK);
        }
        Err(e) => return Err(e),
    };
    let url = s.url.clone();
    let ended = Api::new(s).and_then(|api| api.call(Method::DELETE, "/rest/login-sessions", None));
    session::remove()?;
    match ended {
        Ok(_) => eprintln!("logged out of {url}"),
        Err(e) => eprintln!("session forgotten here; the appliance did not confirm: {e}"),
    }
    Ok(EXIT_OK)
}

fn read_json(file: &Path) -> Result<Value, CliError> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::file("cannot read", "standard input", e))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::file("cannot read", file, e))?
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::file(
            "not JSON:",
            file,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

fn crud(kind: &Kind, cmd: Crud, json: bool) -> Result<u8, CliError> {
    let api = Api::new(session::load()?)?;
    match cmd {
        Crud::List { filter, sort } => {
            let mut members = Vec::new();
            let mut next = Some(list_uri(kind, filter.as_deref(), sort.as_deref()));
            let mut last = String::new();
            // Follow nextPageUri as the HPE SDKs do: until null or unchanged.
            while let Some(uri) = next.take().filter(|u| *u != last) {
                let page = api.get(&uri)?;
                members.extend(page["members"].as_array().cloned().unwrap_or_default());
                next = page["nextPageUri"].as_str().map(str::to_string);
                last = uri;
            }
            if json {
                print_json(&Value::Array(members));
            } else {
                println!("{}", resources::table(kind, &members));
            }
        }
        Crud::Get { name_or_id } => {
            let uri = resolve(&api, kind, &name_or_id)?;
            show_one(&api.get(&uri)?, json);
        }
        Crud::Create { file } => {
            let body = read_json(&file)?;
            let v = api.call_and_wait(Method::POST, kind.path, Some(&body))?;
            show_one(&v, json);
        }
        Crud::Update { name_or_id, file } => {
            let mut body = read_json(&file)?;
            let uri = resolve(&api, kind, &name_or_id)?;
            // PUT replaces the whole resource; carry over what the file leaves out.
            if let (Some(obj), Value::Object(current)) = (body.as_object_mut(), api.get(&uri)?) {
                for (k, v) in current {
                    if k != "eTag" {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
            let v = api.call_and_wait(Method::PUT, &uri, Some(&body))?;
            show_one(&v, json);
        }
        Crud::Delete { name_or_id } => {
            let uri = resolve(&api, kind, &name_or_id)?;
            api.call_and_wait(Method::DELETE, &uri, None)?;
            if !json {
                println!("deleted {uri}");
            }
        }
    }
    Ok(EXIT_OK)
}

fn list_uri(kind: &Kind, filter: Option<&str>, sort: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(f) = filter {
        q.push(format!("filter={}", resources::urlencode(f)));
    }
    if let Some(s) = sort {
        q.push(format!("sort={}", resources::urlencode(s)));
    }
    if q.is_empty() {
        kind.path.to_string()
    } else {
        format!("{}?{}", kind.path, q.join("&"))
    }
}

fn download(kind: &Kind, name_or_id: &str, file: &Path) -> Result<u8, CliError> {
    let api = Api::new(session::load()?)?;
    let uri = resolve(&api, kind, name_or_id)?;
    let id = uri.rsplit('/').next().unwrap_or_default();
    let n = api.download(&format!("{}/download/{id}", kind.path), file)?;
    eprintln!("{}: {n} bytes", file.display());
    Ok(EXIT_OK)
}

fn show_one(v: &Value, json: bool) {
    if json {
        print_json(v);
    } else {
        println!("{}", resources::details(v));
    }
}

/// A collection without a table of its own: each member's details.
fn show_list(v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    for m in v["members"].as_array().into_iter().flatten() {
        println!("{}\n", resources::details(m));
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn appliance(cmd: ApplianceCmd, json: bool) -> Result<u8, CliError> {
    let api = Api::new(session::load()?)?;
    let (method, path, body) = match cmd {
        ApplianceCmd::Pairing => (Method::GET, "/rest/appliance/pair".to_string(), None),
        ApplianceCmd::Pair {
            address,
            virtual_ip,
            witness,
            name,
            storage_ip,
        } => (
            Method::POST,
            "/rest/appliance/pair".into(),
            Some(json!({"address": address, "virtualIp": virtual_ip,
                        "witnessAddress": witness, "name": name,
                        "storageIp": storage_ip})),
        ),
        ApplianceCmd::Join {
            pair_with,
            token,
            address,
            name,
            storage_ip,
        } => (
            Method::POST,
            "/rest/appliance/pair/join".into(),
            Some(
                json!({"pairWith": pair_with, "token": token, "address": address,
                        "name": name, "storageIp": storage_ip}),
            ),
        ),
        ApplianceCmd::Unpair { yes } => {
            if !yes {
                return Err(CliError::Usage(
                    "unpairing restarts the appliance: confirm with --yes".into(),
                ));
            }
            (
                Method::DELETE,
                "/rest/appliance/pair?confirm=true".into(),
                None,
            )
        }
        ApplianceCmd::Nodes => (Method::GET, "/rest/appliance/nodes".into(), None),
        ApplianceCmd::Alerts => (Method::GET, "/rest/alerts".into(), None),
        ApplianceCmd::AuditLog { count } => {
            (Method::GET, format!("/rest/audit-logs?count={count}"), None)
        }
    };
    let v = api.call(method, &path, body.as_ref())?.body;
    if v.get("members").is_some() {
        show_list(&v, json);
    } else {
        show_one(&v, json);
    }
    Ok(EXIT_OK)
}
