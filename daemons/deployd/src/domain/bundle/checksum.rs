//! `SHA256SUM.sha256sum` / `SHA1SUM.sha1sum`: one `<file>\t<hex digest>` line per file of the
//! bundle except the checksum file itself.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::BundleError;

pub const SHA256_FILE: &str = "SHA256SUM.sha256sum";
pub const SHA1_FILE: &str = "SHA1SUM.sha1sum";

/// The digest a checksum file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha1,
}

impl Algorithm {
    pub fn for_file(name: &str) -> Option<Self> {
        match name {
            SHA256_FILE => Some(Self::Sha256),
            SHA1_FILE => Some(Self::Sha1),
            _ => None,
        }
    }
}

/// An incremental digest of either algorithm.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha1(Sha1),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha1 => Self::Sha1(Sha1::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
        }
    }

    pub fn hex(self) -> String {
        match self {
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha1(h) => hex::encode(h.finalize()),
        }
    }
}

/// Parses a checksum file into file name → lower-case hex digest.
pub fn parse(text: &str, file: &str) -> Result<BTreeMap<String, String>, BundleError> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        // HPE separates with a tab; sha256sum(1) with two spaces. Names may contain spaces,
        // so split at the last run of whitespace before the digest.
        let (name, digest) = match line.rsplit_once('\t') {
            Some(p) => p,
            None => line.rsplit_once("  ").ok_or_else(|| {
                BundleError::Invalid(format!(
                    "{file}: line {line:?} is not \"<file>\\t<digest>\"."
                ))
            })?,
        };
        let digest = digest.trim().to_ascii_lowercase();
        if digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BundleError::Invalid(format!(
                "{file}: the digest of {name:?} is not hexadecimal."
            )));
        }
        if out.insert(name.to_string(), digest).is_some() {
            return Err(BundleError::Invalid(format!(
                "{file}: {name:?} is listed twice."
            )));
        }
    }
    Ok(out)
}

/// Renders `(file, hex)` pairs as HPE does.
pub fn render(sums: &[(String, String)]) -> String {
    sums.iter().map(|(f, h)| format!("{f}\t{h}\n")).collect()
}

/// Copies `src` to `dst`, returning the digest of the bytes and how many there were; fails
/// once more than `limit` bytes come.
pub fn copy_hashing(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    algorithm: Algorithm,
    limit: u64,
) -> std::io::Result<(String, u64)> {
    let mut h = Hasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = src.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > limit {
            return Err(std::io::Error::other(format!(
                "more than {limit} bytes of content"
            )));
        }
        h.update(&buf[..k]);
        dst.write_all(&buf[..k])?;
    }
    Ok((h.hex(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tab_and_double_space_forms() {
        let m = parse(
            "a b_planscript.json\tABCDEF\nMANIFEST.MF  0123\n",
            SHA256_FILE,
        )
        .unwrap();
        assert_eq!(m["a b_planscript.json"], "abcdef");
        assert_eq!(m["MANIFEST.MF"], "0123");
        assert!(parse("x\tnot-hex\n", SHA256_FILE).is_err());
        assert!(parse("x\t00\nx\t00\n", SHA256_FILE).is_err());
    }

    #[test]
    fn copy_hashing_digests_and_bounds() {
        let mut out = Vec::new();
        let (h, n) = copy_hashing(&mut &b"abc"[..], &mut out, Algorithm::Sha256, 10).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(copy_hashing(&mut &b"abc"[..], &mut out, Algorithm::Sha1, 2).is_err());
    }
}
