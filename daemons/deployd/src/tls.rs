//! The HTTPS certificate: generated (self-signed) on first start and kept in the state
//! directory as `tls/cert.pem` and `tls/key.pem`. An operator replaces the two files with their
//! own and restarts deployd (or sends SIGHUP, which reloads them).

use std::path::{Path, PathBuf};

/// Where the certificate and key live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let dir = state_dir.join("tls");
        Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
}

/// Makes sure a certificate exists, generating a self-signed one for `names` (host names or
/// addresses) if there is none. Returns whether one was generated.
pub fn ensure_certificate(files: &TlsFiles, names: &[String]) -> Result<bool, TlsError> {
    if files.cert.exists() && files.key.exists() {
        return Ok(false);
    }
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| TlsError::Io { path, source }
    };
    if let Some(dir) = files.cert.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let cert = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    crate::files::write_private(&files.key, cert.key_pair.serialize_pem().as_bytes())
        .map_err(io(&files.key))?;
    std::fs::write(&files.cert, cert.cert.pem()).map_err(io(&files.cert))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_keeps_an_operators_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_state_dir(dir.path());
        assert!(ensure_certificate(&files, &["localhost".into()]).unwrap());
        let first = std::fs::read(&files.cert).unwrap();
        assert!(String::from_utf8_lossy(&first).contains("BEGIN CERTIFICATE"));
        assert!(!ensure_certificate(&files, &["localhost".into()]).unwrap());
        assert_eq!(std::fs::read(&files.cert).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
