//! Pairing: two single appliances and a witness become a pair.
//!
//! 1. On the first appliance (the **seed**, whose artifacts the pair keeps), an administrator
//!    asks for a pairing ([`offer`]): a cluster CA is made (rcgen), the seed's own etcd
//!    certificate issued, and two one-time join tokens (one for the other appliance, one for
//!    the witness), valid [`TOKEN_LIFETIME`], are shown once. Only their SHA-256 is kept, in
//!    `STATE/pairing.json`.
//! 2. The other appliance joins ([`request_join`]) over the enclosure network: it makes its
//!    key and a certificate request, and sends them with the token to the seed's API. A token
//!    is `st1.<secret>.<fingerprint>`: the fingerprint is the SHA-256 of the seed's HTTPS
//!    certificate, so the joiner talks to that appliance and no other (as kubeadm's discovery
//!    hash does), and the secret proves the joiner was given the token.
//! 3. The seed checks the token (known, unused, unexpired, for that role) and the version
//!    ([`admit`]), issues the joiner's certificate, and answers with the pair's description.
//!    When the other node has joined, both write `cluster.json` ([`install`]) and restart
//!    their services as pair members; the witness joins with its own token (`clusterd witness
//!    join`) once the other node has.
//!
//! Every member's certificate is signed by the pair's CA and names the member's address: etcd
//! runs with mutual TLS for peers and clients (`--client-cert-auth`, `--peer-client-cert-auth`),
//! so a certificate of another CA is refused, and clusterd and deployd connect with theirs
//! ([`connect_options`]).
//!
//! Unpairing ([`leave`], [`remove_files`]) takes a member out of etcd and deletes the pair's
//! files; the caller keeps the records (deployd copies them to its own store first).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{ClusterConfig, FILE, Member, MemberRole, TlsFiles, VirtualIp};

/// The pending pairing on the seed (token hashes, the CA, the members so far).
pub const PENDING: &str = "pairing.json";
/// The pair's certificate files, in the state directory.
pub const TLS_DIR: &str = "tls";
/// How long a join token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// The version both sides must run: the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the seed takes join requests (deployd's API).
pub const JOIN_PATH: &str = "/rest/appliance/pair/join-requests";
/// The name the witness gets.
pub const WITNESS_NAME: &str = "witness";

const TOKEN_PREFIX: &str = "st1";
/// How long leaving waits for the other members to be connected.
const LEAVE_WAIT: Duration = Duration::from_secs(20);

