//! Fixed-newstyle option haggling: from the greeting to the choice of one export.
//!
//! Every option gets a reply and the connection carries on, except NBD_OPT_EXPORT_NAME (which
//! cannot report errors, so a refusal closes the connection) and NBD_OPT_ABORT. Exports are
//! opened through the catalog with the client's address; refusals are logged.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ServerConfig;
use crate::block::BlockDevice;
use crate::export::{ExportCatalog, ExportError, OpenExport};
use nbd_wire::*;

/// Longest option payload we read: a 4096-byte name plus a few meta-context queries. Larger
/// options can only be an attempt to make us buffer memory.
const MAX_OPTION_LEN: u32 = 64 << 10;

/// Why the handshake ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection I/O failed during handshake")]
    Io(#[from] std::io::Error),
    #[error("client sent unknown handshake flags {0:#x}")]
    ClientFlags(u32),
    #[error("client option has bad magic {0:#x}")]
    BadMagic(u64),
    #[error("option {option} announces {len} bytes of data (limit {MAX_OPTION_LEN})")]
    OptionTooLong { option: u32, len: u32 },
    #[error("export requested by NBD_OPT_EXPORT_NAME could not be opened")]
    ExportRefused(#[source] ExportError),
    #[error("export name is not UTF-8")]
    NameNotUtf8,
    #[error("export catalog task failed")]
    Catalog(#[source] tokio::task::JoinError),
}

/// What the handshake agreed on.
#[derive(Debug)]
pub struct Session {
    pub export: OpenExport,
    pub client: IpAddr,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` is selected for this export, so BLOCK_STATUS is allowed.
    pub base_allocation: bool,
}

/// Options negotiated so far.
#[derive(Debug, Default)]
struct Haggle {
    structured: bool,
    /// The export `base:allocation` was selected for by the last SET_META_CONTEXT.
    meta_export: Option<String>,
}

/// Runs the handshake; `Ok(None)` when the client aborted politely.
pub async fn negotiate<R, W>(
    r: &mut R,
    w: &mut W,
    client: IpAddr,
    catalog: &Arc<dyn ExportCatalog>,
    config: &ServerConfig,
) -> Result<Option<Session>, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    w.write_all(&greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        .await?;
    w.flush().await?;

    let client_flags = r.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(HandshakeError::ClientFlags(client_flags));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut st = Haggle::default();

    loop {
        let magic = r.read_u64().await?;
        if magic != IHAVEOPT {
            return Err(HandshakeError::BadMagic(magic));
        }
        let option = r.read_u32().await?;
        let len = r.read_u32().await?;
        if len > MAX_OPTION_LEN {
            return Err(HandshakeError::OptionTooLong { option, len });
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data).await?;

        match option {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8(data).map_err(|_| HandshakeError::NameNotUtf8)?;
                let export = open(catalog, &name, client)
                    .await?
                    .map_err(HandshakeError::ExportRefused)?;
                let device = &export.device;
                let mut reply = Vec::with_capacity(10 + 124);
                reply.extend_from_slice(&device.size().to_be_bytes());
                reply
                    .extend_from_slice(&transmission_flags(&**device, st.structured).to_be_bytes());
                if !no_zeroes {
                    reply.resize(10 + 124, 0);
                }
                w.write_all(&reply).await?;
                w.flush().await?;
                let base_allocation = st.meta_export.as_deref() == Some(name.as_str());
                return Ok(Some(Session {
                    export,
                    client,
                    structured: st.structured,
                    base_allocation,
                }));
            }
            OPT_ABORT => {
                reply(w, option, REP_ACK, &[]).await?;
                w.flush().await?;
                return Ok(None);
            }
            OPT_LIST => {
                if data.is_empty() {
                    let cat = Arc::clone(catalog);
                    let exports = tokio::task::spawn_blocking(move || cat.list(client))
                        .await
                        .map_err(HandshakeError::Catalog)?;
                    for e in exports {
                        let mut d = Vec::with_capacity(4 + e.name.len() + e.description.len());
                        d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                        d.extend_from_slice(e.name.as_bytes());
                        d.extend_from_slice(e.description.as_bytes());
                        reply(w, option, REP_SERVER, &d).await?;
                    }
                    reply(w, option, REP_ACK, &[]).await?;
                } else {
                    reply_err(w, option, REP_ERR_INVALID, "NBD_OPT_LIST takes no data").await?;
                }
            }
            OPT_STARTTLS => {
                reply_err(w, option, REP_ERR_UNSUP, "TLS is not supported").await?;
            }
            OPT_INFO | OPT_GO => {
                if let Some(session) =
                    info_or_go(w, option, &data, client, catalog, config, &st).await?
                {
                    w.flush().await?;
                    return Ok(Some(session));
                }
            }
            OPT_STRUCTURED_REPLY => {
                if data.is_empty() {
                    st.structured = true;
                    reply(w, option, REP_ACK, &[]).await?;
                } else {
                    let msg = "NBD_OPT_STRUCTURED_REPLY takes no data";
                    reply_err(w, option, REP_ERR_INVALID, msg).await?;
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                meta_context(w, option, &data, client, catalog, &mut st).await?;
            }
            _ => {
                reply_err(w, option, REP_ERR_UNSUP, "option not supported").await?;
            }
        }
        w.flush().await?;
    }
}

/// The transmission flags for `device`; DF only means something with structured replies.
pub fn transmission_flags(device: &dyn BlockDevice, structured: bool) -> u16 {
    let mut flags = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        | TFLAG_CAN_MULTI_CONN
        | TFLAG_SEND_CACHE;
    if device.read_only() {
        flags |= TFLAG_READ_ONLY;
    }
    if structured {
        flags |= TFLAG_SEND_DF;
    }
    flags
}

/// Opens `name` for `client` off the async threads (the catalog may touch disk), logging
/// refusals. The outer error is ours, the inner one the catalog's answer.
async fn open(
    catalog: &Arc<dyn ExportCatalog>,
    name: &str,
    client: IpAddr,
) -> Result<Result<OpenExport, ExportError>, HandshakeError> {
    let cat = Arc::clone(catalog);
    let owned = name.to_owned();
    let result = tokio::task::spawn_blocking(move || cat.open(&owned, client))
        .await
        .map_err(HandshakeError::Catalog)?;
    match &result {
        Ok(_) => {}
        Err(ExportError::Denied { .. }) => {
            tracing::warn!(%client, export = %name, "NBD export refused: client not on allow-list");
        }
        Err(ExportError::Unknown(_)) => {
            tracing::info!(%client, export = %name, "NBD export refused: no such export");
        }
    }
    Ok(result)
}

/// The option-reply error for a catalog refusal.
fn refusal(err: &ExportError) -> u32 {
    match err {
        ExportError::Unknown(_) => REP_ERR_UNKNOWN,
        ExportError::Denied { .. } => REP_ERR_POLICY,
    }
}

/// Splits a `u32 length, bytes` string off the front of `data`.
fn take_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// NBD_OPT_INFO / NBD_OPT_GO. Returns the session when GO succeeded.
async fn info_or_go<W: AsyncWrite + Unpin>(
    w: &mut W,
    option: u32,
    data: &[u8],
    client: IpAddr,
    catalog: &Arc<dyn ExportCatalog>,
    config: &ServerConfig,
    st: &Haggle,
) -> Result<Option<Session>, HandshakeError> {
    let parsed = take_string(data).and_then(|(name, rest)| {
        let (count, rest) = rest.split_first_chunk::<2>()?;
        let count = u16::from_be_bytes(*count) as usize;
        (rest.len() == count * 2).then(|| {
            let requests: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            (name, requests)
        })
    });
    let Some((name, requests)) = parsed else {
        reply_err(w, option, REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO").await?;
        return Ok(None);
    };
    let Ok(name) = std::str::from_utf8(name) else {
        reply_err(w, option, REP_ERR_INVALID, "export name is not UTF-8").await?;
        return Ok(None);
    };
    let export = match open(catalog, name, client).await? {
        Ok(export) => export,
        Err(err) => {
            reply_err(w, option, refusal(&err), &err.to_string()).await?;
            return Ok(None);
        }
    };

    let device = &export.device;
    let info = ExportInfo {
        size: device.size(),
        flags: transmission_flags(&**device, st.structured),
    };
    reply(w, option, REP_INFO, &info.encode()).await?;

    let wants = |t: u16| requests.contains(&t);
    if wants(INFO_NAME) {
        let mut d = INFO_NAME.to_be_bytes().to_vec();
        d.extend_from_slice(export.name.as_bytes());
        reply(w, option, REP_INFO, &d).await?;
    }
    if wants(INFO_DESCRIPTION) {
        let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
        d.extend_from_slice(export.description.as_bytes());
        reply(w, option, REP_INFO, &d).await?;
    }
    if wants(INFO_BLOCK_SIZE) {
        let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        d.extend_from_slice(&config.min_block_size.to_be_bytes());
        d.extend_from_slice(&config.preferred_block_size.to_be_bytes());
        d.extend_from_slice(&config.max_request_bytes.to_be_bytes());
        reply(w, option, REP_INFO, &d).await?;
    }
    reply(w, option, REP_ACK, &[]).await?;

    if option != OPT_GO {
        return Ok(None);
    }
    // Contexts selected for a different export do not carry over to this one.
    let base_allocation = st.meta_export.as_deref() == Some(name);
    Ok(Some(Session {
        export,
        client,
        structured: st.structured,
        base_allocation,
    }))
}

/// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT; only `base:allocation` exists.
async fn meta_context<W: AsyncWrite + Unpin>(
    w: &mut W,
    option: u32,
    data: &[u8],
    client: IpAddr,
    catalog: &Arc<dyn ExportCatalog>,
    st: &mut Haggle,
) -> Result<(), HandshakeError> {
    let parsed = take_string(data).and_then(|(name, rest)| {
        let (count, mut rest) = rest.split_first_chunk::<4>()?;
        let count = u32::from_be_bytes(*count);
        let mut queries = Vec::new();
        for _ in 0..count {
            let (q, tail) = take_string(rest)?;
            queries.push(q);
            rest = tail;
        }
        rest.is_empty().then_some((name, queries))
    });
    let Some((name, queries)) = parsed else {
        reply_err(w, option, REP_ERR_INVALID, "malformed meta context option").await?;
        return Ok(());
    };
    let Ok(name) = std::str::from_utf8(name) else {
        reply_err(w, option, REP_ERR_INVALID, "export name is not UTF-8").await?;
        return Ok(());
    };
    let set = option == OPT_SET_META_CONTEXT;
    if set && !st.structured {
        let msg = "structured replies must be negotiated first";
        reply_err(w, option, REP_ERR_INVALID, msg).await?;
        return Ok(());
    }
    if let Err(err) = open(catalog, name, client).await? {
        reply_err(w, option, refusal(&err), &err.to_string()).await?;
        return Ok(());
    }

    // An empty LIST means "everything you have"; `base:` lists the whole namespace.
    let selected = if set {
        queries.iter().any(|q| *q == BASE_ALLOCATION.as_bytes())
    } else {
        queries.is_empty()
            || queries
                .iter()
                .any(|q| *q == BASE_ALLOCATION.as_bytes() || *q == b"base:")
    };
    if selected {
        // LIST replies carry context id 0: the id is only meaningful once SET picks it.
        let id = if set { BASE_ALLOCATION_ID } else { 0 };
        let mut d = id.to_be_bytes().to_vec();
        d.extend_from_slice(BASE_ALLOCATION.as_bytes());
        reply(w, option, REP_META_CONTEXT, &d).await?;
    }
    if set {
        st.meta_export = selected.then(|| name.to_owned());
    }
    reply(w, option, REP_ACK, &[]).await?;
    Ok(())
}

async fn reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    option: u32,
    kind: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let header = OptionReply::new(option, kind, data.len() as u32);
    w.write_all(&header.encode()).await?;
    w.write_all(data).await
}

async fn reply_err<W: AsyncWrite + Unpin>(
    w: &mut W,
    option: u32,
    kind: u32,
    message: &str,
) -> std::io::Result<()> {
    reply(w, option, kind, message.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::test_client::{LOCAL, connect};
    use crate::testing::{MemCatalog, MemDevice};

    const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 9, 9));

    fn catalog() -> Arc<MemCatalog> {
        let cat = Arc::new(MemCatalog::new());
        cat.insert(
            "os-vol",
            "OS volume",
            Arc::new(MemDevice::new(1 << 20)),
            Some(vec![LOCAL]),
        );
        cat.insert(
            "golden",
            "Golden image",
            Arc::new(MemDevice::read_only_with(&[1; 8192])),
            None,
        );
        cat
    }

    fn u32_at(d: &[u8], i: usize) -> u32 {
        u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
    }

    #[tokio::test]
    async fn greeting_offers_fixed_newstyle_and_no_zeroes() {
        let mut c = connect(&catalog(), LOCAL);
        assert_eq!(
            c.greet(FLAG_C_FIXED_NEWSTYLE).await,
            FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES
        );
        assert_eq!(c.opt(OPT_ABORT, &[]).await, vec![(REP_ACK, vec![])]);
        assert!(c.closed().await);
        assert!(c.server.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn unknown_client_flags_close_the_connection() {
        let mut c = connect(&catalog(), LOCAL);
        c.greet(1 << 7).await;
        assert!(c.closed().await);
        let err = c.server.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            crate::nbd::ConnectionError::Handshake(HandshakeError::ClientFlags(0x80))
        ));
    }

    #[tokio::test]
    async fn list_shows_only_exports_the_client_may_see() {
        let cat = catalog();
        let mut c = connect(&cat, STRANGER);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        let replies = c.opt(OPT_LIST, &[]).await;
        assert_eq!(replies.len(), 2, "{replies:?}");
        let (kind, d) = &replies[0];
        assert_eq!(*kind, REP_SERVER);
        assert_eq!(u32_at(d, 0), 6);
        assert_eq!(&d[4..10], b"golden");
        assert_eq!(&d[10..], b"Golden image");
        assert_eq!(replies[1], (REP_ACK, vec![]));

        let mut c = connect(&cat, LOCAL);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        let names: Vec<Vec<u8>> = c
            .opt(OPT_LIST, &[])
            .await
            .into_iter()
            .filter(|r| r.0 == REP_SERVER)
            .map(|(_, d)| d[4..4 + u32_at(&d, 0) as usize].to_vec())
            .collect();
        assert_eq!(names, vec![b"golden".to_vec(), b"os-vol".to_vec()]);
    }

    #[tokio::test]
    async fn malformed_unknown_and_tls_options_are_refused_and_haggling_continues() {
        let mut c = connect(&catalog(), LOCAL);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        assert_eq!(c.opt(OPT_LIST, b"x").await[0].0, REP_ERR_INVALID);
        assert_eq!(c.opt(OPT_STARTTLS, &[]).await[0].0, REP_ERR_UNSUP);
        assert_eq!(c.opt(4242, b"whatever").await[0].0, REP_ERR_UNSUP);
        assert_eq!(
            c.opt(OPT_STRUCTURED_REPLY, b"x").await[0].0,
            REP_ERR_INVALID
        );
        assert_eq!(
            c.opt(OPT_GO, &[0, 0, 0, 9, b'a']).await[0].0,
            REP_ERR_INVALID
        );
        // Still alive and able to negotiate.
        assert_eq!(
            c.opt(OPT_LIST, &[]).await.last().map(|r| r.0),
            Some(REP_ACK)
        );
        let replies = c.info_or_go(OPT_GO, "os-vol", &[]).await;
        assert_eq!(replies.last().map(|r| r.0), Some(REP_ACK));
    }

    #[tokio::test]
    async fn info_reports_size_flags_name_description_and_block_sizes() {
        let mut c = connect(&catalog(), LOCAL);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        let replies = c
            .info_or_go(
                OPT_INFO,
                "golden",
                &[INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE],
            )
            .await;
        assert_eq!(replies.len(), 5, "{replies:?}");
        let export = &replies[0].1;
        assert_eq!(u16::from_be_bytes([export[0], export[1]]), INFO_EXPORT);
        assert_eq!(u64::from_be_bytes(export[2..10].try_into().unwrap()), 8192);
        let flags = u16::from_be_bytes([export[10], export[11]]);
        for f in [
            TFLAG_HAS_FLAGS,
            TFLAG_READ_ONLY,
            TFLAG_SEND_FLUSH,
            TFLAG_SEND_FUA,
            TFLAG_SEND_TRIM,
            TFLAG_SEND_WRITE_ZEROES,
            TFLAG_CAN_MULTI_CONN,
        ] {
            assert_ne!(flags & f, 0, "flag {f:#x} missing from {flags:#x}");
        }
        assert_eq!(flags & TFLAG_SEND_DF, 0, "DF needs structured replies");
        assert_eq!(
            replies[1],
            (REP_INFO, [&INFO_NAME.to_be_bytes()[..], b"golden"].concat())
        );
        assert_eq!(
            replies[2],
            (
                REP_INFO,
                [&INFO_DESCRIPTION.to_be_bytes()[..], b"Golden image"].concat()
            )
        );
        let bs = &replies[3].1;
        assert_eq!(
            (u32_at(bs, 2), u32_at(bs, 6), u32_at(bs, 10)),
            (1, 4096, 32 << 20)
        );
        assert_eq!(replies[4], (REP_ACK, vec![]));

        // INFO does not end haggling; a writable export lacks READ_ONLY, and DF appears once
        // structured replies are on.
        assert_eq!(
            c.opt(OPT_STRUCTURED_REPLY, &[]).await,
            vec![(REP_ACK, vec![])]
        );
        let replies = c.info_or_go(OPT_GO, "os-vol", &[]).await;
        assert_eq!(replies.len(), 2);
        let flags = u16::from_be_bytes([replies[0].1[10], replies[0].1[11]]);
        assert_eq!(flags & TFLAG_READ_ONLY, 0);
        assert_ne!(flags & TFLAG_SEND_DF, 0);
    }

    #[tokio::test]
    async fn unknown_and_denied_exports_are_refused_with_distinct_errors() {
        let cat = catalog();
        let mut c = connect(&cat, STRANGER);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        let r = c.info_or_go(OPT_GO, "nope", &[]).await;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, REP_ERR_UNKNOWN);
        let r = c.info_or_go(OPT_GO, "os-vol", &[]).await;
        assert_eq!(r[0].0, REP_ERR_POLICY);
        assert!(String::from_utf8_lossy(&r[0].1).contains("10.9.9.9"));
        let r = c.meta(OPT_LIST_META_CONTEXT, "os-vol", &[]).await;
        assert_eq!(r[0].0, REP_ERR_POLICY);
        assert_eq!(cat.open_leases(), 0);
        // The refused client can still use what it is allowed to.
        let r = c.info_or_go(OPT_GO, "golden", &[]).await;
        assert_eq!(r.last().map(|r| r.0), Some(REP_ACK));
        assert_eq!(cat.open_leases(), 1);
    }

    /// Collects formatted log output for assertions.
    #[derive(Clone, Default)]
    struct LogBuf(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One process-wide subscriber writing into a buffer. A per-test `set_default` is not
    /// reliable: tracing caches each call site's interest globally, so a test running on
    /// another thread without a subscriber can disable the call site for this one.
    fn global_logs() -> LogBuf {
        static LOGS: std::sync::OnceLock<LogBuf> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = LogBuf::default();
            let sink = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            // Fails only if another test installed a global subscriber first; then the
            // assertion below reports it.
            let _ = tracing::subscriber::set_global_default(subscriber);
            logs
        })
        .clone()
    }

    #[tokio::test]
    async fn denied_client_is_logged_with_client_and_export() {
        let logs = global_logs();
        let mut c = connect(&catalog(), STRANGER);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        assert_eq!(
            c.info_or_go(OPT_GO, "os-vol", &[]).await[0].0,
            REP_ERR_POLICY
        );
        let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains("10.9.9.9") && l.contains("os-vol")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn export_name_replies_with_or_without_zero_padding() {
        let cat = catalog();
        for (flags, padding) in [
            (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES, 0),
            (FLAG_C_FIXED_NEWSTYLE, 124),
        ] {
            let mut c = connect(&cat, LOCAL);
            c.greet(flags).await;
            c.send_opt(OPT_EXPORT_NAME, b"golden").await;
            let reply = c.read_exact(10 + padding).await;
            assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), 8192);
            assert_ne!(
                u16::from_be_bytes([reply[8], reply[9]]) & TFLAG_READ_ONLY,
                0
            );
            assert!(reply[10..].iter().all(|&b| b == 0));
            // Transmission works right after: a flush gets a simple reply.
            c.request(CMD_FLUSH, 0, 5, 0, 0, &[]).await;
            assert_eq!(c.simple(0).await, (0, 5, vec![]));
        }
    }

    #[tokio::test]
    async fn export_name_refusal_closes_the_connection() {
        for (name, client) in [("nope", LOCAL), ("os-vol", STRANGER)] {
            let mut c = connect(&catalog(), client);
            c.greet(FLAG_C_FIXED_NEWSTYLE).await;
            c.send_opt(OPT_EXPORT_NAME, name.as_bytes()).await;
            assert!(c.closed().await, "{name}");
            let err = c.server.await.unwrap().unwrap_err();
            assert!(matches!(
                err,
                crate::nbd::ConnectionError::Handshake(HandshakeError::ExportRefused(_))
            ));
        }
    }

    #[tokio::test]
    async fn meta_contexts_offer_only_base_allocation() {
        let mut c = connect(&catalog(), LOCAL);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        let r = c
            .meta(OPT_SET_META_CONTEXT, "os-vol", &[BASE_ALLOCATION])
            .await;
        assert_eq!(r[0].0, REP_ERR_INVALID, "SET before structured replies");

        let base = |id: u32| {
            (
                REP_META_CONTEXT,
                [&id.to_be_bytes()[..], BASE_ALLOCATION.as_bytes()].concat(),
            )
        };
        let r = c.meta(OPT_LIST_META_CONTEXT, "os-vol", &[]).await;
        assert_eq!(r, vec![base(0), (REP_ACK, vec![])]);
        let r = c.meta(OPT_LIST_META_CONTEXT, "os-vol", &["base:"]).await;
        assert_eq!(r, vec![base(0), (REP_ACK, vec![])]);
        let r = c
            .meta(OPT_LIST_META_CONTEXT, "os-vol", &["qemu:dirty-bitmap:x"])
            .await;
        assert_eq!(r, vec![(REP_ACK, vec![])]);
        let r = c.meta(OPT_LIST_META_CONTEXT, "missing", &[]).await;
        assert_eq!(r[0].0, REP_ERR_UNKNOWN);

        assert_eq!(
            c.opt(OPT_STRUCTURED_REPLY, &[]).await,
            vec![(REP_ACK, vec![])]
        );
        let r = c
            .meta(
                OPT_SET_META_CONTEXT,
                "os-vol",
                &["qemu:allocation-depth", BASE_ALLOCATION],
            )
            .await;
        assert_eq!(r, vec![base(BASE_ALLOCATION_ID), (REP_ACK, vec![])]);
        let r = c.meta(OPT_SET_META_CONTEXT, "os-vol", &[]).await;
        assert_eq!(r, vec![(REP_ACK, vec![])], "an empty SET selects nothing");
        // Truncated query list.
        assert_eq!(
            c.opt(OPT_SET_META_CONTEXT, &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9])
                .await[0]
                .0,
            REP_ERR_INVALID
        );
    }

    #[tokio::test]
    async fn bad_option_magic_and_huge_options_close_the_connection() {
        let mut c = connect(&catalog(), LOCAL);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        c.raw(b"GARBAGE!GARBAGE!").await;
        assert!(c.closed().await);
        assert!(c.server.await.unwrap().is_err());

        let mut c = connect(&catalog(), LOCAL);
        c.greet(FLAG_C_FIXED_NEWSTYLE).await;
        let mut opt = IHAVEOPT.to_be_bytes().to_vec();
        opt.extend_from_slice(&OPT_LIST.to_be_bytes());
        opt.extend_from_slice(&u32::MAX.to_be_bytes());
        c.raw(&opt).await;
        assert!(c.closed().await);
        let err = c.server.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            crate::nbd::ConnectionError::Handshake(HandshakeError::OptionTooLong { .. })
        ));
    }
}
