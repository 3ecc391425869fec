//! Synchronous replication of OS volumes to the pair's other node (DRBD's protocol C:
//! a write is acknowledged to the NBD client once the peer has applied it; a flush or FUA
//! write once both have synced it).
//!
//! * [`wire`]: the frames (header, volume id, payload, CRC-32), versioned.
//! * [`PeerReplica`] (the owner's side): the [`Replica`] hook of the write path, sending each
//!   write, zeroing and flush to the peer over one TCP connection and waiting for its ack.
//!   While the peer cannot be reached a write **stalls** (it is retried, never failed) until
//!   the peer answers again or the pair marks it Outdated ([`PeerReplica::set_peer_outdated`],
//!   after an etcd transaction says so); from then on writes go on locally, their regions
//!   marked in the volume's change map for the resync.
//! * [`ReplicaServer`] (the replica's side): applies what the owner sends to the volume with
//!   the same id, refusing a frame whose volume epoch is older than one it has seen (a
//!   deposed owner), a peer of another cluster or another protocol version, and any damaged
//!   frame (the connection is closed; nothing of it is applied).
//!
//! Why in storaged's write path rather than the kernel's DRBD under it: a Streamer volume is
//! a chain of layers (a clone is a new empty layer over a frozen one), which DRBD, replicating
//! one block device per resource, could only mirror after flattening each volume into a
//! device of its own: clones would stop being O(1), every volume would need a DRBD minor and
//! metadata, and the developer machines' kernel has no DRBD, so none of it could be tested
//! outside a VM. Replicating the write path's operations keeps clones O(1) (a clone is a
//! catalog operation on both nodes), is tested on the host, and shares the NBD server's
//! request flow.

pub mod pair;
pub mod tls;
pub mod wire;

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::ownership::Ownership;
use crate::store::Store;
use crate::volume::{CatalogOp, PeerCopy, Replica, WriteOp};
use wire::{
    FLAG_FUA, FLAG_TRIM, Frame, Kind, REFUSED_CANNOT_APPLY, REFUSED_DEPOSED, WireError, read_frame,
    write_frame,
};

/// How long a connection attempt to the peer waits.
const CONNECT: Duration = Duration::from_secs(1);
/// How long an answer from a connected peer may take before the connection is dropped and
/// the request sent again on a new one.
const ANSWER: Duration = Duration::from_secs(5);
/// The same for a copy's write or flush (an image sent to the peer, a resync's region):
/// megabytes each, on a peer that may be busy. No client waits on it; a peer found dead by
/// a client's write meanwhile is marked Outdated, which shuts the socket at once.
const COPY_ANSWER: Duration = Duration::from_secs(60);
/// The same for a catalog change or a question about a volume: the replica may be checking
/// a whole golden image's SHA-256 (minutes for a big one on a slow machine). A dead peer
/// does not keep it waiting: the pair marks it Outdated, which shuts the socket.
const CATALOG_ANSWER: Duration = Duration::from_secs(3600);
/// Requests in flight to the peer at most (one connection each).
const MAX_CONNECTIONS: u64 = 16;
/// The most a replica's connection keeps of its receive buffer between frames.
const KEEP_RECEIVE_BUFFER: usize = 4 << 20;
/// Between attempts while the peer cannot be reached.
const RETRY: Duration = Duration::from_millis(200);

/// Who a side is, in its hello.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The pair's cluster id: a peer of another pair is refused.
    pub cluster_id: String,
    pub node: String,
}

/// How a pair member's storaged replicates: `replication.json` in clusterd's state
/// directory (clusterd writes it with the pair's description; the certificates are in `tls/`
/// beside it). `storaged serve --pair-dir DIR` reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PairFile {
    pub cluster_id: String,
    /// This node's name in the pair.
    pub node: String,
    /// Where this node takes the other node's replication.
    pub listen: SocketAddr,
    /// The other node's replication address.
    pub peer: SocketAddr,
}

impl PairFile {
    /// The file's name in clusterd's state directory.
    pub const FILE: &'static str = "replication.json";

