//! Secrets sealed at rest: a [`MetaStore`] over another that encrypts the fields a
//! [`SecretFields`] policy names (the domain's: password values of custom attributes,
//! compute modules' Redfish passwords) before they are stored, and decrypts them when read.
//! Everything above sees plain values; the file underneath never holds them.
//!
//! A sealed field is the string `sealed:v1:` + base64(nonce ‖ ciphertext), ChaCha20-Poly1305
//! over the field's JSON, with the record's key (`<kind>/<id>`) as associated data: a sealed
//! value copied into another record does not open. The 32-byte key is a file of its own
//! ([`SecretKey`], 0600), never the store's file: a copy of the store alone reveals no secret.
//! Values stored before sealing existed read as they are and are sealed when next written
//! (the state's opening rewrites them once).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde_json::Value;

use super::{Kind, MetaError, MetaStore, Op, Record, Revision};

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// Which fields of a record are secrets.
pub trait SecretFields: Send + Sync + std::fmt::Debug {
    /// Calls `f` on each secret field of `value`, a record of `kind`.
    fn each(&self, kind: Kind, value: &mut Value, f: &mut dyn FnMut(&mut Value));
}

/// The key secrets are sealed with.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The key's file in the state directory (0600).
pub const KEY_FILE: &str = "secrets.key";

impl SecretKey {
    /// Reads the key at `path`, or makes one there (32 random bytes, 0600) if there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<SecretKey> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => Ok(SecretKey(*Key::from_slice(&bytes))),
            Ok(bytes) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: {} bytes, not a 32-byte key; restore the key file that was made \
                     with this metadata store",
                    path.display(),
                    bytes.len()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                write_new_private(path, key.as_slice())?;
                Ok(SecretKey(key))
            }
            Err(e) => Err(e),
        }
    }
}

/// Creates `path` (0600, failing if it exists) with `data`, synced.
fn write_new_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Whether `v` is a sealed field.
pub fn is_sealed(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with(PREFIX))
}

/// The store that seals.
pub struct SealedStore {
    inner: Arc<dyn MetaStore>,
    cipher: ChaCha20Poly1305,
    fields: Arc<dyn SecretFields>,
}

impl std::fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore")
            .field("inner", &self.inner)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

fn record_key(kind: Kind, id: &str) -> String {
    format!("{}/{id}", kind.prefix())
}

impl SealedStore {
    pub fn new(inner: Arc<dyn MetaStore>, key: &SecretKey, fields: Arc<dyn SecretFields>) -> Self {
        Self {
            inner,
            cipher: ChaCha20Poly1305::new(&key.0),
            fields,
        }
    }

    fn seal(&self, kind: Kind, id: &str, value: &mut Value) -> Result<(), MetaError> {
        let aad = record_key(kind, id);
        let mut failed = None;
        self.fields.each(kind, value, &mut |field| {
            // Nothing to hide in an empty value; a sealed one is kept as it is.
            if field.is_null() || field.as_str() == Some("") || is_sealed(field) {
                return;
            }
            let plain = serde_json::to_vec(field).unwrap_or_default();
            let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
            match self.cipher.encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: aad.as_bytes(),
                },
            ) {
                Ok(sealed) => {
                    let mut bytes = nonce.to_vec();
                    bytes.extend_from_slice(&sealed);
                    *field = Value::String(format!("{PREFIX}{}", STANDARD.encode(bytes)));
                }
                Err(_) => failed = Some(format!("{aad}: sealing a secret failed")),
            }
        });
        failed.map_or(Ok(()), |m| Err(MetaError::Backend(m)))
    }

    fn open(&self, record: &mut Record) -> Result<(), MetaError> {
        let aad = record_key(record.kind, &record.id);
        let mut failed = None;
        self.fields
            .each(record.kind, &mut record.value, &mut |field| {
                let Some(text) = field.as_str().and_then(|s| s.strip_prefix(PREFIX)) else {
                    return;
                };
                let opened = STANDARD
                    .decode(text)
                    .ok()
                    .filter(|b| b.len() > NONCE_LEN)
                    .and_then(|b| {
                        let (nonce, sealed) = b.split_at(NONCE_LEN);
                        self.cipher
                            .decrypt(
                                Nonce::from_slice(nonce),
                                Payload {
                                    msg: sealed,
                                    aad: aad.as_bytes(),
                                },
                            )
                            .ok()
                    })
                    .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
                match opened {
                    Some(v) => *field = v,
                    None => {
                        failed = Some(format!(
                            "{aad}: a sealed secret does not open with this appliance's key \
                         (secrets.key beside the metadata store): restore the key file that \
                         was made with this store"
                        ))
                    }
                }
            });
        failed.map_or(Ok(()), |m| Err(MetaError::Backend(m)))
    }

    fn opened(&self, mut r: Record) -> Result<Record, MetaError> {
        self.open(&mut r)?;
        Ok(r)
    }

    /// The writes that seal every secret still stored in the clear (records written before
    /// sealing existed), each expecting the record's revision.
    pub fn unsealed_secrets(&self, kinds: &[Kind]) -> Result<Vec<Op>, MetaError> {
        let mut ops = Vec::new();
        for &kind in kinds {
            for r in self.inner.list(kind)? {
                let mut plain = false;
                let mut value = r.value.clone();
                self.fields.each(kind, &mut value, &mut |field| {
                    plain |= !(field.is_null() || field.as_str() == Some("") || is_sealed(field));
                });
                if plain {
                    let r = self.opened(r)?;
                    ops.push(Op::Put {
                        kind,
                        id: r.id,
                        value: r.value,
                        expect: super::Expect::Revision(r.revision),
                    });
                }
            }
        }
        Ok(ops)
    }
}

