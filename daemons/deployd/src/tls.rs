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
    // An empty file is what a power cut during a write by an older deployd left: nothing to
    // keep. Anything else is the operator's, and kept (a bad one fails the load, named).
    let present = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
    if present(&files.cert) && present(&files.key) {
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
    // Each file whole or not at all; the certificate last, so a cut in between regenerates.
    crate::services::files::write_private(&files.key, cert.key_pair.serialize_pem().as_bytes())
        .map_err(io(&files.key))?;
    crate::services::files::write_atomic(&files.cert, cert.cert.pem().as_bytes(), 0o644)
        .map_err(io(&files.cert))?;
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
        // No temporary file is left beside them.
        let names: Vec<_> = std::fs::read_dir(files.cert.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn an_empty_file_left_by_a_power_cut_is_replaced_and_a_bad_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_state_dir(dir.path());
        std::fs::create_dir_all(files.cert.parent().unwrap()).unwrap();
        std::fs::write(&files.cert, "").unwrap();
        std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        assert!(ensure_certificate(&files, &["localhost".into()]).unwrap());
        assert!(
            std::fs::read_to_string(&files.cert)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(!ensure_certificate(&files, &["localhost".into()]).unwrap());
        assert_eq!(
            std::fs::read_to_string(&files.cert).unwrap(),
            "not a certificate"
        );
    }
}