    pub fn load(dir: &std::path::Path) -> Result<PairFile, String> {
        let path = dir.join(Self::FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes it atomically into `dir`.
    pub fn save(&self, dir: &std::path::Path) -> io::Result<()> {
        let tmp = dir.join(format!("{}.tmp", Self::FILE));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(Self::FILE))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the peer refused: {why}")]
    Refused { code: u32, why: String },
    #[error("the peer answered {got:?} to request {seq}")]
    Unexpected { seq: u64, got: Kind },
}

/// A connection to the peer: plain TCP (tests), or mutual TLS with the pair's CA.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The stream behind a buffer kept for its life: a frame's parts go out as one TLS record
/// (or TCP segment), and no buffer is allocated per frame.
struct Conn(BufWriter<Box<dyn Stream>>, Option<Registered>);

/// The owner's connections' sockets, so that they can be shut down from another thread
/// (requests blocked on a peer marked Outdated give up at once).
type Sockets = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A socket listed in [`Sockets`] for as long as its connection lives.
struct Registered {
    id: u64,
    sockets: Sockets,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sockets.lock().remove(&self.id);
    }
}

impl Conn {
    fn new(stream: Box<dyn Stream>) -> Conn {
        Conn(BufWriter::with_capacity(64 << 10, stream), None)
    }

    fn send(&mut self, f: &Frame<'_>) -> Result<(), WireError> {
        write_frame(&mut self.0, f)?;
        self.0.flush()?;
        Ok(())
    }

    fn receive(&mut self) -> Result<Frame<'static>, WireError> {
        read_frame(self.0.get_mut())
    }

    /// As [`Conn::receive`], the payload read into `buf` (the replica's buffer for its
    /// connection's writes).
    fn receive_in<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Frame<'b>, WireError> {
        wire::read_frame_in(self.0.get_mut(), buf)
    }

    /// How long the next answers may take (an owner's connection only).
    fn answer_within(&self, d: Duration) {
        if let Some(r) = &self.1
            && let Some(s) = r.sockets.lock().get(&r.id)
        {
            let _ = s.set_read_timeout(Some(d));
        }
    }
}

/// The owner's side of replication: the write path's [`Replica`].
#[derive(Debug)]
pub struct PeerReplica {
    peer: SocketAddr,
    me: Hello,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Connections not in use: each request takes one (or opens one), so as many requests
    /// are in flight as the NBD clients send, and gives it back after its answer.
    idle: Mutex<Vec<ConnBox>>,
    /// Connections open (idle or in use), at most [`MAX_CONNECTIONS`].
    open: AtomicU64,
    available: parking_lot::Condvar,
    seq: AtomicU64,
    outdated: AtomicBool,
    /// Volumes whose changes the replica could not apply: written here alone until resynced.
    degraded: Mutex<std::collections::HashSet<String>>,
    /// Which groups this node serves, at which epoch.
    ownership: Arc<Ownership>,
    /// Since when a change waits for a peer that does not answer (None: it answers).
    stalled_since: Mutex<Option<std::time::Instant>>,
    /// When each request waiting for the peer's answer was sent, by a number of its own.
    waiting: Mutex<HashMap<u64, std::time::Instant>>,
    sockets: Sockets,
    /// Changes not sent (the peer Outdated, the volume degraded), counted by volume: a
    /// transfer of one volume is judged by its own (another volume's degraded writes say
    /// nothing of it).
    skipped: Mutex<HashMap<String, u64>>,
}

/// A request waiting for the peer, counted in [`PeerReplica::stalled_for`] until dropped.
struct Waiting<'a> {
    replica: &'a PeerReplica,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.replica.waiting.lock().remove(&self.id);
    }
}

/// How old the oldest unanswered request must be to count as a stall.
const STALL: Duration = Duration::from_millis(300);

/// Who waits for a request's answer: how long it may take, and whether waiting for it is a
/// stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// A client's write, zeroing or flush: waiting counts in [`PeerReplica::stalled_for`]
    /// (the pair marks a peer that stalls Outdated, so that clients go on); answered within
    /// [`ANSWER`].
    Client,
    /// A copy's write or flush (an image sent to the peer, a resync's region): no client
    /// waits on it, so a peer slow to take megabytes slows the copy only, and is not marked
    /// Outdated for it (a peer that does not answer at all is: the attempt fails, see
    /// [`PeerReplica::settle`]); answered within [`COPY_ANSWER`].
    Copy,
    /// A catalog change or a question about a volume, answered within [`CATALOG_ANSWER`].
    Catalog,
}

impl Waiter {
    /// How long the answer may take (None: the connection's usual [`ANSWER`]).
    fn patience(self) -> Option<Duration> {
        match self {
            Waiter::Client => None,
            Waiter::Copy => Some(COPY_ANSWER),
            Waiter::Catalog => Some(CATALOG_ANSWER),
        }
    }
}

