//! The transmission phase: a pipelined command loop over one negotiated export.
//!
//! The reader task parses requests and hands each to the blocking pool, so a slow device
//! operation never stops the next request from being read. Completed operations hand whole,
//! ready-to-send replies to a single writer task, which is what keeps every reply contiguous on
//! the wire. A semaphore of request slots and one of payload bytes bound what a connection may
//! have in flight; when they run out the reader stops reading, and TCP pushes back on the client.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::ServerConfig;
use super::buffer::BufferPool;
use super::errno::errno_of;
use super::handshake::Session;
use crate::block::{BlockDevice, Extent};
use nbd_wire::*;

/// Why a transmission phase ended other than by the client's NBD_CMD_DISC or hang-up.
#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    #[error("connection I/O failed")]
    Io(#[from] io::Error),
    #[error("request has bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("write of {len} bytes exceeds the {max}-byte request limit")]
    OversizedWrite { len: u32, max: u32 },
    #[error("reply writer failed")]
    Writer(#[source] io::Error),
    #[error("reply writer task failed")]
    WriterTask(#[source] tokio::task::JoinError),
}

/// A finished reply, holding its in-flight slot until it has been written. An empty one
/// closes the connection instead (see [`Conn::device_error`]).
struct Reply {
    bytes: Vec<u8>,
    _slot: OwnedSemaphorePermit,
    _budget: Option<OwnedSemaphorePermit>,
}

/// What every request handler needs; shared by the blocking-pool tasks.
struct Conn {
    device: Arc<dyn BlockDevice>,
    export: String,
    client: std::net::IpAddr,
    structured: bool,
    base_allocation: bool,
    max_request: u32,
    pool: Arc<BufferPool>,
    replies: mpsc::UnboundedSender<Reply>,
    /// Ends when the pair gives the volume to the other node.
    served: crate::ownership::Served,
}

impl Conn {
    fn send(
        &self,
        bytes: Vec<u8>,
        slot: OwnedSemaphorePermit,
        budget: Option<OwnedSemaphorePermit>,
    ) {
        // A closed channel means the writer has failed; the reader notices and stops.
        let _ = self.replies.send(Reply {
            bytes,
            _slot: slot,
            _budget: budget,
        });
    }

    fn error_reply(&self, cookie: u64, errno: u32, message: &str) -> Vec<u8> {
        if self.structured {
            structured_error(errno, cookie, message)
        } else {
            simple_reply(errno, cookie)
        }
    }

    fn fail(&self, cookie: u64, errno: u32, message: &str, slot: OwnedSemaphorePermit) {
        self.send(self.error_reply(cookie, errno, message), slot, None);
    }

    /// Replies to a device failure, logging it: the client only sees an errno.
    /// The reply to a request the device failed. A device that says this node must not
    /// serve the volume any more (`ConnectionAborted`: on a pair, its ownership moved to the
    /// other node) gets no error reply — an error would reach the client's guest as an I/O
    /// error — but an empty reply, which closes the connection: a client that reconnects
    /// (QEMU's `reconnect-delay`) resends the request to the node that now owns the volume.
    fn device_error(&self, req: &Request, err: &io::Error) -> Vec<u8> {
        if err.kind() == io::ErrorKind::ConnectionAborted {
            tracing::warn!(
                client = %self.client, export = %self.export, error = %err,
                "closing the connection: this node no longer serves the volume"
            );
            return Vec::new();
        }
        tracing::warn!(
            client = %self.client, export = %self.export, command = req.kind, offset = req.offset, len = req.len,
            error = %err, "NBD device operation failed"
        );
        self.error_reply(req.cookie, errno_of(err), &err.to_string())
    }
}

/// Runs the transmission phase until DISC, hang-up or a protocol violation, then waits for
/// in-flight requests to be answered.
pub async fn run<R, W>(
    mut reader: BufReader<R>,
    writer: BufWriter<W>,
    session: Session,
    config: &ServerConfig,
) -> Result<(), TransmissionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let max_request = config.max_request_bytes;
    let pool = Arc::new(BufferPool::new(
        config.max_in_flight.min(32),
        config.max_in_flight_bytes,
    ));
    let conn = Arc::new(Conn {
        device: Arc::clone(&session.export.device),
        export: session.export.name.clone(),
        client: session.client,
        structured: session.structured,
        base_allocation: session.base_allocation,
        max_request,
        pool: Arc::clone(&pool),
        replies: tx,
        served: session.export.served.clone(),
    });
    let writer_task = tokio::spawn(write_replies(writer, rx, pool));
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    // Every single request must fit in the budget or it would wait forever.
    let budget_bytes = config
        .max_in_flight_bytes
        .max(max_request as usize + STRUCTURED_HEADER_LEN + 8);
    let budget = Arc::new(Semaphore::new(budget_bytes));

    let read_result = read_requests(&mut reader, &conn, &slots, &budget).await;
    // The writer ends once every in-flight task has dropped its handle on the connection.
    drop(conn);
    let write_result = writer_task.await;
    // `session` (and its export lease) lives until the last reply is out.
    drop(session);
    read_result?;
    write_result
        .map_err(TransmissionError::WriterTask)?
        .map_err(TransmissionError::Writer)
}

async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    conn: &Arc<Conn>,
    slots: &Arc<Semaphore>,
    budget: &Arc<Semaphore>,
) -> Result<(), TransmissionError> {
    let mut header = [0u8; REQUEST_LEN];
    loop {
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            // Hanging up without DISC is rude but not an error worth more than a debug line.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let req = Request::parse(&header);
        if req.magic != REQUEST_MAGIC {
            return Err(TransmissionError::BadMagic(req.magic));
        }
        if conn.replies.is_closed() {
            return Ok(());
        }
        // The volume's group moved to the other node: the connection closes unanswered, and
        // the client (reconnecting to the same address) sends the request to the new owner.
        if !conn.served.still() {
            tracing::warn!(
                client = %conn.client, export = %conn.export,
                "closing the connection: this node no longer serves the volume"
            );
            return Ok(());
        }
        // The semaphores are never closed, so acquisition cannot fail.
        let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
            return Ok(());
        };
        match req.kind {
            CMD_DISC => return Ok(()),
            CMD_WRITE => receive_write(reader, conn, budget, req, slot).await?,
            _ => dispatch(conn, budget, req, slot).await,
        }
    }
}

