//! Pairing, as the API drives it: the protocol, the CA and the files are clusterd's
//! (`clusterd::pairing`); this module adds what is deployd's: the HTTPS certificate whose
//! fingerprint the tokens carry, the pair's key for sealed secrets (the seed's, given to the
//! other node), this appliance's own store put aside or rebuilt, and the restart into the
//! new mode.
//!
//! * [`offer`] on the seed: tokens for the other appliance and the witness.
//! * [`admit`] on the seed: a member's join request (the token is its credential).
//! * [`join`] on the other appliance: asks the seed, installs the answer.
//! * [`unpair`]: this node's records copied into its own store, the node out of etcd, the
//!   pair's files removed.
//!
//! Each of the last three ends with [`restart`]: on an appliance, init reboots it (its
//! services start as the new mode says); elsewhere deployd exits with [`RESTART_STATUS`] for
//! whatever started it to start the services again.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use clusterd::config::{ClusterConfig, MemberRole, VirtualIp};
use clusterd::pairing::{self, JoinAnswer, JoinRequest, Offer, PairError, PairPlan};
use time::OffsetDateTime;

use crate::meta::sealed::KEY_FILE as SECRET_KEY_FILE;
use crate::meta::{MetaStore, RedbStore};

/// What pairing works on.
#[derive(Debug, Clone)]
pub struct Appliance {
    /// deployd's state directory (its own store, the key for sealed secrets, the HTTPS
    /// certificate).
    pub state_dir: PathBuf,
    /// clusterd's (the pair's description, certificates, etcd's data).
    pub cluster_state_dir: PathBuf,
    /// The appliance's init, asked to reboot into the new mode.
    pub power_control_pid: Option<i32>,
    /// The API's HTTPS certificate (PEM), whose fingerprint the join tokens carry.
    pub api_certificate: PathBuf,
}

/// deployd's exit status when it must be started again in the other mode (EX_TEMPFAIL),
/// when no init controls the machine.
pub const RESTART_STATUS: i32 = 75;
/// What this appliance's own store is renamed to when it joins another's pair.
pub const SET_ASIDE: &str = "before-pairing";

/// What an administrator gives on the seed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This appliance's address on the enclosure network.
    pub address: IpAddr,
    /// The management virtual IP, `a.b.c.d/len`.
    pub virtual_ip: String,
    pub witness_address: IpAddr,
    /// The interface the virtual IP goes on; default: the one holding `address`.
    pub interface: Option<String>,
    /// This appliance's name in the pair; default: its host name.
    pub name: Option<String>,
    /// This appliance's storage address, `a.b.c.d/len`: the floating address its OS
    /// volumes are booted from (the pair replicates them; the other node gives its own).
    pub storage_ip: Option<String>,
    /// The interface the storage address goes on; default: the one holding `address`.
    pub storage_interface: Option<String>,
}

fn invalid(what: impl Into<String>) -> PairError {
    PairError::Invalid(what.into())
}

/// This host's name (the default member name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "streamer".into())
}

/// The interface that holds `address`.
fn interface_of(address: IpAddr) -> Result<String, PairError> {
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| invalid(format!("listing addresses: {e}")))?;
    for a in addrs {
        let ip = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in()
                .map(|v| IpAddr::V4(v.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
        });
        if ip == Some(address) {
            return Ok(a.interface_name);
        }
    }
    Err(invalid(format!(
        "no interface of this appliance has the address {address}: give its address on the \
         enclosure network"
    )))
}

fn parse_vip(text: &str, interface: String) -> Result<VirtualIp, PairError> {
    let bad = || {
        invalid(format!(
            "virtualIp {text:?} is not an address with a prefix length, like 10.0.0.100/24"
        ))
    };
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let address: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let prefix_len: u8 = len.trim().parse().map_err(|_| bad())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if prefix_len == 0 || prefix_len > max {
        return Err(bad());
    }
    Ok(VirtualIp {
        address,
        prefix_len,
        interface,
    })
}

