//! Synchronous replication between two stores on loopback: the owner's writes (through its
//! NBD server, by qemu-io with FUA and flushes, and through the volume API) land byte for
//! byte on the replica before they are acknowledged; a replica that goes away makes writes
//! stall, never fail, until it is back or marked outdated; a deposed owner (an older epoch),
//! a peer of another pair and a damaged frame are refused and change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::MIB;
use common::pair::{Pair, hello, import_golden, owner_at, replica_at};
use storaged::block::BlockDevice;
use storaged::replication::tls::{self, TlsFiles};
use storaged::replication::wire::{self, Frame, Kind};
use storaged::replication::{Hello, PeerReplica, ReplicaServer};
use storaged::store::Store;
use storaged::volume::WriteOp;

const VOL: &str = "0b7c7e0e-0000-4000-8000-000000000001";

/// A pair ([`common::pair::pair`]) with volume `VOL` (64 MiB) on both nodes.
fn pair() -> Pair {
    let p = common::pair::pair();
    for s in [&p.owner, &p.replica] {
        s.create_as(VOL, Some("os1"), 64 * MIB, Some("node-a"))
            .unwrap();
    }
    p
}

fn contents(s: &Store) -> Vec<u8> {
    let lease = s.lease(VOL).unwrap();
    let mut buf = vec![0u8; 64 * MIB as usize];
    lease.volume().read_at(&mut buf, 0).unwrap();
    buf
}

#[test]
fn acknowledged_writes_are_on_the_replica_byte_for_byte() {
    let p = pair();
    let v = p.owner.lease(VOL).unwrap();
    let vol = v.volume();
    vol.write(&[0xab; 4096], 0, false).unwrap();
    vol.write(&[0xcd; 100_000], 5 * MIB + 17, true).unwrap();
    vol.zero(5 * MIB + 1000, 3000, false, false).unwrap();
    vol.zero(10 * MIB, 2 * MIB, true, false).unwrap();
    vol.sync().unwrap();
    assert!(
        contents(&p.owner) == contents(&p.replica),
        "the replica differs"
    );
    // The regions written are marked for a later resync, on both sides.
    assert!(contents(&p.replica)[5 * MIB as usize + 17] == 0xcd);
}

