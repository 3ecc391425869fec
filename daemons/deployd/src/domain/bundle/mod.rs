//! Artifact bundles: HPE Image Streamer's zip of plan scripts, build plans, deployment plans
//! and golden images, read ([`read`]), extracted into the store ([`import`]) and written
//! ([`export`]) in HPE's exact layout:
//!
//! ```text
//! <uuid>_planscript.json  <uuid>_buildplan.json  <uuid>_deploymentplan.json
//! <uuid>_goldenimage.json + "<golden image name>" (a zip holding one raw image named <gi id>)
//! MANIFEST.MF             (5 "Key:Value" lines, see [`manifest`])
//! SHA256SUM.sha256sum     ("<file>\t<hex>" per file; SHA1SUM.sha1sum in 2016-2017 bundles)
//! ```
//!
//! Entries are streamed (never a whole image in memory). A bundle is flat: an entry name with
//! a `/`, `\`, `..`, a leading `/` or a duplicate is refused, and nothing is ever written to
//! the file system under a name taken from the zip.

pub mod checksum;
pub mod export;
pub mod image;
pub mod import;
pub mod manifest;
pub mod read;

use super::error::DomainError;

/// Largest JSON document read from a bundle.
pub const JSON_LIMIT: u64 = 16 << 20;

/// Failures reading, extracting or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle is malformed: layout, manifest, checksums, JSON.
    #[error("{0}")]
    Invalid(String),
    /// A golden image payload is not a usable image.
    #[error("{0}")]
    Image(String),
    /// A reference inside the bundle, or to an artifact, does not resolve.
    #[error("{0}")]
    Reference(String),
    /// Local I/O failed.
    #[error("{0}")]
    Io(String),
}

impl BundleError {
    pub fn io(what: impl std::fmt::Display) -> impl Fn(std::io::Error) -> Self {
        move |e| Self::Io(format!("{what}: {e}"))
    }
}

impl From<BundleError> for DomainError {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::Invalid(m) => DomainError::invalid("INVALID_ARTIFACT_BUNDLE", m),
            BundleError::Image(m) => DomainError::invalid("INVALID_GOLDEN_IMAGE_FILE", m),
            BundleError::Reference(m) => DomainError::invalid("UNRESOLVED_REFERENCE", m),
            BundleError::Io(m) => DomainError::Internal(m),
        }
    }
}

/// Refuses an entry name that is not a plain file name.
pub fn check_entry_name(name: &str) -> Result<(), BundleError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
        || name == "."
        || name.split(['/', '\\']).any(|p| p == "..")
        || name.starts_with("..");
    if bad {
        return Err(BundleError::Invalid(format!(
            "The bundle entry {name:?} is not a plain file name: bundles are flat, without \
             directories, '..' or absolute paths."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_must_be_plain() {
        for bad in [
            "../evil",
            "/etc/passwd",
            "a/b",
            "..",
            "a\\..\\b",
            "",
            "..evil",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "HPE - Developer 1.0 - UEFI Test Image - v1.00",
            "MANIFEST.MF",
            "x_planscript.json",
        ] {
            assert!(check_entry_name(good).is_ok(), "{good:?}");
        }
    }
}