/// Whether `[offset, offset + len)` lies inside the device.
fn in_range(conn: &Conn, req: &Request) -> bool {
    req.offset
        .checked_add(u64::from(req.len))
        .is_some_and(|end| end <= conn.device.size())
}

async fn receive_write<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    conn: &Arc<Conn>,
    budget: &Arc<Semaphore>,
    req: Request,
    slot: OwnedSemaphorePermit,
) -> Result<(), TransmissionError> {
    if req.len > conn.max_request {
        // Skipping the payload would mean reading up to 4 GiB we promised never to accept; the
        // spec lets us end the connection instead, after saying why.
        conn.fail(req.cookie, EINVAL, "write exceeds maximum block size", slot);
        return Err(TransmissionError::OversizedWrite {
            len: req.len,
            max: conn.max_request,
        });
    }
    let Ok(bytes) = Arc::clone(budget).acquire_many_owned(req.len).await else {
        return Ok(());
    };
    let mut data = conn.pool.get(req.len as usize);
    reader.read_exact(&mut data).await?;

    let refusal = if req.flags & !CMD_FLAGS_KNOWN != 0 {
        Some((EINVAL, "unsupported command flags"))
    } else if conn.device.read_only() {
        Some((EPERM, "export is read-only"))
    } else if !in_range(conn, &req) {
        Some((ENOSPC, "write beyond the end of the export"))
    } else {
        None
    };
    if let Some((errno, message)) = refusal {
        conn.pool.put(data);
        conn.fail(req.cookie, errno, message, slot);
        return Ok(());
    }

    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let result = if data.is_empty() {
            Ok(())
        } else {
            conn.device
                .write_at(&data, req.offset, req.flags & CMD_FLAG_FUA != 0)
        };
        conn.pool.put(data);
        let reply = match result {
            Ok(()) => simple_reply(0, req.cookie),
            Err(err) => conn.device_error(&req, &err),
        };
        conn.send(reply, slot, Some(bytes));
    });
    Ok(())
}