impl MetaStore for SealedStore {
    fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, MetaError> {
        self.inner
            .get(kind, id)?
            .map(|r| self.opened(r))
            .transpose()
    }

    fn list(&self, kind: Kind) -> Result<Vec<Record>, MetaError> {
        self.inner
            .list(kind)?
            .into_iter()
            .map(|r| self.opened(r))
            .collect()
    }

    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Vec<Record>, MetaError> {
        self.inner
            .list_prefix(kind, prefix)?
            .into_iter()
            .map(|r| self.opened(r))
            .collect()
    }

    fn apply(&self, mut ops: Vec<Op>) -> Result<Revision, MetaError> {
        for op in &mut ops {
            if let Op::Put {
                kind, id, value, ..
            } = op
            {
                self.seal(*kind, id, value)?;
            }
        }
        self.inner.apply(ops)
    }

    fn revision(&self) -> Result<Revision, MetaError> {
        self.inner.revision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Expect, RedbStore};
    use serde_json::json;

    #[derive(Debug)]
    struct Passwords;

    impl SecretFields for Passwords {
        fn each(&self, kind: Kind, value: &mut Value, f: &mut dyn FnMut(&mut Value)) {
            if kind == Kind::ServerHardware
                && let Some(p) = value.get_mut("password")
            {
                f(p);
            }
        }
    }

    fn put(id: &str, value: Value) -> Op {
        Op::Put {
            kind: Kind::ServerHardware,
            id: id.into(),
            value,
            expect: Expect::Any,
        }
    }

    #[test]
    fn secrets_are_sealed_in_the_store_and_plain_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn MetaStore> =
            Arc::new(RedbStore::open(&dir.path().join("m.redb")).unwrap());
        let key = SecretKey::load_or_create(&dir.path().join("secrets.key")).unwrap();
        let sealed = SealedStore::new(Arc::clone(&raw), &key, Arc::new(Passwords));
        sealed
            .apply(vec![put(
                "a",
                json!({"name": "a", "password": "s3cret-pw"}),
            )])
            .unwrap();
        let stored = raw.get(Kind::ServerHardware, "a").unwrap().unwrap();
        assert!(is_sealed(&stored.value["password"]), "{}", stored.value);
        assert!(!stored.value.to_string().contains("s3cret"));
        assert_eq!(stored.value["name"], "a");
        let seen = sealed.get(Kind::ServerHardware, "a").unwrap().unwrap();
        assert_eq!(seen.value["password"], "s3cret-pw");
        assert_eq!(
            sealed.list(Kind::ServerHardware).unwrap()[0].value,
            seen.value
        );
        // Not in the file either.
        drop((sealed, raw));
        let file = std::fs::read(dir.path().join("m.redb")).unwrap();
        assert!(
            !file.windows(9).any(|w| w == b"s3cret-pw"),
            "plain secret in the file"
        );
        // The key file is the owner's only.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secrets.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_record_and_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn MetaStore> =
            Arc::new(RedbStore::open(&dir.path().join("m.redb")).unwrap());
        let key = SecretKey::load_or_create(&dir.path().join("k1")).unwrap();
        let sealed = SealedStore::new(Arc::clone(&raw), &key, Arc::new(Passwords));
        sealed
            .apply(vec![put("a", json!({"password": "pw-a"}))])
            .unwrap();
        let stored = raw.get(Kind::ServerHardware, "a").unwrap().unwrap();
        // Moved into another record: refused.
        raw.apply(vec![put("b", stored.value.clone())]).unwrap();
        let e = sealed.get(Kind::ServerHardware, "b").unwrap_err();
        assert!(e.to_string().contains("secrets.key"), "{e}");
        // Another key: refused, saying which file to restore.
        let other = SecretKey::load_or_create(&dir.path().join("k2")).unwrap();
        let wrong = SealedStore::new(Arc::clone(&raw), &other, Arc::new(Passwords));
        assert!(wrong.get(Kind::ServerHardware, "a").is_err());
        // The same key loaded again opens it.
        let again = SecretKey::load_or_create(&dir.path().join("k1")).unwrap();
        let right = SealedStore::new(raw, &again, Arc::new(Passwords));
        assert_eq!(
            right.get(Kind::ServerHardware, "a").unwrap().unwrap().value["password"],
            "pw-a"
        );
        // A damaged key file is named.
        std::fs::write(dir.path().join("k3"), b"short").unwrap();
        let e = SecretKey::load_or_create(&dir.path().join("k3")).unwrap_err();
        assert!(e.to_string().contains("not a 32-byte key"), "{e}");
    }

    #[test]
    fn secrets_stored_in_the_clear_are_found_for_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn MetaStore> =
            Arc::new(RedbStore::open(&dir.path().join("m.redb")).unwrap());
        raw.apply(vec![
            put("old", json!({"password": "plain"})),
            put("empty", json!({"password": ""})),
        ])
        .unwrap();
        let key = SecretKey::load_or_create(&dir.path().join("k")).unwrap();
        let sealed = SealedStore::new(Arc::clone(&raw), &key, Arc::new(Passwords));
        assert_eq!(
            sealed
                .get(Kind::ServerHardware, "old")
                .unwrap()
                .unwrap()
                .value["password"],
            "plain"
        );
        let ops = sealed.unsealed_secrets(&[Kind::ServerHardware]).unwrap();
        assert_eq!(ops.len(), 1);
        sealed.apply(ops).unwrap();
        assert!(is_sealed(
            &raw.get(Kind::ServerHardware, "old").unwrap().unwrap().value["password"]
        ));
        assert!(
            sealed
                .unsealed_secrets(&[Kind::ServerHardware])
                .unwrap()
                .is_empty()
        );
    }
}