struct ConnBox(Conn);
impl std::fmt::Debug for ConnBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

/// The error a write gets when this node no longer owns the volume (the replica said so, or
/// the pair moved its group): `ConnectionAborted`, on which the NBD server closes the
/// client's connection instead of answering an error its guest would see.
fn deposed(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("this node no longer serves the volume: {why}"),
    )
}

impl PeerReplica {
    /// Replicates to `peer` over plain TCP (tests on one host), serving this node's own
    /// group from the start.
    pub fn new(peer: SocketAddr, me: Hello) -> PeerReplica {
        let ownership = Arc::new(Ownership::node(&me.node, true));
        Self::with_tls(peer, me, None, ownership)
    }

    /// Replicates to `peer` with mutual TLS (`tls`: the pair's CA and this node's
    /// certificate, [`tls::client_config`]), serving the groups `ownership` says.
    pub fn with_tls(
        peer: SocketAddr,
        me: Hello,
        tls: Option<Arc<rustls::ClientConfig>>,
        ownership: Arc<Ownership>,
    ) -> PeerReplica {
        PeerReplica {
            peer,
            me,
            tls,
            idle: Mutex::new(Vec::new()),
            open: AtomicU64::new(0),
            available: parking_lot::Condvar::new(),
            seq: AtomicU64::new(1),
            outdated: AtomicBool::new(false),
            degraded: Mutex::new(Default::default()),
            ownership,
            stalled_since: Mutex::new(None),
            waiting: Mutex::new(HashMap::new()),
            sockets: Arc::default(),
            skipped: Mutex::new(HashMap::new()),
        }
    }

    /// How long changes have waited for a peer that does not answer (None: it answers):
    /// since the first failed attempt of a change still retried, or since the oldest request
    /// still unanswered was sent, if that is more than a moment ago.
    pub fn stalled_for(&self) -> Option<Duration> {
        let failing = self.stalled_since.lock().map(|t| t.elapsed());
        let oldest = self
            .waiting
            .lock()
            .values()
            .map(|t| t.elapsed())
            .max()
            .filter(|d| *d >= STALL);
        failing.max(oldest)
    }