/// Validates and starts every command without a request payload.
async fn dispatch(
    conn: &Arc<Conn>,
    budget: &Arc<Semaphore>,
    req: Request,
    slot: OwnedSemaphorePermit,
) {
    if req.flags & !CMD_FLAGS_KNOWN != 0 {
        conn.fail(req.cookie, EINVAL, "unsupported command flags", slot);
        return;
    }
    let writes = matches!(req.kind, CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && conn.device.read_only() {
        conn.fail(req.cookie, EPERM, "export is read-only", slot);
        return;
    }
    match req.kind {
        CMD_READ => {
            if req.len > conn.max_request {
                conn.fail(req.cookie, EINVAL, "read exceeds maximum block size", slot);
            } else if !in_range(conn, &req) {
                conn.fail(
                    req.cookie,
                    EINVAL,
                    "read beyond the end of the export",
                    slot,
                );
            } else if let Ok(bytes) = Arc::clone(budget)
                .acquire_many_owned(req.len + REPLY_PREFIX_MAX)
                .await
            {
                start_read(conn, req, slot, bytes);
            }
        }
        CMD_FLUSH => run_op(conn, req, slot, |d| d.flush()),
        CMD_TRIM => {
            if !in_range(conn, &req) {
                conn.fail(
                    req.cookie,
                    EINVAL,
                    "trim beyond the end of the export",
                    slot,
                );
            } else {
                run_op(conn, req, slot, move |d| {
                    d.trim(req.offset, u64::from(req.len))?;
                    if req.flags & CMD_FLAG_FUA != 0 {
                        d.flush()?;
                    }
                    Ok(())
                });
            }
        }
        CMD_WRITE_ZEROES => {
            if !in_range(conn, &req) {
                let msg = "write beyond the end of the export";
                conn.fail(req.cookie, ENOSPC, msg, slot);
            } else {
                let may_trim = req.flags & CMD_FLAG_NO_HOLE == 0;
                let fua = req.flags & CMD_FLAG_FUA != 0;
                run_op(conn, req, slot, move |d| {
                    d.write_zeroes(req.offset, u64::from(req.len), may_trim, fua)
                });
            }
        }
        CMD_CACHE => {
            // Our devices have no slower tier to prefetch from; checking the range is all.
            if in_range(conn, &req) {
                conn.send(simple_reply(0, req.cookie), slot, None);
            } else {
                conn.fail(
                    req.cookie,
                    EINVAL,
                    "cache beyond the end of the export",
                    slot,
                );
            }
        }
        CMD_BLOCK_STATUS => {
            if !conn.base_allocation {
                let msg = "base:allocation was not negotiated";
                conn.fail(req.cookie, EINVAL, msg, slot);
            } else if req.len == 0 || !in_range(conn, &req) {
                let msg = "block status range is empty or beyond the end";
                conn.fail(req.cookie, EINVAL, msg, slot);
            } else {
                start_block_status(conn, req, slot);
            }
        }
        _ => conn.fail(req.cookie, EINVAL, "unknown command", slot),
    }
}

/// Bytes in front of READ data: a simple header, or a chunk header plus the data offset.
const REPLY_PREFIX_MAX: u32 = (STRUCTURED_HEADER_LEN + 8) as u32;

/// Largest READ first tried from the page cache on the connection's own (async) thread. A
/// cache hit is a memory copy of at most this much (tens of microseconds), which is cheaper
/// than the two thread hand-offs of the blocking pool; profiles of streaming reads showed
/// those wake-ups and context switches as the largest cost after the copies themselves.
/// Bigger reads would hold up the other connections on the same worker for too long.
const INLINE_READ_MAX: usize = 1 << 20;

fn start_read(
    conn: &Arc<Conn>,
    req: Request,
    slot: OwnedSemaphorePermit,
    bytes: OwnedSemaphorePermit,
) {
    let len = req.len as usize;
    if len == 0 {
        // A zero-length OFFSET_DATA chunk is forbidden; say "done, nothing" instead.
        let reply = if conn.structured {
            structured_done(req.cookie)
        } else {
            simple_reply(0, req.cookie)
        };
        conn.send(reply, slot, Some(bytes));
        return;
    }
    // The reply is laid out in one buffer so the data is read straight into place and
    // leaves in a single write.
    let prefix = read_reply_prefix(conn);
    let mut buf = conn.pool.get(prefix + len);
    // `read_cached` never blocks: it either completes from the page cache or gives up, and
    // then the blocking pool does the real read (an error here is re-raised by that read).
    if len <= INLINE_READ_MAX
        && matches!(
            conn.device.read_cached(&mut buf[prefix..], req.offset),
            Ok(true)
        )
    {
        finish_read(conn, req, buf, Ok(()), slot, bytes);
        return;
    }
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let result = conn.device.read_at(&mut buf[prefix..], req.offset);
        finish_read(&conn, req, buf, result, slot, bytes);
    });
}