/// On the seed: starts a pairing and returns the tokens (shown once).
pub fn offer(config: &Appliance, plan: Plan) -> Result<Offer, PairError> {
    let interface = match plan.interface {
        Some(i) => i,
        None => interface_of(plan.address)?,
    };
    let virtual_ip = parse_vip(&plan.virtual_ip, interface)?;
    if virtual_ip.address == plan.address || virtual_ip.address == plan.witness_address {
        return Err(invalid(
            "the virtual IP must be an address of its own, not a member's",
        ));
    }
    let storage_ip = storage_ip(
        plan.storage_ip.as_deref(),
        plan.storage_interface,
        plan.address,
    )?;
    if storage_ip
        .as_ref()
        .is_some_and(|s| s.address == virtual_ip.address || s.address == plan.witness_address)
    {
        return Err(invalid(
            "the storage address must be an address of its own, not the virtual IP or the \
             witness's",
        ));
    }
    let cert_path = &config.api_certificate;
    let api_certificate_pem = std::fs::read_to_string(cert_path).map_err(|e| PairError::Io {
        path: cert_path.display().to_string(),
        source: e,
    })?;
    pairing::offer(
        &config.cluster_state_dir,
        PairPlan {
            name: plan.name.unwrap_or_else(host_name),
            address: plan.address,
            virtual_ip,
            witness: plan.witness_address,
            storage_ip,
            api_certificate_pem,
        },
        OffsetDateTime::now_utc(),
    )
}

/// On the seed: a member's join request. The other node gets the pair's key for sealed
/// secrets too; then this appliance restarts as a pair member.
pub fn admit(config: &Appliance, req: &JoinRequest) -> Result<JoinAnswer, PairError> {
    let mut answer = pairing::admit(&config.cluster_state_dir, req, OffsetDateTime::now_utc())?;
    if req.role == MemberRole::Node {
        let path = config.state_dir.join(SECRET_KEY_FILE);
        let key = std::fs::read(&path).map_err(|e| PairError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        answer.secrets_key = Some(base64::engine::general_purpose::STANDARD.encode(key));
        tracing::warn!(
            "{} ({}) joined: this appliance restarts as a member of pair {}",
            answer.config.me,
            req.address,
            answer.config.cluster_id
        );
        restart(config);
    } else {
        tracing::warn!("the witness ({}) joined the pair", req.address);
    }
    Ok(answer)
}

/// What the other appliance gives to join.
#[derive(Debug, Clone)]
pub struct Join {
    /// The seed's API: `host`, `host:port` or `https://host:port`.
    pub pair_with: String,
    pub token: String,
    /// This appliance's address on the enclosure network.
    pub address: IpAddr,
    pub name: Option<String>,
    /// Its storage address, `a.b.c.d/len` (required when the first appliance gave one).
    pub storage_ip: Option<String>,
    /// The interface the storage address goes on; default: the one holding `address`.
    pub storage_interface: Option<String>,
}

/// A storage address `a.b.c.d/len` on `interface` (default: the one holding `address`).
fn storage_ip(
    text: Option<&str>,
    interface: Option<String>,
    address: IpAddr,
) -> Result<Option<VirtualIp>, PairError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let interface = match interface {
        Some(i) => i,
        None => interface_of(address)?,
    };
    let ip = parse_vip(text, interface).map_err(|_| {
        invalid(format!(
            "storageIp {text:?} is not an address with a prefix length, like 10.0.0.11/24"
        ))
    })?;
    if ip.address == address {
        return Err(invalid(
            "the storage address must be an address of its own, not the appliance's",
        ));
    }
    Ok(Some(ip))
}

fn api_url(pair_with: &str) -> String {
    let s = pair_with.trim().trim_end_matches('/');
    if s.starts_with("https://") {
        s.to_string()
    } else {
        format!("https://{s}")
    }
}