    fn wait_for_answer(&self) -> Waiting<'_> {
        let id = self.seq.fetch_add(1, Ordering::SeqCst);
        self.waiting.lock().insert(id, std::time::Instant::now());
        Waiting { replica: self, id }
    }

    /// Whether the peer answers a hello now (a new connection, closed at once).
    pub fn probe(&self) -> bool {
        match self.connect() {
            Ok(_) => {
                *self.stalled_since.lock() = None;
                true
            }
            Err(_) => false,
        }
    }

    /// The pair has marked the peer Outdated (`true`): writes go on without it. `false`:
    /// the peer is back (its resync is another matter), writes wait for it again.
    pub fn set_peer_outdated(&self, outdated: bool) {
        self.outdated.store(outdated, Ordering::SeqCst);
        if outdated {
            // Requests blocked on the peer's answer give up now (and are not sent again).
            for s in self.sockets.lock().values() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            // Idle connections are shut too: none is handed out again.
            let mut idle = self.idle.lock();
            self.open.fetch_sub(idle.len() as u64, Ordering::SeqCst);
            idle.clear();
            self.available.notify_all();
        }
    }

    pub fn peer_outdated(&self) -> bool {
        self.outdated.load(Ordering::SeqCst)
    }

    /// Volumes the replica could not keep up (degraded until their resync).
    pub fn degraded(&self) -> Vec<String> {
        let mut v: Vec<String> = self.degraded.lock().iter().cloned().collect();
        v.sort();
        v
    }

    /// Which groups this node serves.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    fn epoch(&self, volume: &str) -> u64 {
        self.ownership.epoch_of(volume)
    }

    fn connect(&self) -> Result<Conn, ReplicationError> {
        let stream = TcpStream::connect_timeout(&self.peer, CONNECT).map_err(WireError::Io)?;
        stream.set_nodelay(true).map_err(WireError::Io)?;
        stream
            .set_read_timeout(Some(ANSWER))
            .map_err(WireError::Io)?;
        let id = self.seq.fetch_add(1, Ordering::SeqCst);
        let raw = stream.try_clone().map_err(WireError::Io)?;
        self.sockets.lock().insert(id, raw);
        let registered = Registered {
            id,
            sockets: Arc::clone(&self.sockets),
        };
        let mut conn = match &self.tls {
            None => Conn::new(Box::new(stream)),
            Some(config) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.peer.ip().into());
                let tls = rustls::ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| WireError::Io(io::Error::other(e)))?;
                Conn::new(Box::new(rustls::StreamOwned::new(tls, stream)))
            }
        };
        conn.1 = Some(registered);
        let mut hello = Frame::new(Kind::Hello, 0);
        hello.payload = serde_json::to_vec(&self.me).unwrap_or_default().into();
        conn.send(&hello)?;
        let answer = conn.receive()?;
        match answer.kind {
            Kind::Hello => Ok(conn),
            Kind::Refuse => Err(ReplicationError::Refused {
                code: REFUSED_DEPOSED,
                why: String::from_utf8_lossy(&answer.payload).into_owned(),
            }),
            got => Err(ReplicationError::Unexpected { seq: 0, got }),
        }
    }

    /// Sends `frame` and waits for its ack, on an idle connection or a new one.
    fn exchange(
        &self,
        frame: &Frame<'_>,
        waiter: Waiter,
    ) -> Result<Frame<'static>, ReplicationError> {
        // Only a change a client waits for counts as a stall: a copy or a catalog change may
        // take long legitimately.
        let _waiting = (waiter == Waiter::Client).then(|| self.wait_for_answer());
        let mut pending = self.send(frame)?;
        if let Some(d) = waiter.patience() {
            pending.conn.answer_within(d);
            pending.slow = true;
        }
        self.answer(pending)
    }

    /// Sends `frame` on an idle connection or a new one; [`PeerReplica::answer`] waits for
    /// its ack (work can be done in between: the local sync of a flush).
    fn send(&self, frame: &Frame<'_>) -> Result<Pending, ReplicationError> {
        let mut conn = self.take()?;
        // A copy of the header; the payload stays borrowed.
        let mut frame = Frame {
            payload: std::borrow::Cow::Borrowed(&frame.payload[..]),
            volume: frame.volume.clone(),
            ..*frame
        };
        frame.seq = self.seq.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = conn.send(&frame) {
            self.lost();
            return Err(e.into());
        }
        Ok(Pending {
            conn,
            seq: frame.seq,
            slow: false,
        })
    }

    fn answer(&self, mut pending: Pending) -> Result<Frame<'static>, ReplicationError> {
        let answer = match pending.conn.receive() {
            Ok(a) => a,
            Err(e) => {
                self.lost();
                return Err(e.into());
            }
        };
        if answer.kind == Kind::Ack && answer.seq == pending.seq {
            if pending.slow {
                pending.conn.answer_within(ANSWER);
            }
            self.idle.lock().push(ConnBox(pending.conn));
            self.available.notify_one();
            return Ok(answer);
        }
        self.lost();
        match answer.kind {
            Kind::Refuse => Err(ReplicationError::Refused {
                code: answer.flags,
                why: String::from_utf8_lossy(&answer.payload).into_owned(),
            }),
            got => Err(ReplicationError::Unexpected {
                seq: pending.seq,
                got,
            }),
        }
    }

    /// An idle connection, or a new one while fewer than [`MAX_CONNECTIONS`] are open;
    /// otherwise waits for one: a slow peer holds writers back, it never piles up memory.
    fn take(&self) -> Result<Conn, ReplicationError> {
        {
            let mut idle = self.idle.lock();
            loop {
                if let Some(c) = idle.pop() {
                    return Ok(c.0);
                }
                if self.open.load(Ordering::SeqCst) < MAX_CONNECTIONS {
                    self.open.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                self.available.wait(&mut idle);
            }
        }
        self.connect().inspect_err(|_| self.lost())
    }

    /// A connection was dropped (failed or refused).
    fn lost(&self) {
        let _idle = self.idle.lock();
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.available.notify_one();
    }

    /// Sends `frame` until the peer takes it: a refusal fails the write (this node was
    /// deposed), anything else (no answer, a cut connection) is retried until the peer
    /// answers or is marked Outdated.
    fn replicate(&self, frame: &Frame<'_>, waiter: Waiter) -> io::Result<()> {
        let mut warned = false;
        loop {
            // A stalled write ends when the pair gives the volume's group to the other node.
            if frame.kind != Kind::Catalog && !self.ownership.owns(&frame.volume) {
                return Err(deposed(&format!(
                    "volume {} is served by the other node now",
                    frame.volume
                )));
            }
            if self.skips(frame) {
                return Ok(());
            }
            let outcome = self.exchange(frame, waiter).map(drop);
            match self.settle(frame, outcome, &mut warned) {
                Some(done) => return done,
                None => std::thread::sleep(RETRY),
            }
        }
    }

    /// Whether `frame` is not sent at all: the peer is outdated, or the volume degraded.
    fn skips(&self, frame: &Frame<'_>) -> bool {
        let skip = self.peer_outdated() || self.degraded.lock().contains(&frame.volume);
        if skip {
            *self
                .skipped
                .lock()
                .entry(frame.volume.to_string())
                .or_default() += 1;
        }
        skip
    }

    /// What an attempt at `frame` means: done (`Some`), or to be tried again (`None`).
    fn settle(
        &self,
        frame: &Frame<'_>,
        outcome: Result<(), ReplicationError>,
        warned: &mut bool,
    ) -> Option<io::Result<()>> {
        if outcome.is_ok() {
            *self.stalled_since.lock() = None;
        }
        match outcome {
            Ok(()) => Some(Ok(())),
            // The replica cannot take this volume's changes (its disk is full...): the
            // volume goes on here alone, its regions kept for the resync.
            Err(ReplicationError::Refused { code, why })
                if code == REFUSED_CANNOT_APPLY && frame.kind != Kind::Catalog =>
            {
                tracing::error!(
                    "volume {} is degraded: the replica cannot apply its writes ({why})",
                    frame.volume
                );
                self.degraded.lock().insert(frame.volume.clone());
                Some(Ok(()))
            }
            Err(ReplicationError::Refused { why, .. }) => Some(Err(deposed(&why))),
            Err(e) => {
                self.stalled_since
                    .lock()
                    .get_or_insert_with(std::time::Instant::now);
                if !*warned {
                    tracing::warn!(
                        "replication to {} stalls ({e}); retrying until it answers or is \
                         marked outdated",
                        self.peer
                    );
                    *warned = true;
                }
                None
            }
        }
    }
}