fn read_reply_prefix(conn: &Conn) -> usize {
    if conn.structured {
        STRUCTURED_HEADER_LEN + 8
    } else {
        SIMPLE_REPLY_LEN
    }
}

/// Completes the READ reply laid out in `buf` (data already after the prefix) and sends it,
/// or sends the error instead.
fn finish_read(
    conn: &Conn,
    req: Request,
    mut buf: Vec<u8>,
    result: io::Result<()>,
    slot: OwnedSemaphorePermit,
    bytes: OwnedSemaphorePermit,
) {
    match result {
        Ok(()) => {
            if conn.structured {
                // One OFFSET_DATA chunk always satisfies NBD_CMD_FLAG_DF.
                let prefix = read_reply_prefix(conn);
                put_structured_header(
                    &mut buf,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_OFFSET_DATA,
                    req.cookie,
                    req.len + 8,
                );
                buf[STRUCTURED_HEADER_LEN..prefix].copy_from_slice(&req.offset.to_be_bytes());
            } else {
                put_simple_header(&mut buf, 0, req.cookie);
            }
            conn.send(buf, slot, Some(bytes));
        }
        Err(err) => {
            conn.pool.put(buf);
            let reply = conn.device_error(&req, &err);
            conn.send(reply, slot, Some(bytes));
        }
    }
}

/// Runs a device operation without reply data on the blocking pool.
fn run_op<F>(conn: &Arc<Conn>, req: Request, slot: OwnedSemaphorePermit, op: F)
where
    F: FnOnce(&dyn BlockDevice) -> io::Result<()> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let reply = match op(&*conn.device) {
            Ok(()) => simple_reply(0, req.cookie),
            Err(err) => conn.device_error(&req, &err),
        };
        conn.send(reply, slot, None);
    });
}

fn start_block_status(conn: &Arc<Conn>, req: Request, slot: OwnedSemaphorePermit) {
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let reply = match conn.device.block_status(req.offset, u64::from(req.len)) {
            Ok(extents) => {
                let descriptors = descriptors(&extents, req.len, req.flags & CMD_FLAG_REQ_ONE != 0);
                if descriptors.is_empty() {
                    let err = io::Error::other("device reported no extents");
                    conn.device_error(&req, &err)
                } else {
                    block_status_reply(req.cookie, &descriptors)
                }
            }
            Err(err) => conn.device_error(&req, &err),
        };
        conn.send(reply, slot, None);
    });
}

/// Turns device extents into `(length, flags)` descriptors: clipped to the request (so each
/// fits a u32), adjacent equal states merged, and only the first one when `req_one`.
fn descriptors(extents: &[Extent], len: u32, req_one: bool) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut left = len;
    for e in extents {
        if left == 0 {
            break;
        }
        let take = e.len.min(u64::from(left)) as u32;
        if take == 0 {
            continue;
        }
        let flags = if e.hole { STATE_HOLE } else { 0 } | if e.zero { STATE_ZERO } else { 0 };
        match out.last_mut() {
            Some(last) if last.1 == flags => last.0 += take,
            _ => out.push((take, flags)),
        }
        left -= take;
    }
    if req_one {
        out.truncate(1);
    }
    out
}

