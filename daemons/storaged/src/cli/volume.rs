//! `storaged volume ...` and `storaged export ...`: requests to a running daemon.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::control::client::StorageClient;
use clap::Subcommand;
use futures_util::StreamExt;
use zbus::zvariant::Fd;

use super::output::{self, ProgressBar};
use super::{ClientArgs, Failure};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create an empty, writable, thin volume.
    Create {
        /// Size, in bytes or with a unit: 512M, 20G, 1T (binary units).
        #[arg(long, value_parser = output::parse_size)]
        size: u64,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import a raw or qcow2 image file as a new volume (frozen: a golden image).
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// raw or qcow2; detected from the file when omitted.
        #[arg(long)]
        format: Option<String>,
        /// Make the volume writable instead of frozen.
        #[arg(long)]
        writable: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a volume to a raw or qcow2 image file.
    Export {
        volume: String,
        file: PathBuf,
        /// raw or qcow2; from the file name's extension when omitted (.qcow2, else raw).
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a writable copy-on-write volume over a frozen one, in O(1).
    Clone {
        parent: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Freeze the current content of a writable volume as a new frozen volume, in O(1).
    Snapshot {
        volume: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Copy a volume's inherited blocks into it and detach it from its parents.
    Flatten {
        volume: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a volume (refused while it has children or open connections).
    Delete {
        volume: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List every volume.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one volume: size, allocation, parent chain, state, export.
    Info {
        volume: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check the consistency of the whole store (exit status 4 if problems are found).
    Verify {
        /// Also re-read every imported volume and compare its content checksum.
        #[arg(long)]
        deep: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Who may log in over iSCSI (beside the address list, which holds for NBD too).
#[derive(Debug, clap::Args)]
pub struct IscsiArgs {
    /// An initiator name (IQN) allowed to log in over iSCSI (repeatable); any if none.
    #[arg(long = "initiator", value_name = "IQN")]
    initiators: Vec<String>,
    /// The CHAP name an iSCSI initiator must log in with (its secret: --chap-secret-file).
    #[arg(long, requires = "chap_secret_file")]
    chap_user: Option<String>,
    /// A file holding the CHAP secret (12 to 255 bytes; read, never printed).
    #[arg(long, requires = "chap_user")]
    chap_secret_file: Option<PathBuf>,
    /// Mutual CHAP: the name this target answers an initiator's challenge with.
    #[arg(long, requires_all = ["mutual_chap_secret_file", "chap_user"])]
    mutual_chap_user: Option<String>,
    /// A file holding the mutual CHAP secret.
    #[arg(long, requires = "mutual_chap_user")]
    mutual_chap_secret_file: Option<PathBuf>,
}

impl IscsiArgs {
    fn access(&self) -> Result<Option<crate::export::IscsiAccess>, Failure> {
        let secret = |user: &Option<String>, file: &Option<PathBuf>| -> Result<_, Failure> {
            let (Some(user), Some(file)) = (user, file) else {
                return Ok(None);
            };
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::Local(format!("{}: {e}", file.display())))?;
            let secret = text.trim_end_matches(['\r', '\n']).to_string();
            // RFC 7143 §12.1.3: at least 12 bytes (96 bits) of secret.
            if !(12..=255).contains(&secret.len()) {
                return Err(Failure::Local(format!(
                    "{}: a CHAP secret has 12 to 255 bytes; this one has {}",
                    file.display(),
                    secret.len()
                )));
            }
            Ok(Some(crate::export::ChapSecret {
                user: user.clone(),
                secret,
            }))
        };
        let access = crate::export::IscsiAccess {
            initiators: self.initiators.clone(),
            chap: secret(&self.chap_user, &self.chap_secret_file)?,
            mutual_chap: secret(&self.mutual_chap_user, &self.mutual_chap_secret_file)?,
        };
        Ok((access != crate::export::IscsiAccess::default()).then_some(access))
    }
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Serve a volume over NBD (export name: its id or name). Replaces an existing export.
    Add {
        volume: String,
        /// A client address or network allowed to connect (repeatable); any client if none.
        #[arg(long = "allow", value_name = "ADDRESS|NETWORK")]
        allow: Vec<String>,
        /// Serve a writable volume read-only (frozen volumes always are).
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        iscsi: IscsiArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop serving a volume (open connections finish).
    Remove {
        volume: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List exports.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("cannot start the async runtime: {e}")))
}

pub(super) async fn connect(client: &ClientArgs) -> Result<StorageClient, Failure> {
    Ok(StorageClient::connect(&client.control).await?)
}

fn format_for(path: &Path, format: Option<String>) -> String {
    format.unwrap_or_else(|| {
        match path.extension().and_then(|e| e.to_str()) {
            Some("qcow2") => "qcow2",
            _ => "raw",
        }
        .to_string()
    })
}

pub fn run_volume(cmd: VolumeCommand) -> Result<ExitCode, Failure> {
    runtime()?.block_on(async move {
        match cmd {
            VolumeCommand::Create { size, name, client } => {
                let c = connect(&client).await?;
                let info = c.create(name.as_deref().unwrap_or(""), size).await?;
                output::volume(&info, client.json);
            }
            VolumeCommand::Import {
                file,
                name,
                format,
                writable,
                client,
            } => {
                let c = connect(&client).await?;
                let f = File::open(&file)
                    .map_err(|e| Failure::Local(format!("cannot open {}: {e}", file.display())))?;
                let origin = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let token = uuid::Uuid::new_v4().to_string();
                let bar = ProgressBar::new(&format!("importing {}", file.display()), client.json);
                let call = c.proxy().import(
                    name.as_deref().unwrap_or(""),
                    format.as_deref().unwrap_or(""),
                    Fd::from(&f),
                    writable,
                    &origin,
                    &token,
                );
                let reply = with_progress(&c, &token, &bar, call).await;
                bar.finish();
                let info = serde_json::from_str(&reply?)
                    .map_err(|e| Failure::Local(format!("unreadable reply: {e}")))?;
                output::volume(&info, client.json);
            }
            VolumeCommand::Export {
                volume,
                file,
                format,
                client,
            } => {
                let c = connect(&client).await?;
                let format = format_for(&file, format);
                let f = File::create(&file).map_err(|e| {
                    Failure::Local(format!("cannot create {}: {e}", file.display()))
                })?;
                let token = uuid::Uuid::new_v4().to_string();
                let bar =
                    ProgressBar::new(&format!("exporting to {}", file.display()), client.json);
                let call = c.proxy().export(&volume, &format, Fd::from(&f), &token);
                let result = with_progress(&c, &token, &bar, call).await;
                bar.finish();
                if let Err(e) = result {
                    let _ = std::fs::remove_file(&file);
                    return Err(e);
                }
                output::done(
                    &format!("exported {volume} to {} ({format})", file.display()),
                    client.json,
                );
            }
            VolumeCommand::Clone {
                parent,
                name,
                client,
            } => {
                let c = connect(&client).await?;
                let info = c
                    .clone_volume(&parent, name.as_deref().unwrap_or(""))
                    .await?;
                output::volume(&info, client.json);
            }
            VolumeCommand::Snapshot {
                volume,
                name,
                client,
            } => {
                let c = connect(&client).await?;
                let info = c.snapshot(&volume, name.as_deref().unwrap_or("")).await?;
                output::volume(&info, client.json);
            }
            VolumeCommand::Flatten { volume, client } => {
                let c = connect(&client).await?;
                let info = c.flatten(&volume).await?;
                output::volume(&info, client.json);
            }
            VolumeCommand::Delete { volume, client } => {
                connect(&client).await?.delete(&volume).await?;
                output::done(&format!("deleted {volume}"), client.json);
            }
            VolumeCommand::List { client } => {
                let list = connect(&client).await?.list().await?;
                output::volumes(&list, client.json);
            }
            VolumeCommand::Info { volume, client } => {
                let info = connect(&client).await?.info(&volume).await?;
                output::volume(&info, client.json);
            }
            VolumeCommand::Verify { deep, client } => {
                let report = connect(&client).await?.verify(deep).await?;
                output::verify(&report, client.json);
                if !report.problems.is_empty() {
                    return Ok(ExitCode::from(4));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Awaits `call` while showing the daemon's progress signals for `token` on `bar`.
async fn with_progress<T>(
    c: &StorageClient,
    token: &str,
    bar: &ProgressBar,
    call: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, Failure> {
    let mut signals = c
        .proxy()
        .receive_progress()
        .await
        .map_err(|e| Failure::Local(format!("cannot follow progress: {e}")))?;
    tokio::pin!(call);
    loop {
        tokio::select! {
            result = &mut call => {
                return result.map_err(|e| crate::control::client::ClientError::from(e).into());
            }
            Some(signal) = signals.next() => {
                if let Ok(args) = signal.args()
                    && *args.token() == token
                {
                    bar.update(*args.done(), *args.total());
                }
            }
        }
    }
}

pub fn run_export(cmd: ExportCommand) -> Result<ExitCode, Failure> {
    runtime()?.block_on(async move {
        match cmd {
            ExportCommand::Add {
                volume,
                allow,
                read_only,
                iscsi,
                client,
            } => {
                let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
                let c = connect(&client).await?;
                let rec = match iscsi.access()? {
                    Some(access) => {
                        c.export_add_iscsi(&volume, &allow, read_only, &access)
                            .await?
                    }
                    None => c.export_add(&volume, &allow, read_only).await?,
                };
                output::exports(&[rec], client.json);
            }
            ExportCommand::Remove { volume, client } => {
                connect(&client).await?.export_remove(&volume).await?;
                output::done(&format!("export of {volume} removed"), client.json);
            }
            ExportCommand::List { client } => {
                let list = connect(&client).await?.export_list().await?;
                output::exports(&list, client.json);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