/// Why a pairing step failed. [`PairError::code`] and [`PairError::status`] are what the API
/// answers (HPE's error body).
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("the join token is not valid: {0}")]
    TokenInvalid(String),
    #[error("the join token expired at {0}")]
    TokenExpired(String),
    #[error("the join token was already used (by {0})")]
    TokenUsed(String),
    #[error(
        "the versions differ: this appliance runs Streamer {ours}, the joining member {theirs}"
    )]
    VersionMismatch { ours: String, theirs: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the other appliance has not joined yet: the witness joins after it")]
    NotFormed,
    #[error("this appliance is already a pair member ({0})")]
    AlreadyPaired(String),
    #[error("the appliance at {at} refused: {message}")]
    Refused {
        at: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificate(String),
}

impl PairError {
    /// HPE's `errorCode`.
    pub fn code(&self) -> &str {
        match self {
            PairError::TokenInvalid(_) => "JOIN_TOKEN_INVALID",
            PairError::TokenExpired(_) => "JOIN_TOKEN_EXPIRED",
            PairError::TokenUsed(_) => "JOIN_TOKEN_USED",
            PairError::VersionMismatch { .. } => "VERSION_MISMATCH",
            PairError::Conflict(_) => "PAIRING_CONFLICT",
            PairError::NotFormed => "PAIR_NOT_FORMED",
            PairError::AlreadyPaired(_) => "ALREADY_PAIRED",
            PairError::Refused { code, .. } => code,
            PairError::Unreachable(_) => "PEER_UNREACHABLE",
            PairError::Invalid(_) => "INVALID_PAIRING_REQUEST",
            PairError::Io { .. } | PairError::Certificate(_) => "PAIRING_FAILED",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            PairError::TokenInvalid(_) | PairError::TokenExpired(_) | PairError::TokenUsed(_) => {
                401
            }
            PairError::VersionMismatch { .. }
            | PairError::Conflict(_)
            | PairError::NotFormed
            | PairError::AlreadyPaired(_) => 409,
            PairError::Refused { status, .. } => *status,
            PairError::Unreachable(_) => 502,
            PairError::Invalid(_) => 400,
            PairError::Io { .. } | PairError::Certificate(_) => 500,
        }
    }

    /// What the operator does about it.
    pub fn recommended_action(&self) -> &'static str {
        match self {
            PairError::TokenInvalid(_) => {
                "Copy the join token exactly as the first appliance showed it (POST \
                 /rest/appliance/pair there), or make a new one."
            }
            PairError::TokenExpired(_) | PairError::TokenUsed(_) => {
                "Make a new join token on the first appliance (POST /rest/appliance/pair)."
            }
            PairError::VersionMismatch { .. } => {
                "Update both appliances to the same Streamer version, then pair them."
            }
            PairError::NotFormed => {
                "Join the second appliance first; the witness's join retries until the token \
                 expires."
            }
            PairError::AlreadyPaired(_) => {
                "Unpair it first (DELETE /rest/appliance/pair?confirm=true)."
            }
            PairError::Unreachable(_) => {
                "Check the address and that the appliance's API answers on the enclosure \
                 network."
            }
            _ => "Correct the request and retry.",
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PairError + '_ {
        move |source| PairError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

fn cert_err(e: impl std::fmt::Display) -> PairError {
    PairError::Certificate(e.to_string())
}

/// A join token: a secret and the fingerprint of the seed's HTTPS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub secret: [u8; 16],
    pub fingerprint: [u8; 32],
}

impl JoinToken {
    fn new(fingerprint: [u8; 32]) -> JoinToken {
        let mut secret = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut secret);
        JoinToken {
            secret,
            fingerprint,
        }
    }

    pub fn parse(s: &str) -> Result<JoinToken, PairError> {
        let bad = |why: &str| PairError::TokenInvalid(why.to_string());
        let mut parts = s.trim().split('.');
        if parts.next() != Some(TOKEN_PREFIX) {
            return Err(bad("it does not start with \"st1.\""));
        }
        let (Some(secret), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("it has not three parts separated by dots"));
        };
        let mut t = JoinToken {
            secret: [0; 16],
            fingerprint: [0; 32],
        };
        hex::decode_to_slice(secret, &mut t.secret)
            .map_err(|_| bad("its secret is not 32 hexadecimal digits"))?;
        hex::decode_to_slice(fp, &mut t.fingerprint)
            .map_err(|_| bad("its fingerprint is not 64 hexadecimal digits"))?;
        Ok(t)
    }

    fn secret_hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret))
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}.{}.{}",
            hex::encode(self.secret),
            hex::encode(self.fingerprint)
        )
    }
}

/// The SHA-256 of the first certificate in `pem`.
pub fn fingerprint(pem: &str) -> Result<[u8; 32], PairError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(cert_err)?;
    Ok(Sha256::digest(der.as_ref()).into())
}