fn block_status_reply(cookie: u64, descriptors: &[(u32, u32)]) -> Vec<u8> {
    let payload = 4 + 8 * descriptors.len();
    let mut out = Vec::with_capacity(STRUCTURED_HEADER_LEN + payload);
    out.resize(STRUCTURED_HEADER_LEN, 0);
    put_structured_header(
        &mut out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        payload as u32,
    );
    out.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
    for (len, flags) in descriptors {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
    }
    out
}

/// The only task that writes to the socket once transmission starts.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut w: BufWriter<W>,
    mut rx: mpsc::UnboundedReceiver<Reply>,
    pool: Arc<BufferPool>,
) -> io::Result<()> {
    // Deliberately not given the `Conn`: its reply sender would keep the channel open forever.
    let closing = || io::Error::new(io::ErrorKind::ConnectionAborted, "closed: volume moved");
    while let Some(reply) = rx.recv().await {
        if reply.bytes.is_empty() {
            w.flush().await?;
            w.shutdown().await?;
            return Err(closing());
        }
        w.write_all(&reply.bytes).await?;
        pool.put(reply.bytes);
        // Batch whatever else is already finished into the same flush.
        while let Ok(more) = rx.try_recv() {
            if more.bytes.is_empty() {
                w.flush().await?;
                w.shutdown().await?;
                return Err(closing());
            }
            w.write_all(&more.bytes).await?;
            pool.put(more.bytes);
        }
        w.flush().await?;
    }
    w.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(len: u64, hole: bool, zero: bool) -> Extent {
        Extent { len, hole, zero }
    }

    #[test]
    fn descriptors_clip_merge_and_honour_req_one() {
        let extents = [
            ext(4096, false, false),
            ext(4096, false, false),
            ext(1 << 40, true, true),
        ];
        assert_eq!(
            descriptors(&extents, 10_000, false),
            vec![(8192, 0), (1808, STATE_HOLE | STATE_ZERO)]
        );
        assert_eq!(descriptors(&extents, 10_000, true), vec![(8192, 0)]);
        assert_eq!(descriptors(&[ext(0, true, true)], 10, false), vec![]);
        assert_eq!(
            descriptors(&[ext(100, false, true)], 10, false),
            vec![(10, STATE_ZERO)]
        );
    }
}

#[cfg(test)]
mod connection_tests {
    use std::sync::Arc;

    use crate::block::BlockDevice;
    use crate::nbd::test_client::{Client, LOCAL, connect, connect_with};
    use crate::nbd::{ConnectionError, ServerConfig, TransmissionError};
    use crate::testing::{MemCatalog, MemDevice};
    use nbd_wire::*;

    const SIZE: u64 = 1 << 20;

    fn setup() -> (Arc<MemCatalog>, Arc<MemDevice>) {
        let cat = Arc::new(MemCatalog::new());
        let dev = Arc::new(MemDevice::new(SIZE));
        cat.insert("vol", "test volume", dev.clone(), None);
        let golden = Arc::new(MemDevice::read_only_with(&[0x5a; 65536]));
        cat.insert("golden", "read-only", golden, None);
        (cat, dev)
    }

    async fn open(cat: &Arc<MemCatalog>, name: &str, structured: bool, meta: bool) -> Client {
        let mut c = connect(cat, LOCAL);
        c.open(name, structured, meta).await;
        c
    }

    fn error_of(chunk: &crate::nbd::test_client::Chunk) -> u32 {
        assert_eq!(chunk.kind, REPLY_TYPE_ERROR);
        assert_eq!(chunk.flags, REPLY_FLAG_DONE);
        u32::from_be_bytes(chunk.payload[..4].try_into().unwrap())
    }

