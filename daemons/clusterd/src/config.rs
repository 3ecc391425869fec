//! The pair's description, as pairing writes it to `STATE/cluster.json` on each member
//! (both nodes and the witness): who the members are, where their etcd listens, the
//! management virtual IP, the lease. A node without the file is a single appliance.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in clusterd's state directory.
pub const FILE: &str = "cluster.json";
/// etcd's client port on every member.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port on every member.
pub const ETCD_PEER_PORT: u16 = 2380;
/// storaged's replication port on every node.
pub const REPLICATION_PORT: u16 = 10810;
/// The management lease (seconds). etcd's minimum with a 1 s election timeout is 1.5 s.
pub const DEFAULT_LEASE_TTL: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// An appliance: runs etcd, clusterd and deployd, may be the active node.
    Node,
    /// A tie-breaker: runs etcd only.
    Witness,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: String,
    pub role: MemberRole,
    /// The member's address on the enclosure (management) network.
    pub address: IpAddr,
    /// etcd ports, when not the standard ones (tests on one host).
    #[serde(default = "client_port")]
    pub etcd_client_port: u16,
    #[serde(default = "peer_port")]
    pub etcd_peer_port: u16,
    /// A node's **storage address**: the floating address its volumes' compute modules
    /// boot from (NBD), held by whichever node serves its volumes now. None: the node's
    /// volumes are not replicated (a pair made before storage was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_ip: Option<VirtualIp>,
    /// Where the node's storaged takes the other node's replication.
    #[serde(default = "replication_port")]
    pub replication_port: u16,
}

fn replication_port() -> u16 {
    REPLICATION_PORT
}

fn client_port() -> u16 {
    ETCD_CLIENT_PORT
}

fn peer_port() -> u16 {
    ETCD_PEER_PORT
}

impl Member {
    pub fn etcd_client(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.etcd_client_port)
    }

    pub fn etcd_peer(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.etcd_peer_port)
    }

    pub fn replication(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.replication_port)
    }
}

/// The management virtual IP: the address operators and HPE's tools use, always on the
/// active node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualIp {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The interface it goes on (the management network's).
    pub interface: String,
}

/// The pair's certificate files (mutual TLS for etcd and clusterd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// The cluster's identity (etcd's cluster token).
    pub cluster_id: String,
    /// This member's name.
    pub me: String,
    pub members: Vec<Member>,
    #[serde(default)]
    pub virtual_ip: Option<VirtualIp>,
    #[serde(default = "lease_ttl")]
    pub lease_ttl_seconds: u32,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Whether this member's etcd joins an existing cluster (a node that rejoins after its
    /// data was lost) rather than forming the first one.
    #[serde(default)]
    pub join_existing: bool,
    /// The node whose records the pair started with (the appliance the pairing was made
    /// on). Until it has brought them into the pair's store, the other node does not take
    /// the management role. None: a pair described by hand, either node may start it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
}