#[test]
fn qemu_io_fua_writes_through_the_owners_nbd_server_reach_the_replica() {
    if Command::new("qemu-io").arg("--version").output().is_err() {
        eprintln!("skipping: qemu-io missing (apt-get install qemu-utils)");
        return;
    }
    let p = pair();
    p.owner.export_add(VOL, Vec::new(), false).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let catalog: Arc<dyn storaged::export::ExportCatalog> = p.owner.clone();
    rt.spawn(storaged::nbd::serve(listener, catalog));
    let out = Command::new("qemu-io")
        .args(["-f", "raw"])
        .args(["-c", "write -f -P 0x5a 0 1M"]) // FUA
        .args(["-c", "write -P 0x3c 3M 512k"])
        .args(["-c", "write -z -u 8M 1M"])
        .args(["-c", "flush"])
        .arg(format!("nbd://127.0.0.1:{port}/{VOL}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replica = contents(&p.replica);
    assert!(replica[..MIB as usize].iter().all(|b| *b == 0x5a));
    assert!(
        replica[3 * MIB as usize..3 * MIB as usize + 512 * 1024]
            .iter()
            .all(|b| *b == 0x3c)
    );
    assert!(
        contents(&p.owner) == replica,
        "the replica differs from the owner"
    );
}

#[test]
fn without_the_replica_writes_stall_until_it_is_marked_outdated() {
    let (da, _db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Nothing listens there.
    let gone: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let link = Arc::new(PeerReplica::new(gone, hello("node-a")));
    let owner = Arc::new(Store::open_with_replica(da.path(), link.clone()).unwrap());
    owner
        .create_as(VOL, None, 64 * MIB, Some("node-a"))
        .unwrap();
    let lease = owner.lease(VOL).unwrap();
    let vol = Arc::clone(lease.volume());
    let writer = std::thread::spawn(move || {
        let t = Instant::now();
        vol.write(&[1; 4096], 0, true).map(|()| t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !writer.is_finished(),
        "a write without its replica must wait, not fail"
    );
    link.set_peer_outdated(true);
    let waited = writer.join().unwrap().unwrap();
    assert!(waited >= Duration::from_millis(1500));
    let mut b = [0u8; 4096];
    lease.volume().read_at(&mut b, 0).unwrap();
    assert_eq!(b, [1; 4096]);
}

#[test]
fn a_deposed_owner_another_pair_and_damaged_frames_are_refused() {
    let p = pair();
    let vol = p.owner.lease(VOL).unwrap();
    // The pair moved the volume's group to epoch 5 (a failover), so a node still writing
    // with epoch 1 is a deposed owner: its write is refused, and the error closes its NBD
    // client's connection (`ConnectionAborted`) rather than reaching the guest.
    p.link.ownership().own("node-a", 5);
    vol.volume().write(&[7; 512], 0, false).unwrap();
    let deposed = PeerReplica::new(p.replica_addr, hello("node-a"));
    let e = storaged::volume::Replica::write(
        &deposed,
        VOL,
        0,
        storaged::volume::WriteOp::Data(&[9; 512]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted, "{e}");
    assert!(e.to_string().contains("no longer owns it"), "{e}");
    let mut b = [0u8; 512];
    p.replica
        .lease(VOL)
        .unwrap()
        .volume()
        .read_at(&mut b, 0)
        .unwrap();
    assert_eq!(b, [7; 512], "the deposed owner's write must not land");

    // Another pair's node.
    let stranger = PeerReplica::new(
        p.replica_addr,
        Hello {
            cluster_id: "another-pair".into(),
            node: "x".into(),
        },
    );
    let e = storaged::volume::Replica::flush(&stranger, VOL).unwrap_err();
    assert!(e.to_string().contains("is not a member"), "{e}");

    // A damaged frame: refused, the connection closed, nothing applied.
    let mut s = TcpStream::connect(p.replica_addr).unwrap();
    let mut h = Frame::new(Kind::Hello, 0);
    h.payload = serde_json::to_vec(&hello("node-a")).unwrap().into();
    wire::write_frame(&mut s, &h).unwrap();
    let answer = wire::read_frame(&mut s).unwrap();
    assert_eq!(answer.kind, Kind::Hello);
    let mut w = Frame::new(Kind::Write, 1);
    w.volume = VOL.into();
    w.epoch = 5;
    w.offset = 0;
    w.len = 512;
    w.payload = vec![0xee; 512].into();
    let mut bytes = Vec::new();
    wire::write_frame(&mut bytes, &w).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    s.write_all(&bytes).unwrap();
    assert!(
        matches!(wire::read_frame(&mut s), Err(wire::WireError::Closed)),
        "a damaged frame must close the connection"
    );
    p.replica
        .lease(VOL)
        .unwrap()
        .volume()
        .read_at(&mut b, 0)
        .unwrap();
    assert_eq!(b, [7; 512]);

    // A peer speaking another protocol version is told so.
    let mut s = TcpStream::connect(p.replica_addr).unwrap();
    let mut bytes = Vec::new();
    wire::write_frame(&mut bytes, &h).unwrap();
    bytes[4] = 2;
    s.write_all(&bytes).unwrap();
    let refusal = wire::read_frame(&mut s).unwrap();
    assert_eq!(refusal.kind, Kind::Refuse);
    assert!(
        String::from_utf8_lossy(&refusal.payload).contains("protocol version 2"),
        "{refusal:?}"
    );
}

/// A CA and a member certificate for 127.0.0.1, written as clusterd's `tls/` holds them.
fn member_files(ca: &(rcgen::Certificate, rcgen::KeyPair), dir: &std::path::Path) -> TlsFiles {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.0.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    TlsFiles::in_dir(dir)
}

fn new_ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    (p.self_signed(&key).unwrap(), key)
}

#[test]
fn with_the_pairs_certificates_replication_is_mutual_tls_and_strangers_are_refused() {
    let certs = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let (a_files, b_files) = (
        member_files(&ca, &certs.path().join("a")),
        member_files(&ca, &certs.path().join("b")),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = Arc::new(Store::open(db.path()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ReplicaServer::with_tls(
        Arc::clone(&replica),
        hello("node-b"),
        Some(tls::server_config(&b_files).unwrap()),
    );
    std::thread::spawn(move || server.serve(listener));
    let link = Arc::new(PeerReplica::with_tls(
        addr,
        hello("node-a"),
        Some(tls::client_config(&a_files).unwrap()),
        Arc::new(storaged::ownership::Ownership::node("node-a", true)),
    ));
    let owner = Store::open_with_replica(da.path(), link).unwrap();
    for s in [&owner, &*replica] {
        s.create_as(VOL, None, 64 * MIB, Some("node-a")).unwrap();
    }
    owner
        .lease(VOL)
        .unwrap()
        .volume()
        .write(&[0x42; 8192], MIB, true)
        .unwrap();
    assert!(contents(&owner) == contents(&replica));

    // Plain TCP, or a certificate of another CA: the handshake fails, nothing is applied.
    let mut plain = TcpStream::connect(addr).unwrap();
    let mut h = Frame::new(Kind::Hello, 0);
    h.payload = serde_json::to_vec(&hello("node-a")).unwrap().into();
    // The server may close before the frame is even written.
    let answered = wire::write_frame(&mut plain, &h).and_then(|()| wire::read_frame(&mut plain));
    assert!(answered.is_err(), "plain TCP must be refused: {answered:?}");
    let stranger = member_files(&new_ca(), &certs.path().join("x"));
    // It trusts the pair's CA for the server, but shows its own CA's certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.0.der().to_vec()))
        .unwrap();
    let cfg = {
        use rustls::pki_types::pem::PemObject;
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![rustls::pki_types::CertificateDer::from_pem_file(&stranger.cert).unwrap()],
            rustls::pki_types::PrivateKeyDer::from_pem_file(&stranger.key).unwrap(),
        )
        .unwrap()
    };
    let conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    let sent = wire::write_frame(&mut s, &h).and_then(|()| wire::read_frame(&mut s));
    assert!(sent.is_err(), "a certificate of another CA must be refused");
    let mut b = [0u8; 8192];
    replica
        .lease(VOL)
        .unwrap()
        .volume()
        .read_at(&mut b, MIB)
        .unwrap();
    assert_eq!(b, [0x42; 8192]);
}

/// Two stores, each replicating to the other (the pair is active/active).
fn both_ways() -> (Arc<Store>, Arc<Store>, Vec<tempfile::TempDir>) {
    let (stores, _, dirs) = both_ways_with_links();
    (Arc::clone(&stores[0]), Arc::clone(&stores[1]), dirs)
}

/// [`both_ways`], with each store's link to the other.
fn both_ways_with_links() -> (
    Vec<Arc<Store>>,
    Vec<Arc<PeerReplica>>,
    Vec<tempfile::TempDir>,
) {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let listeners: Vec<_> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let links: Vec<Arc<PeerReplica>> = (0..2)
        .map(|i| {
            Arc::new(PeerReplica::new(
                addrs[1 - i],
                hello(["node-a", "node-b"][i]),
            ))
        })
        .collect();
    let stores: Vec<Arc<Store>> = (0..2)
        .map(|i| Arc::new(Store::open_with_replica(dirs[i].path(), links[i].clone()).unwrap()))
        .collect();
    for (i, l) in listeners.into_iter().enumerate() {
        let server = ReplicaServer::new(Arc::clone(&stores[i]), hello(["node-a", "node-b"][i]));
        std::thread::spawn(move || server.serve(l));
    }
    (stores, links, dirs)
}

#[test]
fn after_a_failover_the_resync_also_overwrites_what_the_old_owner_wrote_alone() {
    let (stores, links, _dirs) = both_ways_with_links();
    let (a, b) = (&stores[0], &stores[1]);
    let id = a.create(Some("os1"), 16 * MIB).unwrap().record.id;
    a.lease(&id)
        .unwrap()
        .volume()
        .write(&[0x11; 65536], 0, true)
        .unwrap();
    // A dies with a write applied here but never replicated (as if its link went first).
    links[0].set_peer_outdated(true);
    a.lease(&id)
        .unwrap()
        .volume()
        .write(&[0x66; 65536], 5 * MIB, false)
        .unwrap();
    // B takes A's group over (epoch 2), goes on alone, writes elsewhere.
    a.ownership().disown("node-a", Some(2));
    b.ownership().own("node-a", 2);
    links[1].set_peer_outdated(true);
    b.lease(&id)
        .unwrap()
        .volume()
        .write(&[0x99; 65536], 9 * MIB, true)
        .unwrap();
    assert_ne!(
        a.content_checksum(&id).unwrap(),
        b.content_checksum(&id).unwrap()
    );
    // A is back: B resyncs it, A's own region included.
    links[1].set_peer_outdated(false);
    let report = b.resync(&id, &mut |_, _| {}).unwrap();
    assert_eq!(
        a.content_checksum(&id).unwrap(),
        b.content_checksum(&id).unwrap(),
        "both copies identical after the resync"
    );
    let mut buf = [0u8; 4096];
    a.lease(&id)
        .unwrap()
        .volume()
        .read_at(&mut buf, 5 * MIB)
        .unwrap();
    assert_eq!(buf, [0; 4096], "A's write that nobody acknowledged is gone");
    // Only regions that either side marked were sent (not the whole 16 MiB).
    assert!(report.regions < 16, "{report:?}");
    // A's log was cleared: a second resync sends nothing more of A's.
    let again = b.resync(&id, &mut |_, _| {}).unwrap();
    assert!(again.regions <= report.regions, "{again:?}");
}

fn ids(s: &Store) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = s
        .list()
        .into_iter()
        .map(|i| {
            (
                i.record.id.clone(),
                i.record.name.clone(),
                i.record.parent.is_some(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn catalog_changes_are_made_on_both_nodes_under_one_id() {
    let (a, b, dirs) = both_ways();
    let os1 = a.create(Some("os1"), 64 * MIB).unwrap().record.id;
    a.lease(&os1)
        .unwrap()
        .volume()
        .write(&[0x11; 65536], 0, true)
        .unwrap();
    let gold = a.snapshot(&os1, Some("gold")).unwrap().record.id;
    let c1 = a.clone_volume(&gold, Some("clone1")).unwrap().record.id;
    // Made on B, replicated to A: both directions at once.
    let b1 = b.create(Some("made-on-b"), 8 * MIB).unwrap().record.id;
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(
        a.content_checksum(&c1).unwrap(),
        b.content_checksum(&c1).unwrap()
    );
    assert_eq!(
        a.content_checksum(&gold).unwrap(),
        b.content_checksum(&gold).unwrap()
    );
    a.delete(&c1).unwrap();
    b.delete(&b1).unwrap();
    assert_eq!(ids(&a), ids(&b));
    assert!(b.info(&c1).is_err() && a.info(&b1).is_err());

    // A golden image import: ready only when the replica holds it, checked.
    let img = dirs[0].path().join("golden.raw");
    let mut content = vec![0u8; 6 * MIB as usize];
    content[..MIB as usize].fill(0x77);
    content[5 * MIB as usize..].fill(0x99);
    std::fs::write(&img, &content).unwrap();
    let g = import_golden(&a, &img, "debian");
    let on_b = b.info(&g.record.id).unwrap();
    assert_eq!(on_b.record.state, g.record.state);
    assert_eq!(on_b.record.checksum, g.record.checksum);
    assert_eq!(
        b.content_checksum(&g.record.id).unwrap(),
        g.record.checksum.clone().unwrap()
    );
    // A clone of it on B is O(1) there too (a catalog change, not a copy).
    let c2 = b.clone_volume(&g.record.id, None).unwrap().record.id;
    assert_eq!(
        a.info(&c2).unwrap().record.parent,
        Some(g.record.id.clone())
    );
}

#[test]
fn both_nodes_changing_their_catalogs_at_once_do_not_deadlock() {
    let (a, b, _dirs) = both_ways();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                for n in 0..20 {
                    let id = s.create(Some(&format!("v{i}-{n}")), MIB).unwrap().record.id;
                    s.delete(&id).unwrap();
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(60);
    while done.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(Instant::now() < end, "the two catalogs deadlocked");
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ids(&a), ids(&b));
}

fn sha(s: &Store) -> String {
    s.content_checksum(VOL).unwrap()
}

#[test]
fn a_resync_copies_only_what_the_peer_missed_even_across_a_restart_and_under_writes() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (replica, addr) = replica_at(db.path());
    let open_owner = || owner_at(da.path(), addr);
    let (owner, link) = open_owner();
    for s in [&owner, &replica] {
        s.create_as(VOL, None, 64 * MIB, Some("node-a")).unwrap();
    }
    {
        let lease = owner.lease(VOL).unwrap();
        let v = lease.volume();
        v.write(&[1; 4096], 0, false).unwrap();
        // Two completed flushes: the hot regions are clean again.
        v.sync().unwrap();
        v.sync().unwrap();
        assert!(v.activity().unwrap().dirty().is_empty());
        // The peer goes away (the pair marked it outdated): writes go on here only.
        link.set_peer_outdated(true);
        for (i, r) in [10u64, 20, 21, 40].iter().enumerate() {
            v.write(&vec![0x30 + i as u8; 300_000], r * MIB + 4096, false)
                .unwrap();
        }
        v.zero(0, 4096, true, false).unwrap();
        v.sync().unwrap();
        assert!(!v.activity().unwrap().dirty().is_empty());
    }
    assert_ne!(sha(&owner), sha(&replica));
    // The owner restarts: what the peer missed is still known.
    drop(owner);
    let (owner, _link) = open_owner();
    let lease = owner.lease(VOL).unwrap();
    let dirty = lease.volume().activity().unwrap().dirty();
    for r in [0, 10, 20, 21, 40] {
        assert!(dirty.contains(&r), "region {r} missing from {dirty:?}");
    }
    // The peer is back: resync while a client writes elsewhere and into the same regions
    // (from the moment the resync has read what to send: regions the client marks later go
    // to both nodes as it writes them).
    let v = Arc::clone(lease.volume());
    let (started, go) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let _ = go.recv();
        for n in 0..200u64 {
            let region = (n * 7) % 64;
            v.write(&[n as u8; 8192], region * MIB + (n % 100) * 8192, false)
                .unwrap();
        }
    });
    let mut seen = 0;
    let report = owner
        .resync(VOL, &mut |done, _| {
            if seen == 0 {
                let _ = started.send(());
            }
            seen = done;
        })
        .unwrap();
    drop(started);
    writer.join().unwrap();
    lease.volume().sync().unwrap();
    assert_eq!(
        sha(&owner),
        sha(&replica),
        "the replicas differ after the resync"
    );
    assert_eq!(seen, report.regions);
    // Only the marked regions were copied (each write marks a few regions ahead), not the
    // 64 MiB volume.
    assert!(
        report.regions <= dirty.len() as u64,
        "{report:?} vs {dirty:?}"
    );
    assert!(report.bytes <= 25 * MIB, "{report:?}");
}

#[test]
fn a_replica_that_cannot_apply_degrades_the_volume_without_failing_the_client() {
    let p = pair();
    let lease = p.owner.lease(VOL).unwrap();
    let v = lease.volume();
    v.write(&[1; 4096], 0, true).unwrap();
    // The replica loses the volume (as a full disk would refuse its writes).
    p.replica.delete_as(VOL).unwrap();
    v.write(&[2; 4096], 3 * MIB, true).unwrap();
    v.write(&[3; 4096], 9 * MIB, false).unwrap();
    v.sync().unwrap();
    assert_eq!(p.link.degraded(), [VOL]);
    let dirty = v.activity().unwrap().dirty();
    assert!(dirty.contains(&3) && dirty.contains(&9), "{dirty:?}");
    // The replica's copy is new (empty): a full resync rebuilds it.
    p.replica
        .create_as(VOL, Some("os1"), 64 * MIB, Some("node-a"))
        .unwrap();
    let report = p.owner.resync_full(VOL, &mut |_, _| {}).unwrap();
    assert_eq!(report.regions, 64);
    assert!(p.link.degraded().is_empty());
    assert_eq!(
        p.owner.content_checksum(VOL).unwrap(),
        p.replica.content_checksum(VOL).unwrap()
    );
}

#[test]
fn a_split_brain_is_refused_and_remembered_with_no_data_changed() {
    let (stores, _links, _dirs) = both_ways_with_links();
    let (a, b) = (&stores[0], &stores[1]);
    let id = a.create(Some("os1"), 16 * MIB).unwrap().record.id;
    a.lease(&id)
        .unwrap()
        .volume()
        .write(&[0x11; 4096], 0, true)
        .unwrap();
    let before = b.content_checksum(&id).unwrap();
    // Both nodes believe they serve group node-a at epoch 1 (what etcd's transactions rule
    // out; a restored backup of its data could bring it about).
    b.ownership().own("node-a", 1);
    let e = a
        .lease(&id)
        .unwrap()
        .volume()
        .write(&[0x22; 4096], 0, true)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted, "{e}");
    assert!(e.to_string().contains("split brain"), "{e}");
    assert_eq!(b.content_checksum(&id).unwrap(), before, "nothing merged");
    assert_eq!(b.ownership().split_brain(), ["node-a"]);
}

#[test]
fn volumes_made_while_the_peer_was_away_reach_it_at_the_resync() {
    let (stores, links, dirs) = both_ways_with_links();
    let (a, b) = (&stores[0], &stores[1]);
    links[0].set_peer_outdated(true);
    // While B is away: a golden image imported, a clone of it written, a snapshot taken.
    let img = dirs[0].path().join("golden.raw");
    let mut content = vec![0u8; 4 * MIB as usize];
    content[..MIB as usize].fill(0x5a);
    std::fs::write(&img, &content).unwrap();
    let g = import_golden(a, &img, "gold").record.id;
    let c = a.clone_volume(&g, Some("os1")).unwrap().record.id;
    a.lease(&c)
        .unwrap()
        .volume()
        .write(&[0x77; 65536], 2 * MIB, true)
        .unwrap();
    let snap = a.snapshot(&c, Some("snap1")).unwrap().record.id;
    a.export_add(&c, vec!["10.0.0.5/32".parse().unwrap()], false)
        .unwrap();
    assert!(b.info(&g).is_err() && b.info(&c).is_err());
    // And one made before, deleted while B is away.
    let old = {
        links[0].set_peer_outdated(false);
        let id = a.create(Some("old"), MIB).unwrap().record.id;
        links[0].set_peer_outdated(true);
        id
    };
    assert!(b.info(&old).is_ok());
    a.delete(&old).unwrap();
    assert!(b.info(&old).is_ok(), "B is away: it still has it");

    // Written after the snapshot: in the clone's own layer.
    a.lease(&c)
        .unwrap()
        .volume()
        .write(&[0x78; 4096], 3 * MIB, true)
        .unwrap();

    links[0].set_peer_outdated(false);
    let pair =
        storaged::replication::pair::PairLink::new(Arc::clone(a), links[0].clone(), "node-a");
    let report = pair.resync().unwrap();
    // Of the clone's four regions, two go: the one written before the snapshot (its
    // activity log kept it) and the one its own layer holds; its parents go whole.
    assert_eq!(report.regions, 2, "{report:?}");
    for id in [&g, &snap, &c] {
        assert_eq!(
            a.content_checksum(id).unwrap(),
            b.content_checksum(id).unwrap(),
            "{id}"
        );
    }
    assert_eq!(
        b.info(&g).unwrap().record.state,
        storaged::store::VolumeState::Frozen
    );
    // The clone sits on a frozen parent there too (the snapshot, sent flat).
    assert!(b.info(&c).unwrap().record.parent.is_some());
    assert_eq!(b.export_list().len(), 1, "the export came with it");
    assert!(b.info(&old).is_err(), "the delete reached B at the resync");
    assert!(a.deleted_meanwhile().is_empty());
    // Nothing left to send: a second resync copies nothing.
    let again = pair.resync().unwrap();
    assert_eq!(again.regions, 0, "{again:?}");
}

#[test]
fn a_peer_copy_from_another_generation_is_resynced_whole() {
    let p = pair();
    let lease = p.owner.lease(VOL).unwrap();
    let v = lease.volume();
    v.write(&[7; 65536], 3 * MIB, false).unwrap();
    v.sync().unwrap();
    v.sync().unwrap();
    // The pair marks the peer Outdated: the volume starts a new generation, once.
    p.link.set_peer_outdated(true);
    assert_eq!(p.owner.start_generations_without_peer().unwrap(), 1);
    assert_eq!(p.owner.start_generations_without_peer().unwrap(), 0);
    let (ahead, left_at) = p.owner.generation(VOL).unwrap();
    assert_eq!(left_at, Some(0));
    v.write(&[9; 65536], 20 * MIB, false).unwrap();
    v.sync().unwrap();
    // The peer's copy comes back from another history (an old backup restored): other
    // bytes where the owner's log has nothing, another generation.
    p.replica
        .lease(VOL)
        .unwrap()
        .volume()
        .apply_replicated(40 * MIB, Some(WriteOp::Data(&[0xbb; 4096])), true)
        .unwrap();
    p.replica.set_generation(VOL, 0x5eed).unwrap();
    p.link.set_peer_outdated(false);
    let report = p.owner.resync(VOL, &mut |_, _| {}).unwrap();
    assert!(report.full, "{report:?}");
    assert_eq!(report.regions, 64, "{report:?}");
    assert!(
        contents(&p.owner) == contents(&p.replica),
        "the copies differ"
    );
    // Both copies at the owner's generation; the owner is no longer ahead.
    assert_eq!(p.owner.generation(VOL).unwrap(), (ahead, None));
    assert_eq!(p.replica.generation(VOL).unwrap(), (ahead, None));

    // A copy left at the generation the owner remembers gets the log's regions only.
    p.link.set_peer_outdated(true);
    assert_eq!(p.owner.start_generations_without_peer().unwrap(), 1);
    v.write(&[5; 4096], 50 * MIB, false).unwrap();
    v.sync().unwrap();
    p.link.set_peer_outdated(false);
    let marked = p.owner.dirty_regions(VOL).unwrap();
    let report = p.owner.resync(VOL, &mut |_, _| {}).unwrap();
    assert!(!report.full, "{report:?}");
    assert!(report.regions == marked && marked < 8, "{report:?}");
    assert!(
        contents(&p.owner) == contents(&p.replica),
        "the copies differ"
    );
    assert_eq!(
        p.owner.generation(VOL).unwrap().0,
        p.replica.generation(VOL).unwrap().0
    );
}