    #[tokio::test]
    async fn simple_write_read_flush_and_fua() {
        let (cat, dev) = setup();
        let mut c = open(&cat, "vol", false, false).await;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        c.request(CMD_WRITE, 0, 1, 777, data.len() as u32, &data)
            .await;
        assert_eq!(c.simple(0).await, (0, 1, vec![]));
        c.request(CMD_READ, 0, 2, 777, data.len() as u32, &[]).await;
        assert_eq!(c.simple(data.len()).await, (0, 2, data.clone()));
        assert_eq!(&dev.contents()[777..777 + data.len()], &data[..]);

        c.request(CMD_WRITE, CMD_FLAG_FUA, 3, 0, 4, b"abcd").await;
        assert_eq!(c.simple(0).await.0, 0);
        assert_eq!(dev.fua_writes(), 1);
        c.request(CMD_FLUSH, 0, 4, 0, 0, &[]).await;
        assert_eq!(c.simple(0).await, (0, 4, vec![]));
        assert_eq!(dev.flushes(), 1);
        c.request(CMD_CACHE, 0, 5, 0, 4096, &[]).await;
        assert_eq!(c.simple(0).await, (0, 5, vec![]));
    }

    #[tokio::test]
    async fn trim_and_write_zeroes_respect_no_hole() {
        let (cat, dev) = setup();
        let mut c = open(&cat, "vol", true, true).await;
        dev.fill(&[9; 3 * 4096], 0);
        c.request(CMD_TRIM, 0, 1, 0, 4096, &[]).await;
        assert_eq!(c.simple(0).await.0, 0);
        c.request(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 2, 4096, 4096, &[])
            .await;
        assert_eq!(c.simple(0).await.0, 0);
        c.request(CMD_WRITE_ZEROES, CMD_FLAG_FUA, 3, 8192, 4096, &[])
            .await;
        assert_eq!(c.simple(0).await.0, 0);
        assert_eq!(dev.fua_writes(), 1);
        assert!(dev.contents().iter().all(|&b| b == 0));

        c.request(CMD_BLOCK_STATUS, 0, 4, 0, 4 * 4096, &[]).await;
        let chunk = c.chunk().await;
        assert_eq!(
            (chunk.kind, chunk.flags, chunk.cookie),
            (REPLY_TYPE_BLOCK_STATUS, REPLY_FLAG_DONE, 4)
        );
        let words: Vec<u32> = chunk
            .payload
            .chunks(4)
            .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
            .collect();
        let hz = STATE_HOLE | STATE_ZERO;
        // trimmed: hole; NO_HOLE zeroes: allocated zero; plain zeroes and the untouched rest: hole.
        assert_eq!(
            words,
            vec![BASE_ALLOCATION_ID, 4096, hz, 4096, STATE_ZERO, 8192, hz]
        );

        c.request(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 5, 4096, 3 * 4096, &[])
            .await;
        let chunk = c.chunk().await;
        assert_eq!(chunk.payload.len(), 12, "REQ_ONE gives one extent");
        assert_eq!(&chunk.payload[4..], &[0, 0, 16, 0, 0, 0, 0, 2]);
    }

    #[tokio::test]
    async fn structured_read_is_one_offset_data_chunk_and_errors_carry_messages() {
        let (cat, dev) = setup();
        dev.fill(b"hello", 4096);
        let mut c = open(&cat, "vol", true, false).await;
        c.request(CMD_READ, CMD_FLAG_DF, 7, 4096, 5, &[]).await;
        let chunk = c.chunk().await;
        assert_eq!(
            (chunk.kind, chunk.flags, chunk.cookie),
            (REPLY_TYPE_OFFSET_DATA, REPLY_FLAG_DONE, 7)
        );
        assert_eq!(&chunk.payload[..8], &4096u64.to_be_bytes());
        assert_eq!(&chunk.payload[8..], b"hello");

        c.request(CMD_READ, 0, 8, SIZE, 1, &[]).await;
        let chunk = c.chunk().await;
        assert_eq!(error_of(&chunk), EINVAL);
        let msg_len = u16::from_be_bytes([chunk.payload[4], chunk.payload[5]]) as usize;
        assert!(msg_len > 0 && chunk.payload.len() == 6 + msg_len);

        // BLOCK_STATUS without base:allocation negotiated.
        c.request(CMD_BLOCK_STATUS, 0, 9, 0, 4096, &[]).await;
        assert_eq!(error_of(&c.chunk().await), EINVAL);

        c.request(CMD_READ, 0, 10, 0, 0, &[]).await;
        let chunk = c.chunk().await;
        assert_eq!(
            (chunk.kind, chunk.flags, chunk.payload.len()),
            (REPLY_TYPE_NONE, REPLY_FLAG_DONE, 0)
        );
    }