/// On the other appliance: joins the seed's pair. This appliance's own records and key are
/// put aside (`*.before-pairing`): the pair's are the seed's.
pub async fn join(config: &Appliance, join: Join) -> Result<ClusterConfig, PairError> {
    if let Some(cfg) =
        ClusterConfig::load(&config.cluster_state_dir).map_err(|e| invalid(e.to_string()))?
    {
        return Err(PairError::AlreadyPaired(cfg.cluster_id));
    }
    // A malformed token is refused here, before anything is sent.
    pairing::JoinToken::parse(&join.token)?;
    let name = join.name.unwrap_or_else(host_name);
    let creds = pairing::credentials(&name)?;
    let req = JoinRequest {
        token: join.token.trim().into(),
        version: pairing::VERSION.into(),
        name,
        address: join.address,
        role: MemberRole::Node,
        csr: creds.csr_pem.clone(),
        storage_ip: storage_ip(
            join.storage_ip.as_deref(),
            join.storage_interface,
            join.address,
        )?,
    };
    let answer = pairing::request_join(&api_url(&join.pair_with), &req).await?;
    let key = answer
        .secrets_key
        .as_deref()
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
        .filter(|k| k.len() == 32)
        .ok_or_else(|| invalid("the first appliance's answer has no key for sealed secrets"))?;
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| PairError::Io { path, source }
    };
    for file in ["meta.redb", SECRET_KEY_FILE] {
        let from = config.state_dir.join(file);
        if from.exists() {
            let to = config.state_dir.join(format!("{file}.{SET_ASIDE}"));
            std::fs::rename(&from, &to).map_err(io(&from))?;
        }
    }
    let key_path = config.state_dir.join(SECRET_KEY_FILE);
    crate::services::files::write_private(&key_path, &key).map_err(io(&key_path))?;
    pairing::install(&config.cluster_state_dir, &answer, &creds.key_pem)?;
    tracing::warn!(
        "joined pair {} as {}: restarting as a pair member",
        answer.config.cluster_id,
        answer.config.me
    );
    restart(config);
    Ok(answer.config)
}

/// Takes this node out of the pair: every record of the pair's store copied into this
/// appliance's own store (it keeps all the artifacts), the node removed from etcd, the pair's
/// files deleted, then the restart as a single appliance.
pub async fn unpair(config: &Appliance, pair_store: &dyn MetaStore) -> Result<usize, PairError> {
    let Some(cfg) =
        ClusterConfig::load(&config.cluster_state_dir).map_err(|e| invalid(e.to_string()))?
    else {
        return Err(PairError::Conflict(
            "this appliance is not a pair member".into(),
        ));
    };
    let copied = copy_into_own_store(&config.state_dir, pair_store)?;
    pairing::leave(&cfg).await?;
    pairing::remove_files(&config.cluster_state_dir)?;
    tracing::warn!(
        "left pair {}: {copied} records kept; restarting as a single appliance",
        cfg.cluster_id
    );
    restart(config);
    Ok(copied)
}

/// Replaces `STATE/meta.redb` with a copy of `from`, whole or not at all.
fn copy_into_own_store(state_dir: &Path, from: &dyn MetaStore) -> Result<usize, PairError> {
    let store_err = |e: crate::meta::MetaError| {
        PairError::Unreachable(format!("copying the pair's records: {e}"))
    };
    let tmp: PathBuf = state_dir.join("meta.redb.unpairing");
    let _ = std::fs::remove_file(&tmp);
    let copied = {
        let to = RedbStore::open(&tmp).map_err(store_err)?;
        crate::meta::copy_all(from, &to, "pair-records").map_err(store_err)?
    };
    let dest = state_dir.join("meta.redb");
    std::fs::rename(&tmp, &dest).map_err(|source| PairError::Io {
        path: dest.display().to_string(),
        source,
    })?;
    Ok(copied)
}

/// Restarts the services in the appliance's new mode, a second from now (after the answer
/// is sent): init reboots the appliance; without init, deployd exits with
/// [`RESTART_STATUS`].
pub fn restart(config: &Appliance) {
    let pid = config.power_control_pid;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match pid {
            Some(pid) => {
                // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
                if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
                    tracing::error!(
                        "cannot ask init (pid {pid}) to restart: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
            None => {
                tracing::warn!("exiting with status {RESTART_STATUS}: start the services again");
                std::process::exit(RESTART_STATUS);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_ips_and_api_addresses_parse() {
        let v = parse_vip("10.0.0.100/24", "eth0".into()).unwrap();
        assert_eq!(
            (v.address.to_string(), v.prefix_len),
            ("10.0.0.100".into(), 24)
        );
        for bad in ["10.0.0.100", "10.0.0.100/33", "x/24", "10.0.0.1/0"] {
            let e = parse_vip(bad, "eth0".into()).unwrap_err();
            assert_eq!(e.code(), "INVALID_PAIRING_REQUEST", "{bad}");
        }
        assert_eq!(api_url("10.0.0.1:8443"), "https://10.0.0.1:8443");
        assert_eq!(api_url("https://a/"), "https://a");
        assert!(interface_of("127.0.0.1".parse().unwrap()).unwrap() == "lo");
        assert!(interface_of("192.0.2.77".parse().unwrap()).is_err());
    }
}
