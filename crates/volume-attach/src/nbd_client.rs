//! A small blocking NBD client: fixed-newstyle handshake, `NBD_OPT_GO` for one export, then
//! READ, WRITE, FLUSH and TRIM with simple replies, one request at a time, and DISC.
//!
//! It is what the FUSE disk file forwards to on hosts without the kernel NBD client. One
//! request in flight is enough there: FUSE hands us one request at a time anyway.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nbd_wire::{
    CMD_DISC, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, ExportInfo, FLAG_FIXED_NEWSTYLE,
    FLAG_NO_ZEROES, GREETING_LEN, INFO_BLOCK_SIZE, OPT_GO, OPTION_REPLY_HEADER_LEN,
    OPTION_REPLY_MAGIC, OptionReply, REP_ACK, REP_INFO, REQUEST_LEN, Request, SIMPLE_REPLY_LEN,
    SIMPLE_REPLY_MAGIC, SimpleReply, TFLAG_READ_ONLY, TFLAG_SEND_FLUSH, TFLAG_SEND_TRIM, go_data,
    option_request, parse_greeting,
};

/// Largest payload per request; bigger reads and writes are split.
const MAX_CHUNK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("NBD connection to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("NBD I/O")]
    Io(#[from] io::Error),
    #[error("NBD protocol: {0}")]
    Protocol(String),
    #[error("NBD server refused export {export:?}: {message} (error {code:#x})")]
    Refused {
        export: String,
        code: u32,
        message: String,
    },
    #[error("NBD server failed {op} at byte {offset}: errno {errno}")]
    Command {
        op: &'static str,
        offset: u64,
        errno: u32,
    },
    #[error("NBD export is read-only")]
    ReadOnly,
    #[error("NBD server does not support {0}")]
    Unsupported(&'static str),
}

impl NbdError {
    /// The errno to give a kernel caller (FUSE) for this error.
    pub fn errno(&self) -> i32 {
        match self {
            NbdError::Command { errno, .. } if *errno != 0 => *errno as i32,
            NbdError::ReadOnly => libc::EROFS,
            NbdError::Unsupported(_) => libc::EOPNOTSUPP,
            _ => libc::EIO,
        }
    }
}

/// An open NBD export.
#[derive(Debug)]
pub struct NbdClient {
    stream: TcpStream,
    size: u64,
    flags: u16,
    cookie: u64,
}

fn protocol(what: impl Into<String>) -> NbdError {
    NbdError::Protocol(what.into())
}

impl NbdClient {
    /// Connects to `addr` and opens `export` with `NBD_OPT_GO`.
    pub fn connect(addr: SocketAddr, export: &str) -> Result<NbdClient, NbdError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|source| NbdError::Connect { addr, source })?;
        stream.set_nodelay(true)?;
        // The handshake must not hang forever on a silent server; transmission may be slow.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = NbdClient {
            stream,
            size: 0,
            flags: 0,
            cookie: 0,
        };
        c.handshake(export)?;
        c.stream.set_read_timeout(None)?;
        Ok(c)
    }

    fn handshake(&mut self, export: &str) -> Result<(), NbdError> {
        let mut greeting = [0; GREETING_LEN];
        self.stream.read_exact(&mut greeting)?;
        let server =
            parse_greeting(&greeting).ok_or_else(|| protocol("not a newstyle NBD server"))?;
        if server & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(protocol("server does not speak fixed newstyle"));
        }
        let client = u32::from(FLAG_FIXED_NEWSTYLE | (server & FLAG_NO_ZEROES));
        let mut m = client.to_be_bytes().to_vec();
        m.extend_from_slice(&option_request(
            OPT_GO,
            &go_data(export, &[INFO_BLOCK_SIZE]),
        ));
        self.stream.write_all(&m)?;
        let mut got_export = false;
        loop {
            let mut h = [0; OPTION_REPLY_HEADER_LEN];
            self.stream.read_exact(&mut h)?;
            let reply = OptionReply::parse(&h);
            if reply.magic != OPTION_REPLY_MAGIC {
                return Err(protocol("bad option reply magic"));
            }
            if reply.option != OPT_GO {
                return Err(protocol(format!(
                    "reply to option {}, expected {OPT_GO}",
                    reply.option
                )));
            }
            let len = reply.len as usize;
            if len > 64 << 10 {
                return Err(protocol(format!("option reply of {len} bytes")));
            }
            let mut payload = vec![0; len];
            self.stream.read_exact(&mut payload)?;
            if reply.is_error() {
                return Err(NbdError::Refused {
                    export: export.to_string(),
                    code: reply.kind,
                    message: String::from_utf8_lossy(&payload).into_owned(),
                });
            }
            match reply.kind {
                REP_INFO => {
                    if let Some(info) = ExportInfo::parse(&payload) {
                        self.size = info.size;
                        self.flags = info.flags;
                        got_export = true;
                    }
                }
                REP_ACK if got_export => return Ok(()),
                REP_ACK => return Err(protocol("NBD_OPT_GO acknowledged without export info")),
                other => return Err(protocol(format!("unexpected option reply {other}"))),
            }
        }
    }

    /// Size of the export in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn read_only(&self) -> bool {
        self.flags & TFLAG_READ_ONLY != 0
    }

    fn request(&mut self, cmd: u16, offset: u64, len: u32, data: &[u8]) -> io::Result<u64> {
        self.cookie += 1;
        let mut h = Vec::with_capacity(REQUEST_LEN + data.len());
        h.extend_from_slice(&Request::new(cmd, 0, self.cookie, offset, len).encode());
        h.extend_from_slice(data);
        self.stream.write_all(&h)?;
        Ok(self.cookie)
    }

    fn reply(
        &mut self,
        op: &'static str,
        offset: u64,
        cookie: u64,
        buf: &mut [u8],
    ) -> Result<(), NbdError> {
        let mut h = [0; SIMPLE_REPLY_LEN];
        self.stream.read_exact(&mut h)?;
        let reply = SimpleReply::parse(&h);
        if reply.magic != SIMPLE_REPLY_MAGIC {
            return Err(protocol("bad reply magic"));
        }
        if reply.cookie != cookie {
            return Err(protocol("reply to another request"));
        }
        if reply.error != 0 {
            return Err(NbdError::Command {
                op,
                offset,
                errno: reply.error,
            });
        }
        self.stream.read_exact(buf)?;
        Ok(())
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(), NbdError> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(NbdError::Command {
                op: "access",
                offset,
                errno: libc::EINVAL as u32,
            });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), NbdError> {
        self.check_range(offset, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_CHUNK);
            let off = offset + done as u64;
            let cookie = self.request(CMD_READ, off, n as u32, &[])?;
            self.reply("READ", off, cookie, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), NbdError> {
        if self.read_only() {
            return Err(NbdError::ReadOnly);
        }
        self.check_range(offset, data.len())?;
        for (i, chunk) in data.chunks(MAX_CHUNK).enumerate() {
            let off = offset + (i * MAX_CHUNK) as u64;
            let cookie = self.request(CMD_WRITE, off, chunk.len() as u32, chunk)?;
            self.reply("WRITE", off, cookie, &mut [])?;
        }
        Ok(())
    }

    /// Makes every acknowledged write durable.
    pub fn flush(&mut self) -> Result<(), NbdError> {
        if self.flags & TFLAG_SEND_FLUSH == 0 {
            // The server writes through: nothing to do.
            return Ok(());
        }
        let cookie = self.request(CMD_FLUSH, 0, 0, &[])?;
        self.reply("FLUSH", 0, cookie, &mut [])
    }

    /// Tells the server `len` bytes at `offset` are no longer needed.
    pub fn trim(&mut self, offset: u64, len: u32) -> Result<(), NbdError> {
        if self.flags & TFLAG_SEND_TRIM == 0 {
            return Err(NbdError::Unsupported("TRIM"));
        }
        if self.read_only() {
            return Err(NbdError::ReadOnly);
        }
        self.check_range(offset, len as usize)?;
        let cookie = self.request(CMD_TRIM, offset, len, &[])?;
        self.reply("TRIM", offset, cookie, &mut [])
    }

    /// The connected socket in transmission phase, the export size and transmission flags,
    /// for handing over to the kernel's NBD client.
    pub fn into_socket(self) -> (TcpStream, u64, u16) {
        (self.stream, self.size, self.flags)
    }

    /// Ends the session politely (NBD_CMD_DISC, which has no reply).
    pub fn disconnect(mut self) -> Result<(), NbdError> {
        self.request(CMD_DISC, 0, 0, &[])?;
        self.stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use storaged::store::Store;

    /// storaged in-process: a store in a temporary directory with one 8 MiB writable volume
    /// exported to 127.0.0.1, served on an ephemeral port.
    fn server() -> (tempfile::TempDir, Arc<Store>, SocketAddr, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let vol = store.create(Some("vol"), 8 << 20).unwrap();
        let id = vol.record.id.clone();
        store
            .export_add(&id, vec!["127.0.0.1/32".parse().unwrap()], false)
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let catalog: Arc<dyn storaged::export::ExportCatalog> = store.clone();
        std::thread::spawn(move || rt.block_on(storaged::nbd::serve(listener, catalog)));
        (dir, store, addr, id)
    }

    #[test]
    fn read_write_flush_trim_disc() {
        let (_dir, _store, addr, id) = server();
        let mut c = NbdClient::connect(addr, &id).unwrap();
        assert_eq!(c.size(), 8 << 20);
        assert!(!c.read_only());
        let data: Vec<u8> = (0..(5 << 20)).map(|i| (i % 251) as u8).collect();
        c.write_at(&data, 1000).unwrap();
        c.flush().unwrap();
        let mut back = vec![0; data.len()];
        c.read_at(&mut back, 1000).unwrap();
        assert!(back == data, "read back what was written");
        match c.trim(0, 4096) {
            Ok(()) | Err(NbdError::Unsupported(_)) => {}
            Err(e) => panic!("trim: {e}"),
        }
        let e = c.read_at(&mut [0; 10], (8 << 20) - 5).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        c.disconnect().unwrap();

        // A second session sees the data (durable in the store, not in our connection).
        let mut c = NbdClient::connect(addr, &id).unwrap();
        let mut b = vec![0; 4096];
        c.read_at(&mut b, 1000 + 4096).unwrap();
        assert_eq!(&b[..], &data[4096..8192]);
        c.disconnect().unwrap();
    }

    #[test]
    fn unknown_export_is_refused_clearly() {
        let (_dir, _store, addr, _) = server();
        let e = NbdClient::connect(addr, "nope").unwrap_err();
        assert!(matches!(e, NbdError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }
}