    #[tokio::test]
    async fn range_permission_and_flag_errors_keep_the_connection() {
        let (cat, dev) = setup();
        let mut c = open(&cat, "vol", false, false).await;
        let cases: [(u16, u16, u64, u32, u32); 7] = [
            (CMD_READ, 0, SIZE - 1, 2, EINVAL),
            (CMD_READ, 0, u64::MAX, 2, EINVAL),
            (CMD_READ, 0, 0, (32 << 20) + 1, EINVAL),
            (CMD_TRIM, 0, SIZE, 1, EINVAL),
            (CMD_WRITE_ZEROES, 0, SIZE - 10, 20, ENOSPC),
            (CMD_READ, 1 << 4, 0, 1, EINVAL), // FAST_ZERO was not offered
            (99, 0, 0, 0, EINVAL),
        ];
        for (i, (kind, flags, offset, len, errno)) in cases.into_iter().enumerate() {
            c.request(kind, flags, i as u64, offset, len, &[]).await;
            assert_eq!(c.simple(0).await, (errno, i as u64, vec![]), "case {i}");
        }
        c.request(CMD_WRITE, 0, 50, SIZE - 2, 4, b"wxyz").await;
        assert_eq!(c.simple(0).await, (ENOSPC, 50, vec![]));
        // Still in sync: the refused payload was consumed.
        c.request(CMD_WRITE, 0, 51, 0, 4, b"wxyz").await;
        assert_eq!(c.simple(0).await, (0, 51, vec![]));
        assert_eq!(&dev.contents()[..4], b"wxyz");

        let mut ro = open(&cat, "golden", false, false).await;
        ro.request(CMD_WRITE, 0, 1, 0, 3, b"abc").await;
        assert_eq!(ro.simple(0).await, (EPERM, 1, vec![]));
        ro.request(CMD_TRIM, 0, 2, 0, 4096, &[]).await;
        assert_eq!(ro.simple(0).await, (EPERM, 2, vec![]));
        ro.request(CMD_WRITE_ZEROES, 0, 3, 0, 4096, &[]).await;
        assert_eq!(ro.simple(0).await, (EPERM, 3, vec![]));
        ro.request(CMD_READ, 0, 4, 0, 2, &[]).await;
        assert_eq!(ro.simple(2).await, (0, 4, vec![0x5a, 0x5a]));
    }

    #[tokio::test]
    async fn device_errors_map_to_errno() {
        let (cat, dev) = setup();
        let mut c = open(&cat, "vol", false, false).await;
        dev.fail_with(Some(libc::ENOSPC));
        c.request(CMD_WRITE, 0, 1, 0, 3, b"abc").await;
        assert_eq!(c.simple(0).await, (ENOSPC, 1, vec![]));
        dev.fail_with(Some(libc::EBADMSG));
        c.request(CMD_READ, 0, 2, 0, 3, &[]).await;
        assert_eq!(c.simple(3).await, (EIO, 2, vec![]));
        c.request(CMD_FLUSH, 0, 3, 0, 0, &[]).await;
        assert_eq!(c.simple(0).await, (EIO, 3, vec![]));
        dev.fail_with(None);
        c.request(CMD_READ, 0, 4, 0, 3, &[]).await;
        assert_eq!(c.simple(3).await, (0, 4, vec![0, 0, 0]));
    }