/// The pair's certificate authority.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ca {
    pub cluster_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params(cluster_id: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Streamer");
    dn.push(DnType::CommonName, format!("Streamer pair {cluster_id} CA"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// Certificates are valid from an hour ago (clocks differ a little) for 20 years: the pair's
/// trust is its CA, not dates, and an appliance must not stop by itself one day.
fn validity(p: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(365 * 20);
}

impl Ca {
    pub fn new(cluster_id: &str) -> Result<Ca, PairError> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut p = ca_params(cluster_id);
        validity(&mut p);
        let cert = p.self_signed(&key).map_err(cert_err)?;
        Ok(Ca {
            cluster_id: cluster_id.into(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a member's certificate for the key of `csr_pem`, naming `name` and `address`
    /// (whatever the request asked for), for server and client use.
    pub fn issue(&self, csr_pem: &str, name: &str, address: IpAddr) -> Result<String, PairError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(cert_err)?;
        // The issuer: the same name and key as the stored CA certificate.
        let issuer = ca_params(&self.cluster_id)
            .self_signed(&key)
            .map_err(cert_err)?;
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PairError::Invalid(format!("the certificate request: {e}")))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Streamer");
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.subject_alt_names = vec![
            SanType::IpAddress(address),
            SanType::DnsName(
                name.try_into()
                    .map_err(|_| PairError::Invalid(format!("{name:?} is not a host name")))?,
            ),
        ];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p);
        csr.params = p;
        Ok(csr.signed_by(&issuer, &key).map_err(cert_err)?.pem())
    }
}

/// A member's new key and its certificate request.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub key_pem: String,
    pub csr_pem: String,
}

pub fn credentials(name: &str) -> Result<Credentials, PairError> {
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    let csr = p.serialize_request(&key).map_err(cert_err)?;
    Ok(Credentials {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(cert_err)?,
    })
}

/// One join token as the seed keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingToken {
    role: MemberRole,
    sha256: String,
    /// Unix seconds.
    expires_at: i64,
    used_by: Option<String>,
}

/// The pairing in progress on the seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub ca: Ca,
    pub seed: String,
    pub members: Vec<Member>,
    pub virtual_ip: VirtualIp,
    tokens: Vec<PendingToken>,
}

impl Pending {
    pub fn load(state_dir: &Path) -> Result<Option<Pending>, PairError> {
        let path = state_dir.join(PENDING);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| PairError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PairError::io(&path)(e)),
        }
    }

    fn save(&self, state_dir: &Path) -> Result<(), PairError> {
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| PairError::Invalid(e.to_string()))?;
        write_private(&state_dir.join(PENDING), &text)
    }

    /// When its tokens expire (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.tokens.iter().map(|t| t.expires_at).max().unwrap_or(0)
    }

    /// Whether the other node has joined (the pair is formed; the witness may follow).
    pub fn formed(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| t.role == MemberRole::Node && t.used_by.is_some())
    }
}

/// What an administrator asks for on the seed.
#[derive(Debug, Clone)]
pub struct PairPlan {
    /// The seed's name in the pair.
    pub name: String,
    /// The seed's address on the enclosure network.
    pub address: IpAddr,
    pub virtual_ip: VirtualIp,
    /// Where the witness runs.
    pub witness: IpAddr,
    /// The seed's storage address (its OS volumes' floating address), if the pair
    /// replicates them; the other node must then give one too.
    pub storage_ip: Option<VirtualIp>,
    /// The seed's HTTPS certificate (PEM), whose fingerprint the tokens carry.
    pub api_certificate_pem: String,
}

/// The tokens, shown once.
#[derive(Debug, Clone)]
pub struct Offer {
    pub cluster_id: String,
    pub node_token: JoinToken,
    pub witness_token: JoinToken,
    pub expires_at: OffsetDateTime,
}

