//! Two stores of a pair in one process, for the replication tests: node A's (the owner)
//! replicating to node B's (the replica) over loopback, plain TCP.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use storaged::replication::{Hello, PeerReplica, ReplicaServer};
use storaged::store::{Store, VolumeInfo};

/// Node `node`'s hello in the test pair's cluster.
pub fn hello(node: &str) -> Hello {
    Hello {
        cluster_id: "pair-test".into(),
        node: node.into(),
    }
}

/// Serves `store` as node B's replica on `listener`, on a thread of its own.
pub fn serve_replica(store: Arc<Store>, listener: TcpListener) {
    let server = ReplicaServer::new(store, hello("node-b"));
    std::thread::spawn(move || server.serve(listener));
}

/// Node B's store in `dir`, served on a free loopback port; and that port's address.
pub fn replica_at(dir: &Path) -> (Arc<Store>, SocketAddr) {
    let store = Arc::new(Store::open(dir).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    serve_replica(Arc::clone(&store), listener);
    (store, addr)
}

/// Node A's store in `dir`, replicating to `peer`; and its link.
pub fn owner_at(dir: &Path, peer: SocketAddr) -> (Arc<Store>, Arc<PeerReplica>) {
    let link = Arc::new(PeerReplica::new(peer, hello("node-a")));
    let store = Arc::new(Store::open_with_replica(dir, link.clone()).unwrap());
    (store, link)
}

/// An owner replicating to a replica, each in a temporary directory.
pub struct Pair {
    pub owner: Arc<Store>,
    pub replica: Arc<Store>,
    pub link: Arc<PeerReplica>,
    pub replica_addr: SocketAddr,
    /// The owner's directory, then the replica's.
    pub dirs: (tempfile::TempDir, tempfile::TempDir),
}

pub fn pair() -> Pair {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (replica, replica_addr) = replica_at(db.path());
    let (owner, link) = owner_at(da.path(), replica_addr);
    Pair {
        owner,
        replica,
        link,
        replica_addr,
        dirs: (da, db),
    }
}

/// Imports the raw file `file` into `store` as golden image `name` (sent to the replica, if
/// `store` has one).
pub fn import_golden(store: &Store, file: &Path, name: &str) -> VolumeInfo {
    store
        .import(
            Some(name),
            std::fs::File::open(file).unwrap(),
            None,
            false,
            None,
            &mut |_, _| {},
        )
        .unwrap()
}