fn lease_ttl() -> u32 {
    DEFAULT_LEASE_TTL
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a cluster description: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

impl ClusterConfig {
    /// Reads `STATE/cluster.json`; `Ok(None)` when there is none (a single appliance).
    pub fn load(state_dir: &Path) -> Result<Option<ClusterConfig>, ConfigError> {
        let path = state_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let cfg: ClusterConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.display().to_string(),
                source,
            })?;
        cfg.validate().map_err(|what| ConfigError::Invalid {
            path: path.display().to_string(),
            what,
        })?;
        Ok(Some(cfg))
    }

    /// Writes it atomically (a temporary file, then a rename).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let tmp = state_dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, state_dir.join(FILE))?;
        if let Some(f) = self.replication() {
            f.save(state_dir)?;
        }
        std::fs::File::open(state_dir)?.sync_all()
    }

    /// How this node's storaged replicates to the other node (None on the witness).
    pub fn replication(&self) -> Option<storaged::replication::PairFile> {
        let me = self.this();
        let peer = self.peer()?;
        (me.role == MemberRole::Node).then(|| storaged::replication::PairFile {
            cluster_id: self.cluster_id.clone(),
            node: me.name.clone(),
            listen: SocketAddr::new(
                match me.address {
                    IpAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
                    IpAddr::V6(_) => IpAddr::from([0u16; 8]),
                },
                me.replication_port,
            ),
            peer: peer.replication(),
        })
    }

    fn validate(&self) -> Result<(), String> {
        if self.member(&self.me).is_none() {
            return Err(format!(
                "this member {:?} is not among the members",
                self.me
            ));
        }
        let nodes = self.nodes().count();
        if nodes != 2 {
            return Err(format!("a pair has 2 nodes, this file names {nodes}"));
        }
        if self.members.len() != 3 {
            return Err(format!(
                "a pair has 3 etcd members (two nodes and a witness), this file names {}",
                self.members.len()
            ));
        }
        if self.lease_ttl_seconds < 2 {
            return Err("leaseTtlSeconds must be at least 2".into());
        }
        Ok(())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// This member.
    pub fn this(&self) -> &Member {
        // validate() checked it is there.
        self.member(&self.me).unwrap_or(&self.members[0])
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.role == MemberRole::Node)
    }

    /// The other node of the pair.
    pub fn peer(&self) -> Option<&Member> {
        self.nodes().find(|m| m.name != self.me)
    }

    pub fn witness(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.role == MemberRole::Witness)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// This member's own etcd, which its daemons talk to.
    pub fn local_endpoint(&self) -> String {
        format!("{}://{}", self.scheme(), self.this().etcd_client())
    }

    /// Every member's etcd client URL.
    pub fn endpoint_of(&self, m: &Member) -> String {
        format!("{}://{}", self.scheme(), m.etcd_client())
    }

    /// How this member's etcd runs.
    pub fn etcd_member(&self, data_dir: &Path) -> etcd_member::Member {
        let me = self.this();
        etcd_member::Member {
            name: me.name.clone(),
            data_dir: data_dir.to_path_buf(),
            client: me.etcd_client(),
            peer: me.etcd_peer(),
            cluster: self
                .members
                .iter()
                .map(|m| (m.name.clone(), m.etcd_peer()))
                .collect(),
            state: if self.join_existing {
                etcd_member::ClusterState::Existing
            } else {
                etcd_member::ClusterState::New
            },
            token: self.cluster_id.clone(),
            tls: self.tls.as_ref().map(|t| etcd_member::Tls {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ClusterConfig {
        let m = |name: &str, role, last: u8| Member {
            name: name.into(),
            role,
            address: IpAddr::from([10, 77, 0, last]),
            etcd_client_port: ETCD_CLIENT_PORT,
            etcd_peer_port: ETCD_PEER_PORT,
            storage_ip: None,
            replication_port: REPLICATION_PORT,
        };
        ClusterConfig {
            cluster_id: "c1".into(),
            me: "node-a".into(),
            members: vec![
                m("node-a", MemberRole::Node, 1),
                m("node-b", MemberRole::Node, 2),
                m("witness", MemberRole::Witness, 3),
            ],
            virtual_ip: None,
            lease_ttl_seconds: 2,
            tls: None,
            join_existing: false,
            seed: None,
        }
    }

    #[test]
    fn saved_then_loaded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ClusterConfig::load(dir.path()).unwrap().is_none());
        let cfg = sample();
        cfg.save(dir.path()).unwrap();
        assert_eq!(ClusterConfig::load(dir.path()).unwrap(), Some(cfg.clone()));
        assert_eq!(cfg.peer().unwrap().name, "node-b");
        assert_eq!(cfg.local_endpoint(), "http://10.77.0.1:2379");
        let mut bad = cfg;
        bad.me = "node-c".into();
        bad.save(dir.path()).unwrap();
        let err = ClusterConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("node-c") && err.contains("cluster.json"),
            "{err}"
        );
    }
}