impl PeerReplica {
    /// One [`Kind::Regions`] exchange about `volume` (no retry: a resync that fails is
    /// started again later).
    fn regions_frame(&self, volume: &str, flags: u32, offset: u64) -> io::Result<Frame<'static>> {
        let mut f = Frame::new(Kind::Regions, 0);
        f.volume = volume.to_string();
        f.epoch = self.epoch(volume);
        f.flags = flags;
        f.offset = offset;
        // Once more on a new connection if an idle one had been closed (the peer restarted).
        let answer = match self.exchange(&f, Waiter::Catalog) {
            Err(ReplicationError::Wire(_)) => self.exchange(&f, Waiter::Catalog),
            other => other,
        };
        answer.map_err(|e| match e {
            ReplicationError::Refused { code, why } if code == REFUSED_DEPOSED => deposed(&why),
            e => io::Error::other(e.to_string()),
        })
    }
}

/// A frame sent, its answer not read yet.
struct Pending {
    conn: Conn,
    seq: u64,
    /// Its answer may take long (the connection's timeout is set back after it).
    slow: bool,
}

impl PeerReplica {
    /// The frame of a write or a zeroing (its data borrowed).
    fn change_frame<'a>(&self, volume: &str, offset: u64, op: WriteOp<'a>) -> Frame<'a> {
        let mut f = Frame::new(Kind::Write, 0);
        f.volume = volume.to_string();
        f.epoch = self.epoch(volume);
        f.offset = offset;
        match op {
            WriteOp::Data(buf) => {
                f.len = buf.len() as u64;
                f.payload = std::borrow::Cow::Borrowed(buf);
            }
            WriteOp::Zeroes { len, may_trim } => {
                f.kind = Kind::Zeroes;
                f.len = len;
                if may_trim {
                    f.flags |= FLAG_TRIM;
                }
            }
        }
        f
    }

    fn flush_frame(&self, volume: &str) -> Frame<'static> {
        let mut f = Frame::new(Kind::Flush, 0);
        f.volume = volume.to_string();
        f.epoch = self.epoch(volume);
        f
    }

    /// Sends `f`, runs `local` (this node's share of the work) while the peer applies it,
    /// then waits for the peer; an attempt that fails is retried as [`Self::replicate`] does.
    /// A change costs the slower of the two nodes, not their sum.
    fn while_sent(
        &self,
        f: &Frame<'_>,
        local: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let waiting = self.wait_for_answer();
        let sent = self.send(f);
        fail::fail_point!("replication::sent");
        let here = local();
        fail::fail_point!("replication::applied_here");
        let outcome = sent.and_then(|p| self.answer(p)).map(drop);
        drop(waiting);
        let mut warned = false;
        let there = match self.settle(f, outcome, &mut warned) {
            Some(done) => done,
            // Not answered: sent again (a write, a zeroing and a flush are idempotent).
            None => self.replicate(f, Waiter::Client),
        };
        here.and(there)
    }
}