    #[tokio::test]
    async fn a_volume_that_moved_closes_the_connection_without_an_error_reply() {
        let (cat, dev) = setup();
        let mut c = open(&cat, "vol", false, false).await;
        dev.fail_with(Some(libc::ECONNABORTED));
        c.request(CMD_WRITE, 0, 1, 0, 3, b"abc").await;
        assert!(c.closed().await, "no reply, the connection closed");
        dev.fail_with(None);
    }

    #[tokio::test]
    async fn oversized_write_and_garbage_close_only_that_connection() {
        let (cat, dev) = setup();
        let mut bystander = open(&cat, "vol", false, false).await;

        let mut c = open(&cat, "vol", false, false).await;
        c.request(CMD_WRITE, 0, 1, 0, (32 << 20) + 1, &[]).await;
        assert_eq!(c.simple(0).await, (EINVAL, 1, vec![]));
        assert!(c.closed().await);
        let err = c.server.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::Transmission(TransmissionError::OversizedWrite { .. })
        ));

        let mut c = open(&cat, "vol", false, false).await;
        c.raw(&[0xff; 28]).await;
        assert!(c.closed().await);
        let err = c.server.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::Transmission(TransmissionError::BadMagic(0xffff_ffff))
        ));

        bystander.request(CMD_WRITE, 0, 9, 100, 2, b"ok").await;
        assert_eq!(bystander.simple(0).await, (0, 9, vec![]));
        assert_eq!(&dev.contents()[100..102], b"ok");
    }

    #[tokio::test]
    async fn pipelined_requests_all_get_answers() {
        let (cat, dev) = setup();
        let config = ServerConfig {
            max_in_flight: 4,
            ..ServerConfig::default()
        };
        let mut c = connect_with(&cat, LOCAL, config);
        c.open("vol", false, false).await;
        // Far more requests than slots, sent before reading any reply.
        for i in 0..100u64 {
            c.request(CMD_WRITE, 0, i, i * 4096, 4096, &[i as u8; 4096])
                .await;
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let (err, cookie, _) = c.simple(0).await;
            assert_eq!(err, 0);
            assert!(seen.insert(cookie), "duplicate reply for {cookie}");
        }
        assert_eq!(seen.len(), 100);
        let contents = dev.contents();
        for i in 0..100usize {
            assert!(
                contents[i * 4096..(i + 1) * 4096]
                    .iter()
                    .all(|&b| b == i as u8)
            );
        }
    }

    #[tokio::test]
    async fn disc_finishes_in_flight_requests_and_releases_the_export() {
        let (cat, dev) = setup();
        let mut c = open(&cat, "vol", false, false).await;
        assert_eq!(cat.open_leases(), 1);
        c.request(CMD_WRITE, 0, 1, 0, 65536, &[0xee; 65536]).await;
        c.request(CMD_DISC, 0, 2, 0, 0, &[]).await;
        assert_eq!(c.simple(0).await, (0, 1, vec![]));
        assert!(c.closed().await);
        assert!(c.server.await.unwrap().is_ok());
        assert!(dev.contents()[..65536].iter().all(|&b| b == 0xee));
        assert_eq!(dev.flushes(), 0, "DISC does not flush");
        assert_eq!(cat.open_leases(), 0);
    }

    #[tokio::test]
    async fn large_reads_up_to_the_limit_work() {
        let cat = Arc::new(MemCatalog::new());
        let dev = Arc::new(MemDevice::new(64 << 20));
        cat.insert("big", "", dev.clone(), None);
        let pattern: Vec<u8> = (0..(32u32 << 20)).map(|i| (i >> 12) as u8).collect();
        dev.write_at(&pattern, 1 << 20, false).unwrap();
        let mut c = open(&cat, "big", false, false).await;
        c.request(CMD_READ, 0, 1, 1 << 20, 32 << 20, &[]).await;
        let (err, _, data) = c.simple(32 << 20).await;
        assert_eq!(err, 0);
        assert!(data == pattern);
    }
}