fn member(name: &str, role: MemberRole, address: IpAddr) -> Member {
    Member {
        name: name.into(),
        role,
        address,
        etcd_client_port: crate::config::ETCD_CLIENT_PORT,
        etcd_peer_port: crate::config::ETCD_PEER_PORT,
        storage_ip: None,
        replication_port: crate::config::REPLICATION_PORT,
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PairError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(PairError::io(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(PairError::io(&tmp))?;
    f.write_all(bytes).map_err(PairError::io(&tmp))?;
    f.sync_all().map_err(PairError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(PairError::io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PairError::io(dir))
}

/// The pair's certificate files in `state_dir`.
pub fn tls_files(state_dir: &Path) -> TlsFiles {
    let dir = state_dir.join(TLS_DIR);
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

fn write_tls(state_dir: &Path, ca: &str, cert: &str, key: &str) -> Result<TlsFiles, PairError> {
    let files = tls_files(state_dir);
    write_private(&files.key, key.as_bytes())?;
    write_private(&files.cert, cert.as_bytes())?;
    write_private(&files.ca, ca.as_bytes())?;
    Ok(files)
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// Starts a pairing on the seed (replacing one in progress, whose tokens stop working).
pub fn offer(state_dir: &Path, plan: PairPlan, now: OffsetDateTime) -> Result<Offer, PairError> {
    if let Some(cfg) =
        ClusterConfig::load(state_dir).map_err(|e| PairError::Invalid(e.to_string()))?
    {
        return Err(PairError::AlreadyPaired(cfg.cluster_id));
    }
    if plan.witness == plan.address {
        return Err(PairError::Invalid(
            "the witness must run on another host than this appliance".into(),
        ));
    }
    let fp = fingerprint(&plan.api_certificate_pem)?;
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    let cluster_id = format!("streamer-{}", hex::encode(id));
    let ca = Ca::new(&cluster_id)?;
    let mine = credentials(&plan.name)?;
    let cert = ca.issue(&mine.csr_pem, &plan.name, plan.address)?;
    write_tls(state_dir, &ca.cert_pem, &cert, &mine.key_pem)?;
    let (node_token, witness_token) = (JoinToken::new(fp), JoinToken::new(fp));
    let expires_at = now + TOKEN_LIFETIME;
    let pending = Pending {
        ca,
        seed: plan.name.clone(),
        members: vec![
            Member {
                storage_ip: plan.storage_ip.clone(),
                ..member(&plan.name, MemberRole::Node, plan.address)
            },
            member(WITNESS_NAME, MemberRole::Witness, plan.witness),
        ],
        virtual_ip: plan.virtual_ip,
        tokens: [
            (MemberRole::Node, &node_token),
            (MemberRole::Witness, &witness_token),
        ]
        .into_iter()
        .map(|(role, t)| PendingToken {
            role,
            sha256: t.secret_hash(),
            expires_at: unix(expires_at),
            used_by: None,
        })
        .collect(),
    };
    pending.save(state_dir)?;
    Ok(Offer {
        cluster_id,
        node_token,
        witness_token,
        expires_at,
    })
}

/// A member's request to join, sent to the seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub token: String,
    pub version: String,
    pub name: String,
    pub address: IpAddr,
    pub role: MemberRole,
    /// The member's certificate request (PEM).
    pub csr: String,
    /// A node's storage address (its OS volumes' floating address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_ip: Option<VirtualIp>,
}

/// The seed's answer: the pair's description for the joiner, its certificate and the CA's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinAnswer {
    pub config: ClusterConfig,
    pub ca: String,
    pub cert: String,
    /// Filled in by deployd for the other node: the pair's key for sealed secrets (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<String>,
}

/// One pairing step at a time on the seed.
static ADMITTING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The seed checks a join request and, if it holds, issues the member's certificate. When
/// the other node joins, the seed's own `cluster.json` is written: it is paired from then on.
pub fn admit(
    state_dir: &Path,
    req: &JoinRequest,
    now: OffsetDateTime,
) -> Result<JoinAnswer, PairError> {
    let _one = ADMITTING.lock();
    let token = JoinToken::parse(&req.token)?;
    let Some(mut pending) = Pending::load(state_dir)? else {
        return Err(PairError::TokenInvalid(
            "no pairing is in progress on this appliance".into(),
        ));
    };
    let hash = token.secret_hash();
    let Some(i) = pending.tokens.iter().position(|t| t.sha256 == hash) else {
        return Err(PairError::TokenInvalid(
            "this appliance did not make it (or made a newer pairing since)".into(),
        ));
    };
    let t = &pending.tokens[i];
    if let Some(by) = &t.used_by {
        return Err(PairError::TokenUsed(by.clone()));
    }
    if unix(now) >= t.expires_at {
        let at = OffsetDateTime::from_unix_timestamp(t.expires_at)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        return Err(PairError::TokenExpired(at));
    }
    if t.role != req.role {
        return Err(PairError::TokenInvalid(format!(
            "it is the token for the {}, not for a {}",
            role_name(t.role),
            role_name(req.role)
        )));
    }
    if req.version != VERSION {
        return Err(PairError::VersionMismatch {
            ours: VERSION.into(),
            theirs: req.version.clone(),
        });
    }
    let name = match req.role {
        MemberRole::Witness => {
            if !pending.formed() {
                return Err(PairError::NotFormed);
            }
            let planned = pending
                .members
                .iter()
                .find(|m| m.role == MemberRole::Witness)
                .map(|m| m.address);
            if planned != Some(req.address) {
                return Err(PairError::Conflict(format!(
                    "the pair was planned with its witness at {}, not {}",
                    planned.map(|a| a.to_string()).unwrap_or_default(),
                    req.address
                )));
            }
            WITNESS_NAME.to_string()
        }
        MemberRole::Node => {
            if let Some(m) = pending.members.iter().find(|m| m.address == req.address) {
                return Err(PairError::Conflict(format!(
                    "{} is already the address of {}",
                    req.address, m.name
                )));
            }
            check_storage_ip(&pending, req)?;
            let mut name = req.name.clone();
            if pending.members.iter().any(|m| m.name == name) {
                name = format!("{name}-2");
            }
            pending.members.insert(
                1,
                Member {
                    storage_ip: req.storage_ip.clone(),
                    ..member(&name, MemberRole::Node, req.address)
                },
            );
            name
        }
    };
    let address = req.address;
    let cert = pending.ca.issue(&req.csr, &name, address)?;
    pending.tokens[i].used_by = Some(format!("{name} ({address})"));
    let config_for = |me: &str, vip: Option<VirtualIp>| ClusterConfig {
        cluster_id: pending.ca.cluster_id.clone(),
        me: me.into(),
        members: pending.members.clone(),
        virtual_ip: vip,
        lease_ttl_seconds: crate::config::DEFAULT_LEASE_TTL,
        tls: None,
        join_existing: false,
        seed: Some(pending.seed.clone()),
    };
    let answer = JoinAnswer {
        config: config_for(
            &name,
            (req.role == MemberRole::Node).then(|| pending.virtual_ip.clone()),
        ),
        ca: pending.ca.cert_pem.clone(),
        cert,
        secrets_key: None,
    };
    if pending.tokens.iter().all(|t| t.used_by.is_some()) {
        let path = state_dir.join(PENDING);
        std::fs::remove_file(&path).map_err(PairError::io(&path))?;
    } else {
        pending.save(state_dir)?;
    }
    if req.role == MemberRole::Node {
        let mut mine = config_for(&pending.seed, Some(pending.virtual_ip.clone()));
        mine.tls = Some(tls_files(state_dir));
        mine.save(state_dir)
            .map_err(PairError::io(&state_dir.join(FILE)))?;
    }
    Ok(answer)
}

/// A joining node gives a storage address when the seed has one (the pair replicates OS
/// volumes), one of its own.
fn check_storage_ip(pending: &Pending, req: &JoinRequest) -> Result<(), PairError> {
    let seed = pending.members.iter().find(|m| m.role == MemberRole::Node);
    let Some(seed_ip) = seed.and_then(|m| m.storage_ip.as_ref()) else {
        return Ok(());
    };
    let Some(theirs) = &req.storage_ip else {
        return Err(PairError::Conflict(
            "the pair replicates OS volumes: give this appliance's storage address \
             (storageIp, like 10.0.0.12/24), the address its compute modules boot from"
                .into(),
        ));
    };
    let taken = pending.members.iter().any(|m| m.address == theirs.address)
        || seed_ip.address == theirs.address
        || pending.virtual_ip.address == theirs.address
        || req.address == theirs.address;
    if taken {
        return Err(PairError::Conflict(format!(
            "{} is already an address of the pair: a storage address is an address of its own",
            theirs.address
        )));
    }
    Ok(())
}

fn role_name(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Node => "other appliance",
        MemberRole::Witness => "witness",
    }
}

/// The joiner writes what the seed answered: its key, its certificate, the CA, and
/// `cluster.json` last (the file that makes it a pair member).
pub fn install(state_dir: &Path, answer: &JoinAnswer, key_pem: &str) -> Result<(), PairError> {
    if let Some(cfg) =
        ClusterConfig::load(state_dir).map_err(|e| PairError::Invalid(e.to_string()))?
    {
        return Err(PairError::AlreadyPaired(cfg.cluster_id));
    }
    let files = write_tls(state_dir, &answer.ca, &answer.cert, key_pem)?;
    let mut cfg = answer.config.clone();
    cfg.tls = Some(files);
    cfg.save(state_dir)
        .map_err(PairError::io(&state_dir.join(FILE)))
}

/// Sends `req` to the seed's API at `api` (`https://host:port`), trusting only the
/// certificate whose fingerprint the token names.
pub async fn request_join(api: &str, req: &JoinRequest) -> Result<JoinAnswer, PairError> {
    let token = JoinToken::parse(&req.token)?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(cert_err)?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Pinned(token.fingerprint)))
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| PairError::Unreachable(e.to_string()))?;
    let url = format!("{}{JOIN_PATH}", api.trim_end_matches('/'));
    let resp = client.post(&url).json(req).send().await.map_err(|e| {
        PairError::Unreachable(format!(
            "{url}: {} (a certificate other than the one the token names is refused)",
            error_chain(&e)
        ))
    })?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return resp
            .json()
            .await
            .map_err(|e| PairError::Unreachable(format!("{url}: not a join answer: {e}")));
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    Err(PairError::Refused {
        at: api.into(),
        status,
        code: body["errorCode"].as_str().unwrap_or("REFUSED").into(),
        message: body["message"].as_str().unwrap_or("no reason given").into(),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Trusts exactly one certificate: the one whose SHA-256 the join token carries.
#[derive(Debug)]
struct Pinned([u8; 32]);

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen == self.0 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the appliance's certificate (SHA-256 {}) is not the one the join token names",
                hex::encode(seen)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The etcd client options for a member with `tls` (mutual TLS with the pair's CA).
pub fn connect_options(tls: &TlsFiles) -> Result<etcd_client::TlsOptions, PairError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(PairError::io(p));
    Ok(etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?))
        .identity(etcd_client::Identity::from_pem(
            read(&tls.cert)?,
            read(&tls.key)?,
        )))
}

/// Takes this member out of the pair's etcd (the others keep going without it).
pub async fn leave(cfg: &ClusterConfig) -> Result<(), PairError> {
    let unreachable =
        |e: etcd_client::Error| PairError::Unreachable(format!("the pair's etcd: {e}"));
    let endpoints: Vec<String> = cfg.members.iter().map(|m| cfg.endpoint_of(m)).collect();
    let mut opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    if let Some(tls) = &cfg.tls {
        opts = opts.with_tls(connect_options(tls)?);
    }
    let mut client = etcd_client::Client::connect(endpoints, Some(opts))
        .await
        .map_err(unreachable)?;
    let members = client.member_list().await.map_err(unreachable)?;
    let Some(me) = members.members().iter().find(|m| m.name() == cfg.me) else {
        return Ok(());
    };
    // etcd refuses to remove a member while the others are not all connected (the cluster
    // left would have no quorum): a member that has just started counts after a few seconds.
    let end = std::time::Instant::now() + LEAVE_WAIT;
    loop {
        match client.member_remove(me.id()).await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.to_string().contains("unhealthy cluster")
                    && std::time::Instant::now() < end =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(PairError::Unreachable(format!(
                    "the pair's etcd does not let this member leave ({e}): the other members \
                     must be up"
                )));
            }
        }
    }
}