impl Replica for PeerReplica {
    fn write(&self, volume: &str, offset: u64, op: WriteOp<'_>) -> io::Result<()> {
        self.replicate(&self.change_frame(volume, offset, op), Waiter::Copy)
    }

    fn write_while(
        &self,
        volume: &str,
        offset: u64,
        op: WriteOp<'_>,
        local: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        // A node that no longer serves the volume changes nothing, here or there.
        if !self.ownership.owns(volume) {
            return Err(deposed(&format!(
                "volume {volume} is served by the other node now"
            )));
        }
        let f = self.change_frame(volume, offset, op);
        if self.skips(&f) {
            return local();
        }
        self.while_sent(&f, local)
    }

    fn flush(&self, volume: &str) -> io::Result<()> {
        self.replicate(&self.flush_frame(volume), Waiter::Copy)
    }

    /// Sends the flush, syncs here meanwhile, then waits for the peer's sync.
    fn flush_while(
        &self,
        volume: &str,
        local: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let f = self.flush_frame(volume);
        if self.skips(&f) {
            return local();
        }
        self.while_sent(&f, local)
    }

    fn in_sync(&self, volume: &str) -> bool {
        !self.peer_outdated() && !self.degraded.lock().contains(volume)
    }

    fn skipped(&self, volume: &str) -> u64 {
        self.skipped.lock().get(volume).copied().unwrap_or(0)
    }

    fn resume(&self, volume: &str) {
        self.degraded.lock().remove(volume);
    }

    fn hold(&self, volume: &str) {
        self.degraded.lock().insert(volume.to_string());
    }

    fn ownership(&self) -> Option<Arc<Ownership>> {
        Some(Arc::clone(&self.ownership))
    }

    fn peer_regions(&self, volume: &str) -> io::Result<Option<PeerCopy>> {
        let answer = self.regions_frame(volume, 0, 0)?;
        if answer.flags & wire::FLAG_MISSING != 0 {
            return Ok(None);
        }
        Ok(Some(PeerCopy {
            regions: answer
                .payload
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            generation: answer.offset,
        }))
    }

    fn peer_regions_taken(&self, volume: &str) -> io::Result<()> {
        self.regions_frame(volume, wire::FLAG_CLEAR, 0).map(drop)
    }

    fn peer_generation_set(&self, volume: &str, generation: u64) -> io::Result<()> {
        self.regions_frame(volume, wire::FLAG_GENERATION, generation)
            .map(drop)
    }

    fn catalog(&self, op: &CatalogOp) -> io::Result<()> {
        let mut f = Frame::new(Kind::Catalog, 0);
        f.epoch = match op.home() {
            Some(home) => self.ownership.group_epoch(home),
            None => self.ownership.epoch_of(op.volume()),
        };
        f.payload = serde_json::to_vec(op).map_err(io::Error::other)?.into();
        self.replicate(&f, Waiter::Catalog)
    }
}

/// Why the replica refuses a frame: the code sent back (`wire::REFUSED_*`) and the reason.
type Refusal = (u32, String);

