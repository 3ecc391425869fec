//! Our NBD server: fixed-newstyle handshake and a pipelined transmission phase over tokio.
//!
//! Each accepted connection negotiates one export through the [`ExportCatalog`], so a client
//! only ever reaches volumes whose allow-list names its address, and then runs in its own task:
//! one reader that keeps parsing requests while earlier ones run on the blocking pool, and one
//! writer that sends replies as they complete (possibly out of order). A misbehaving client can
//! only end its own connection; nothing here may panic or stall the listener on client input.

mod buffer;
mod errno;
mod handshake;
#[cfg(test)]
mod test_client;
mod transmission;

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::export::ExportCatalog;

pub use errno::errno_of;
pub use handshake::HandshakeError;
pub use transmission::TransmissionError;

/// Limits and advertised geometry for served exports.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest READ/WRITE payload accepted, and the advertised maximum block size.
    pub max_request_bytes: u32,
    /// Requests a connection may have in flight (read but whose reply is not yet sent).
    pub max_in_flight: usize,
    /// Payload bytes a connection may have in flight, so 64 × 32 MiB cannot pile up.
    pub max_in_flight_bytes: usize,
    /// Advertised minimum block size; 1 means byte-granular access is fine.
    pub min_block_size: u32,
    /// Advertised preferred block size.
    pub preferred_block_size: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: 32 << 20,
            max_in_flight: 64,
            max_in_flight_bytes: 128 << 20,
            min_block_size: 1,
            preferred_block_size: 4096,
        }
    }
}

/// Why one connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("handshake failed")]
    Handshake(#[from] HandshakeError),
    #[error("transmission failed")]
    Transmission(#[from] TransmissionError),
}

/// Serves NBD on `listener` with [`ServerConfig::default`]; runs until the listener fails.
pub async fn serve(listener: TcpListener, catalog: Arc<dyn ExportCatalog>) -> io::Result<()> {
    serve_with_config(listener, catalog, ServerConfig::default()).await
}

/// Serves NBD on `listener`; every connection runs in its own task.
pub async fn serve_with_config(
    listener: TcpListener,
    catalog: Arc<dyn ExportCatalog>,
    config: ServerConfig,
) -> io::Result<()> {
    let config = Arc::new(config);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) if accept_error_is_transient(&err) => {
                tracing::warn!(error = %err, "NBD accept failed; retrying");
                // Out of descriptors or memory: give running connections a moment to finish
                // instead of spinning on accept.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        let catalog = Arc::clone(&catalog);
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            let client = peer.ip();
            match serve_connection(stream, client, catalog, &config).await {
                Ok(()) => tracing::debug!(%peer, "NBD connection closed"),
                Err(err) => log_connection_error(&peer.to_string(), &err),
            }
        });
    }
}

/// Runs the whole NBD session of one accepted TCP connection from `client`.
pub async fn serve_connection(
    stream: TcpStream,
    client: IpAddr,
    catalog: Arc<dyn ExportCatalog>,
    config: &ServerConfig,
) -> Result<(), ConnectionError> {
    // Replies are written whole; Nagle would only delay the small ones.
    stream.set_nodelay(true).map_err(HandshakeError::Io)?;
    let (read, write) = stream.into_split();
    run(read, write, client, catalog, config).await
}

/// The session over any byte stream; split so tests can drive it through in-memory pipes.
async fn run<R, W>(
    read: R,
    write: W,
    client: IpAddr,
    catalog: Arc<dyn ExportCatalog>,
    config: &ServerConfig,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Buffered reading lets one syscall pick up many pipelined request headers.
    let mut reader = BufReader::with_capacity(128 << 10, read);
    let mut writer = BufWriter::with_capacity(256 << 10, write);
    let Some(session) =
        handshake::negotiate(&mut reader, &mut writer, client, &catalog, config).await?
    else {
        return Ok(());
    };
    tracing::debug!(%client, export = %session.export.name, "NBD transmission started");
    transmission::run(reader, writer, session, config).await?;
    Ok(())
}

fn accept_error_is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
    )
}

fn log_connection_error(peer: &str, err: &ConnectionError) {
    // A client hanging up mid-way is routine; a protocol violation is worth a warning.
    let routine = matches!(
        err,
        ConnectionError::Handshake(HandshakeError::Io(_))
            | ConnectionError::Transmission(TransmissionError::Io(_))
    );
    if routine {
        tracing::debug!(%peer, error = %err, cause = ?std::error::Error::source(err), "NBD connection ended");
    } else {
        tracing::warn!(%peer, error = %err, cause = ?std::error::Error::source(err), "NBD connection dropped");
    }
}