/// Deletes the pair's files: `cluster.json` first (then this member is no longer paired,
/// whatever else a power cut leaves), then the certificates, etcd's data and any pending
/// pairing.
pub fn remove_files(state_dir: &Path) -> Result<(), PairError> {
    let file = state_dir.join(FILE);
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PairError::io(&file)(e)),
    }
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(PairError::io(state_dir))?;
    for dir in [TLS_DIR, "etcd"] {
        let p = state_dir.join(dir);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(PairError::io(&p))?;
        }
    }
    let p = state_dir.join(PENDING);
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_file(state_dir.join(storaged::replication::PairFile::FILE));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(api_pem: &str) -> PairPlan {
        PairPlan {
            name: "node-a".into(),
            address: "10.77.0.1".parse().unwrap(),
            virtual_ip: VirtualIp {
                address: "10.77.0.100".parse().unwrap(),
                prefix_len: 24,
                interface: "eth0".into(),
            },
            witness: "10.77.0.3".parse().unwrap(),
            storage_ip: None,
            api_certificate_pem: api_pem.into(),
        }
    }

    fn request(token: &JoinToken, role: MemberRole, last: u8) -> (JoinRequest, Credentials) {
        let creds = credentials("node-b").unwrap();
        let req = JoinRequest {
            token: token.to_string(),
            version: VERSION.into(),
            name: if role == MemberRole::Node {
                "node-b".into()
            } else {
                WITNESS_NAME.into()
            },
            address: IpAddr::from([10, 77, 0, last]),
            role,
            csr: creds.csr_pem.clone(),
            storage_ip: None,
        };
        (req, creds)
    }

    fn api_cert() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn tokens_print_and_parse_and_bad_ones_are_named() {
        let t = JoinToken::new([7; 32]);
        let s = t.to_string();
        assert!(s.starts_with("st1.") && s.len() == 4 + 32 + 1 + 64, "{s}");
        assert_eq!(JoinToken::parse(&format!("  {s}\n")).unwrap(), t);
        for bad in ["", "st1.abc", "st2.00.00", &s.replace("st1.", "st1.zz")] {
            let e = JoinToken::parse(bad).unwrap_err();
            assert_eq!(e.code(), "JOIN_TOKEN_INVALID", "{bad}: {e}");
        }
    }

    #[test]
    fn a_pairing_admits_the_node_then_the_witness_once_each() {
        let seed = tempfile::tempdir().unwrap();
        let pem = api_cert();
        let now = OffsetDateTime::now_utc();
        let offer = offer(seed.path(), plan(&pem), now).unwrap();
        assert_eq!(offer.node_token.fingerprint, fingerprint(&pem).unwrap());
        // The tokens themselves are not kept.
        let kept = std::fs::read_to_string(seed.path().join(PENDING)).unwrap();
        assert!(!kept.contains(&hex::encode(offer.node_token.secret)));

        // The witness before the node: not yet.
        let (w, w_creds) = request(&offer.witness_token, MemberRole::Witness, 3);
        assert_eq!(
            admit(seed.path(), &w, now).unwrap_err().code(),
            "PAIR_NOT_FORMED"
        );
        // The node's token for the witness, a wrong version, a forged secret: refused, and
        // nothing changes.
        let (mut b, b_creds) = request(&offer.node_token, MemberRole::Node, 2);
        let mut wrong_role = b.clone();
        wrong_role.role = MemberRole::Witness;
        assert_eq!(
            admit(seed.path(), &wrong_role, now).unwrap_err().code(),
            "JOIN_TOKEN_INVALID"
        );
        b.version = "0.0.1".into();
        let e = admit(seed.path(), &b, now).unwrap_err();
        assert_eq!((e.code(), e.status()), ("VERSION_MISMATCH", 409));
        b.version = VERSION.into();
        let mut forged = offer.node_token.clone();
        forged.secret[0] ^= 1;
        let mut f = b.clone();
        f.token = forged.to_string();
        assert_eq!(
            admit(seed.path(), &f, now).unwrap_err().code(),
            "JOIN_TOKEN_INVALID"
        );
        // Expired.
        let late = now + TOKEN_LIFETIME + Duration::from_secs(1);
        let e = admit(seed.path(), &b, late).unwrap_err();
        assert_eq!((e.code(), e.status()), ("JOIN_TOKEN_EXPIRED", 401));
        assert!(!seed.path().join(FILE).exists());

        // The node joins: both sides are paired.
        let answer = admit(seed.path(), &b, now).unwrap();
        assert_eq!(answer.config.me, "node-b");
        assert_eq!(answer.config.seed.as_deref(), Some("node-a"));
        assert_eq!(answer.config.members.len(), 3);
        let mine = ClusterConfig::load(seed.path()).unwrap().unwrap();
        assert_eq!(mine.me, "node-a");
        assert!(mine.tls.is_some() && mine.virtual_ip.is_some());
        let joiner = tempfile::tempdir().unwrap();
        install(joiner.path(), &answer, &b_creds.key_pem).unwrap();
        let theirs = ClusterConfig::load(joiner.path()).unwrap().unwrap();
        assert_eq!(theirs.members, mine.members);
        // Once only.
        let e = admit(seed.path(), &b, now).unwrap_err();
        assert_eq!(e.code(), "JOIN_TOKEN_USED");
        assert!(e.to_string().contains("node-b (10.77.0.2)"), "{e}");

        // The witness: from its planned address only.
        let mut elsewhere = w.clone();
        elsewhere.address = "10.77.0.9".parse().unwrap();
        assert_eq!(
            admit(seed.path(), &elsewhere, now).unwrap_err().code(),
            "PAIRING_CONFLICT"
        );
        let wa = admit(seed.path(), &w, now).unwrap();
        assert_eq!(
            (wa.config.me.as_str(), wa.config.virtual_ip.is_none()),
            ("witness", true)
        );
        let wdir = tempfile::tempdir().unwrap();
        install(wdir.path(), &wa, &w_creds.key_pem).unwrap();
        // Every token used: the pending pairing is gone, so nothing more is admitted.
        assert!(!seed.path().join(PENDING).exists());
        assert_eq!(
            admit(seed.path(), &w, now).unwrap_err().code(),
            "JOIN_TOKEN_INVALID"
        );
        // A paired appliance makes no new pairing.
        assert_eq!(
            offer_again(seed.path(), &pem).unwrap_err().code(),
            "ALREADY_PAIRED"
        );
        // Unpairing removes the pair's files.
        remove_files(joiner.path()).unwrap();
        assert!(ClusterConfig::load(joiner.path()).unwrap().is_none());
        assert!(!joiner.path().join(TLS_DIR).exists());
    }

    fn offer_again(dir: &Path, pem: &str) -> Result<Offer, PairError> {
        offer(dir, plan(pem), OffsetDateTime::now_utc())
    }

    #[test]
    fn with_a_storage_address_the_other_node_gives_one_of_its_own() {
        let seed = tempfile::tempdir().unwrap();
        let pem = api_cert();
        let now = OffsetDateTime::now_utc();
        let sip = |last: u8| VirtualIp {
            address: IpAddr::from([10, 77, 0, last]),
            prefix_len: 24,
            interface: "eth0".into(),
        };
        let mut p = plan(&pem);
        p.storage_ip = Some(sip(11));
        let offer = offer(seed.path(), p, now).unwrap();
        let (mut b, _) = request(&offer.node_token, MemberRole::Node, 2);
        for (given, why) in [
            (None, "give this appliance's storage address"),
            (Some(sip(11)), "already an address of the pair"),
            (Some(sip(100)), "already an address of the pair"),
            (Some(sip(2)), "already an address of the pair"),
        ] {
            b.storage_ip = given;
            let e = admit(seed.path(), &b, now).unwrap_err();
            assert_eq!(e.code(), "PAIRING_CONFLICT", "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
        b.storage_ip = Some(sip(12));
        let answer = admit(seed.path(), &b, now).unwrap();
        let storage: Vec<_> = answer
            .config
            .nodes()
            .map(|m| m.storage_ip.as_ref().map(|s| s.address.to_string()))
            .collect();
        assert_eq!(
            storage,
            [Some("10.77.0.11".into()), Some("10.77.0.12".into())]
        );
        // Each node's storaged replicates to the other's replication port.
        let seeds = ClusterConfig::load(seed.path()).unwrap().unwrap();
        let rep = seeds.replication().unwrap();
        assert_eq!(rep.node, "node-a");
        assert_eq!(rep.peer.to_string(), "10.77.0.2:10810");
        let saved = storaged::replication::PairFile::load(seed.path()).unwrap();
        assert_eq!(saved, rep, "written beside cluster.json");
    }

    #[test]
    fn member_certificates_chain_to_the_pairs_ca_only() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, UnixTime};
        let ca = Ca::new("c1").unwrap();
        let creds = credentials("node-b").unwrap();
        let cert = ca
            .issue(&creds.csr_pem, "node-b", "10.77.0.2".parse().unwrap())
            .unwrap();
        let verify = |ca_pem: &str| {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
                .unwrap();
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap();
            let end = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
            v.verify_server_cert(
                &end,
                &[],
                &rustls::pki_types::ServerName::try_from("10.77.0.2").unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
        };
        use rustls::client::danger::ServerCertVerifier;
        verify(&ca.cert_pem).unwrap();
        let other = Ca::new("c2").unwrap();
        assert!(verify(&other.cert_pem).is_err());
        // A garbled request is refused, named.
        let e = ca
            .issue("garbage", "x", "10.0.0.1".parse().unwrap())
            .unwrap_err();
        assert_eq!(e.code(), "INVALID_PAIRING_REQUEST");
    }
}
