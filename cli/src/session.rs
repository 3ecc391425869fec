//! The saved login: appliance URL, session token and TLS choices, in a file only the user can
//! read (`~/.config/streamerctl/session.json`, or `$STREAMERCTL_SESSION`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// `https://host:port`, no trailing slash.
    pub url: String,
    pub token: String,
    pub user: String,
    /// The X-API-Version sent with every request.
    pub api_version: u32,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure: bool,
    /// Trust this CA certificate (PEM) in addition to the system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// Where the session is kept.
pub fn path() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("STREAMERCTL_SESSION").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(CliError::Usage(
                    "neither HOME nor STREAMERCTL_SESSION is set: cannot place the session file"
                        .into(),
                ));
            }
        },
    };
    Ok(config.join("streamerctl").join("session.json"))
}

/// The saved session; a usage error if there is none.
pub fn load() -> Result<Session, CliError> {
    let p = path()?;
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::Usage(format!(
                "not logged in (no {}): run `streamerctl login --url https://HOST:8443 --user Administrator`",
                p.display()
            )));
        }
        Err(e) => return Err(CliError::file("cannot read session file", &p, e)),
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::file(
            "corrupt session file (log in again)",
            &p,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// Saves `s` with mode 0600 (directory 0700), replacing any previous session atomically.
pub fn save(s: &Session) -> Result<PathBuf, CliError> {
    let p = path()?;
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CliError::file("cannot create", dir, e))?;
        // Only tighten a directory we own that is the default place.
        if dir.ends_with("streamerctl") {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let tmp = tmp_path(&p);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CliError::file("cannot write", &tmp, e))?;
    // The mode above applies only to new files.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::file("cannot chmod", &tmp, e))?;
    let text = serde_json::to_string_pretty(s).map_err(|e| {
        CliError::file(
            "cannot encode session",
            &tmp,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::file("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| CliError::file("cannot write", &p, e))?;
    Ok(p)
}

/// Forgets the session; true if there was one.
pub fn remove() -> Result<bool, CliError> {
    let p = path()?;
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::file("cannot remove", &p, e)),
    }
}

fn tmp_path(p: &Path) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    p.with_file_name(name)
}
