//! A deliberately dumb raw NBD client over an in-memory pipe, so unit tests can send exactly
//! the bytes they mean (including wrong ones) and see exactly what the server answers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

use super::{ConnectionError, ServerConfig, run};
use crate::testing::MemCatalog;
use nbd_wire::*;

pub const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

#[derive(Debug)]
pub struct Client {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    pub server: JoinHandle<Result<(), ConnectionError>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub payload: Vec<u8>,
}

pub fn connect(catalog: &Arc<MemCatalog>, client: IpAddr) -> Client {
    connect_with(catalog, client, ServerConfig::default())
}

pub fn connect_with(catalog: &Arc<MemCatalog>, client: IpAddr, config: ServerConfig) -> Client {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (sr, sw) = tokio::io::split(theirs);
    let catalog: Arc<dyn crate::export::ExportCatalog> = Arc::clone(catalog) as _;
    let server = tokio::spawn(async move { run(sr, sw, client, catalog, &config).await });
    let (r, w) = tokio::io::split(ours);
    Client { r, w, server }
}

impl Client {
    /// Reads the greeting, answers with `flags`, returns the handshake flags.
    pub async fn greet(&mut self, flags: u32) -> u16 {
        assert_eq!(self.r.read_u64().await.unwrap(), NBD_MAGIC);
        assert_eq!(self.r.read_u64().await.unwrap(), IHAVEOPT);
        let hs = self.r.read_u16().await.unwrap();
        self.w.write_u32(flags).await.unwrap();
        hs
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    pub async fn send_opt(&mut self, option: u32, data: &[u8]) {
        self.w.write_u64(IHAVEOPT).await.unwrap();
        self.w.write_u32(option).await.unwrap();
        self.w.write_u32(data.len() as u32).await.unwrap();
        self.w.write_all(data).await.unwrap();
    }

    /// One option reply: (reply type, data), after checking magic and echoed option.
    pub async fn opt_reply(&mut self, option: u32) -> (u32, Vec<u8>) {
        assert_eq!(self.r.read_u64().await.unwrap(), OPTION_REPLY_MAGIC);
        assert_eq!(self.r.read_u32().await.unwrap(), option);
        let kind = self.r.read_u32().await.unwrap();
        let len = self.r.read_u32().await.unwrap();
        let mut data = vec![0; len as usize];
        self.r.read_exact(&mut data).await.unwrap();
        (kind, data)
    }

    /// Replies up to and including the final one (ACK or an error).
    pub async fn opt(&mut self, option: u32, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
        self.send_opt(option, data).await;
        let mut out = Vec::new();
        loop {
            let reply = self.opt_reply(option).await;
            let last = reply.0 == REP_ACK || reply.0 & (1 << 31) != 0;
            out.push(reply);
            if last {
                return out;
            }
        }
    }

    pub async fn info_or_go(
        &mut self,
        option: u32,
        name: &str,
        infos: &[u16],
    ) -> Vec<(u32, Vec<u8>)> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        self.opt(option, &d).await
    }

    pub async fn meta(&mut self, option: u32, name: &str, queries: &[&str]) -> Vec<(u32, Vec<u8>)> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
        for q in queries {
            d.extend_from_slice(&(q.len() as u32).to_be_bytes());
            d.extend_from_slice(q.as_bytes());
        }
        self.opt(option, &d).await
    }

    /// Greets and GOes into `name`; returns the transmission flags.
    pub async fn open(&mut self, name: &str, structured: bool, meta: bool) -> u16 {
        self.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        if structured {
            assert_eq!(
                self.opt(OPT_STRUCTURED_REPLY, &[]).await,
                vec![(REP_ACK, vec![])]
            );
        }
        if meta {
            let r = self
                .meta(OPT_SET_META_CONTEXT, name, &[BASE_ALLOCATION])
                .await;
            assert_eq!(r.len(), 2, "{r:?}");
        }
        let replies = self.info_or_go(OPT_GO, name, &[]).await;
        let (kind, info) = &replies[0];
        assert_eq!(*kind, REP_INFO, "GO {name} failed: {replies:?}");
        assert_eq!(replies.last().map(|r| r.0), Some(REP_ACK));
        u16::from_be_bytes([info[10], info[11]])
    }

    pub async fn request(
        &mut self,
        kind: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut b = Vec::with_capacity(REQUEST_LEN + payload.len());
        b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        self.w.write_all(&b).await.unwrap();
    }

    /// A simple reply: (error, cookie); on success reads `data_len` bytes of data too.
    pub async fn simple(&mut self, data_len: usize) -> (u32, u64, Vec<u8>) {
        assert_eq!(self.r.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
        let err = self.r.read_u32().await.unwrap();
        let cookie = self.r.read_u64().await.unwrap();
        let mut data = vec![0; if err == 0 { data_len } else { 0 }];
        self.r.read_exact(&mut data).await.unwrap();
        (err, cookie, data)
    }

    pub async fn chunk(&mut self) -> Chunk {
        assert_eq!(self.r.read_u32().await.unwrap(), STRUCTURED_REPLY_MAGIC);
        let flags = self.r.read_u16().await.unwrap();
        let kind = self.r.read_u16().await.unwrap();
        let cookie = self.r.read_u64().await.unwrap();
        let len = self.r.read_u32().await.unwrap();
        let mut payload = vec![0; len as usize];
        self.r.read_exact(&mut payload).await.unwrap();
        Chunk {
            flags,
            kind,
            cookie,
            payload,
        }
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.r.read_exact(&mut b).await.unwrap();
        b
    }

    /// True when the server closed the connection (within a generous timeout).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.r.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