/// The replica's side: applies what the owner of each volume sends.
#[derive(Debug)]
pub struct ReplicaServer {
    store: Arc<Store>,
    me: Hello,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl ReplicaServer {
    /// Takes plain TCP connections (tests on one host).
    pub fn new(store: Arc<Store>, me: Hello) -> Arc<ReplicaServer> {
        Self::with_tls(store, me, None)
    }

    /// Takes connections with mutual TLS only: the peer must show a certificate of the
    /// pair's CA ([`tls::server_config`]).
    pub fn with_tls(
        store: Arc<Store>,
        me: Hello,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Arc<ReplicaServer> {
        Arc::new(ReplicaServer { store, me, tls })
    }

    /// Serves connections from `listener`, each on a thread of its own, for ever.
    pub fn serve(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let me = Arc::clone(&self);
            std::thread::spawn(move || {
                let peer = stream.peer_addr().ok();
                if let Err(e) = me.connection(stream) {
                    tracing::warn!("replication connection from {peer:?}: {e}");
                }
            });
        }
    }

    fn refuse(conn: &mut Conn, seq: u64, code: u32, why: &str) -> Result<(), WireError> {
        let mut f = Frame::new(Kind::Refuse, seq);
        f.flags = code;
        f.payload = why.as_bytes().into();
        conn.send(&f)
    }

    /// One owner's connection: its hello, then frames until it ends or one is refused.
    pub fn connection(&self, stream: TcpStream) -> Result<(), ReplicationError> {
        stream.set_nodelay(true).map_err(WireError::Io)?;
        let mut conn = match &self.tls {
            None => Conn::new(Box::new(stream)),
            Some(config) => {
                let tls = rustls::ServerConnection::new(Arc::clone(config))
                    .map_err(|e| WireError::Io(io::Error::other(e)))?;
                Conn::new(Box::new(rustls::StreamOwned::new(tls, stream)))
            }
        };
        let hello = match conn.receive() {
            Ok(f) => f,
            Err(e @ WireError::Version { .. }) => {
                let _ = Self::refuse(&mut conn, 0, REFUSED_DEPOSED, &e.to_string());
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let theirs: Option<Hello> = serde_json::from_slice(&hello.payload).ok();
        let sender = match theirs {
            Some(h) if hello.kind == Kind::Hello && h.cluster_id == self.me.cluster_id => h.node,
            other => {
                let why = format!(
                    "this is {} of pair {}; {other:?} is not a member",
                    self.me.node, self.me.cluster_id
                );
                Self::refuse(&mut conn, 0, REFUSED_DEPOSED, &why)?;
                return Err(ReplicationError::Refused {
                    code: REFUSED_DEPOSED,
                    why,
                });
            }
        };
        let mut answer = Frame::new(Kind::Hello, 0);
        answer.payload = serde_json::to_vec(&self.me).unwrap_or_default().into();
        conn.send(&answer)?;
        // The writes' data is read into this buffer, frame after frame (a few MiB at most are
        // kept: an occasional bigger write does not hold its memory for the connection's life).
        let mut buf = Vec::new();
        loop {
            if buf.capacity() > KEEP_RECEIVE_BUFFER {
                buf = Vec::new();
            }
            let f = match conn.receive_in(&mut buf) {
                Ok(f) => f,
                Err(WireError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if f.kind == Kind::Regions {
                match self.regions(&f) {
                    Ok(Some((payload, generation))) => {
                        let mut ack = Frame::new(Kind::Ack, f.seq);
                        ack.payload = payload.into();
                        ack.offset = generation;
                        conn.send(&ack)?;
                    }
                    Ok(None) => {
                        let mut ack = Frame::new(Kind::Ack, f.seq);
                        ack.flags = wire::FLAG_MISSING;
                        conn.send(&ack)?;
                    }
                    Err((code, why)) => {
                        Self::refuse(&mut conn, f.seq, code, &why)?;
                        return Err(ReplicationError::Refused { code, why });
                    }
                }
                continue;
            }
            match self.apply(&f, &sender) {
                Ok(()) => {
                    fail::fail_point!("replica::applied");
                    conn.send(&Frame::new(Kind::Ack, f.seq))?
                }
                Err((code, why)) => {
                    Self::refuse(&mut conn, f.seq, code, &why)?;
                    return Err(ReplicationError::Refused { code, why });
                }
            }
        }
    }

    /// The replica's own marked regions of a volume (cleared with [`wire::FLAG_CLEAR`]), for
    /// the volume's owner only: a deposed node must not learn, nor clear, anything.
    /// Its payload, and the copy's generation (after setting it, with
    /// [`wire::FLAG_GENERATION`]).
    fn regions(&self, f: &Frame<'_>) -> Result<Option<(Vec<u8>, u64)>, Refusal> {
        let ownership = self.store.ownership();
        if let Some(home) = ownership.known_home(&f.volume) {
            ownership
                .admit(&home, f.epoch)
                .map_err(|e| (REFUSED_DEPOSED, format!("volume {}: {e}", f.volume)))?;
        }
        let cannot = |e: crate::store::StoreError| (REFUSED_CANNOT_APPLY, e.to_string());
        if f.flags & wire::FLAG_GENERATION != 0 {
            match self.store.set_generation(&f.volume, f.offset) {
                Ok(()) => {}
                Err(crate::store::StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(cannot(e)),
            }
        }
        let regions = match self
            .store
            .activity_regions(&f.volume, f.flags & wire::FLAG_CLEAR != 0)
        {
            Ok(r) => r,
            Err(crate::store::StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(cannot(e)),
        };
        let (generation, _) = self.store.generation(&f.volume).map_err(cannot)?;
        Ok(Some((
            regions.iter().flat_map(|r| r.to_le_bytes()).collect(),
            generation,
        )))
    }

    /// Applies one frame of `sender`'s, if its epoch says the sender owns the group.
    fn apply(&self, f: &Frame<'_>, sender: &str) -> Result<(), Refusal> {
        let ownership = self.store.ownership();
        if f.kind == Kind::Catalog {
            return self.apply_catalog(f, sender);
        }
        let home = ownership
            .known_home(&f.volume)
            .unwrap_or_else(|| sender.to_string());
        ownership
            .admit(&home, f.epoch)
            .map_err(|e| (REFUSED_DEPOSED, format!("volume {}: {e}", f.volume)))?;
        let cannot = |why: String| (REFUSED_CANNOT_APPLY, why);
        let lease = self
            .store
            .lease(&f.volume)
            .map_err(|e| cannot(e.to_string()))?;
        let v = lease.volume();
        let sync = f.flags & FLAG_FUA != 0;
        let r = match f.kind {
            Kind::Write => {
                if f.payload.len() as u64 != f.len {
                    return Err(cannot(format!(
                        "a write of {} bytes carries {}",
                        f.len,
                        f.payload.len()
                    )));
                }
                v.apply_replicated(f.offset, Some(WriteOp::Data(&f.payload)), sync)
            }
            Kind::Zeroes => v.apply_replicated(
                f.offset,
                Some(WriteOp::Zeroes {
                    len: f.len,
                    may_trim: f.flags & FLAG_TRIM != 0,
                }),
                sync,
            ),
            Kind::Flush => v.apply_replicated(0, None, true),
            other => {
                return Err(cannot(format!(
                    "a {other:?} frame where a change was expected"
                )));
            }
        };
        r.map_err(|e| cannot(format!("volume {}: {e}", f.volume)))
    }

    /// Applies a catalog change of `sender`'s: refused (deposed) when it was sent with an
    /// older epoch of its group than this node knows.
    fn apply_catalog(&self, f: &Frame<'_>, sender: &str) -> Result<(), Refusal> {
        let cannot = |why: String| (REFUSED_CANNOT_APPLY, why);
        let op: CatalogOp = serde_json::from_slice(&f.payload)
            .map_err(|e| cannot(format!("not a catalog change: {e}")))?;
        let s = &self.store;
        // A new volume is in the group the change names (its sender's when none); a change of
        // an existing one, in that volume's.
        let home = match &op {
            CatalogOp::Create { .. } | CatalogOp::Clone { .. } => op.home().map(str::to_string),
            _ => s.ownership().home_of(op.volume()),
        }
        .unwrap_or_else(|| sender.to_string());
        let known = s.ownership().group_epoch(&home);
        if f.epoch < known {
            return Err((
                REFUSED_DEPOSED,
                format!(
                    "group {home} is at epoch {known}; {op:?} of epoch {} comes from a node \
                     that no longer owns it",
                    f.epoch
                ),
            ));
        }
        let home = Some(home.as_str());
        let done = match &op {
            CatalogOp::Create { id, name, size, .. } => {
                s.create_as(id, name.as_deref(), *size, home).map(drop)
            }
            CatalogOp::Clone {
                id, parent, name, ..
            } => s.clone_as(id, parent, name.as_deref(), home).map(drop),
            CatalogOp::Snapshot {
                volume,
                snapshot_id,
                name,
            } => s
                .snapshot_as(volume, snapshot_id, name.as_deref())
                .map(drop),
            CatalogOp::Freeze { id, checksum } => s.freeze_as(id, checksum).map(drop),
            CatalogOp::Delete { id } => s.delete_as(id),
            CatalogOp::Export {
                id,
                allow,
                read_only,
                iscsi,
            } => s
                .export_put(crate::store::ExportRecord {
                    volume: id.clone(),
                    allow: allow.clone(),
                    read_only: *read_only,
                    iscsi: iscsi.clone(),
                })
                .map(drop),
            CatalogOp::Unexport { id } => s.export_drop(id),
        };
        done.map_err(|e| cannot(format!("{op:?}: {e}")))
    }
}
