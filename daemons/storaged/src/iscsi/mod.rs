//! Our iSCSI target (RFC 7143) on tokio, serving the same volumes as the NBD server through
//! the same [`ExportCatalog`] and [`BlockDevice`](crate::block::BlockDevice): one target per
//! exported volume (`iqn.2026-12.org.streamer:<volume id>`), its LUN 0; golden images are
//! write protected. What a server's firmware (UEFI's iSCSI initiator, iPXE) and operating
//! systems (open-iscsi, QEMU's libiscsi) use: discovery (SendTargets), login with CHAP
//! (mutual on request) and an initiator-name list, the operational parameters they negotiate
//! (immediate and unsolicited data, R2T, MaxRecvDataSegmentLength, CRC32C header and data
//! digests), NOP keep-alives both ways, task management, logout; the SCSI block commands in
//! [`scsi`].
//!
//! * [`pdu`]: the PDUs as bytes.
//! * [`text`]: key=value parameters.
//! * [`login`]: the login phase and who may log in.
//! * [`session`]: the full feature phase.
//!
//! Why our own target rather than the kernel's LIO with a userspace backend (TCMU): a
//! Streamer volume is a chain of layers served by storaged (replicated on a pair), which LIO
//! could reach only through TCMU's shared-memory ring, a second data path beside the NBD
//! server's; the developer machines' kernel has neither configfs/LIO nor TCMU, so none of it
//! could be tested outside a VM; and the target's share of the work (framing, a few SCSI
//! commands) is small next to the volume code both protocols share. ARCHITECTURE.md §16.

pub mod login;
pub mod pdu;
pub mod scsi;
pub mod session;
pub mod text;

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::export::ExportCatalog;

pub use login::TARGET_PREFIX;

/// Serves iSCSI on `listener`; every connection runs in its own task, until the listener
/// fails.
pub async fn serve(listener: TcpListener, catalog: Arc<dyn ExportCatalog>) -> io::Result<()> {
    let portal = listener.local_addr()?.to_string();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("iSCSI accept failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let catalog = Arc::clone(&catalog);
        let portal = portal.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer.ip(), &portal, catalog).await {
                tracing::debug!(%peer, "iSCSI connection ended: {e}");
            }
        });
    }
}

/// One connection: its login, then its session.
pub async fn connection(
    stream: TcpStream,
    client: IpAddr,
    portal: &str,
    catalog: Arc<dyn ExportCatalog>,
) -> Result<(), session::SessionError> {
    stream.set_nodelay(true)?;
    // The portal a SendTargets answer names: the address this connection reached.
    let portal = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| portal.to_string());
    let (read, write) = stream.into_split();
    let mut r = BufReader::with_capacity(256 << 10, read);
    let mut w = BufWriter::with_capacity(256 << 10, write);
    let s = match login::login(&mut r, &mut w, client, &catalog).await {
        Ok(s) => s,
        Err(login::LoginError::Pdu(e)) => return Err(e.into()),
        Err(login::LoginError::Io(e)) => return Err(e.into()),
        Err(e @ login::LoginError::Refused { .. }) => {
            return Err(session::SessionError::Protocol(e.to_string()));
        }
    };
    session::run(&mut r, &mut w, s, client, &portal, &catalog).await
}
