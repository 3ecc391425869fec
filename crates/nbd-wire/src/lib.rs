//! The NBD wire format (fixed newstyle, no extended headers): every constant and every
//! fixed-layout message, encoded and parsed in one place for the three programs that speak it:
//! storaged's server, the blocking client that attaches OS volumes for plan runs, and the test
//! clients that send exactly the bytes they mean.
//!
//! Values come from the NBD protocol document (`doc/proto.md` in the NetworkBlockDevice/nbd
//! repository). Everything on the wire is big-endian. Errno values are the protocol's own
//! numbering, which happens to equal Linux's, but we never send a host `errno` unmapped.
//!
//! It does no I/O: callers read and write the bytes with whatever they use (tokio, std).

/// `NBDMAGIC`, first eight bytes of every handshake.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle greeting and the prefix of every client option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Handshake flags (server → client).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;

/// Client flags (client → server).
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply types; those with [`REP_FLAG_ERROR`] set are refusals.
pub const REP_FLAG_ERROR: u32 = 1 << 31;
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_POLICY: u32 = (1 << 31) + 2;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

/// `NBD_REP_INFO` item types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_SEND_DF: u16 = 1 << 7;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;

/// The only metadata context we serve.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Context id we hand out for `base:allocation` on NBD_OPT_SET_META_CONTEXT.
pub const BASE_ALLOCATION_ID: u32 = 1;
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

/// Requests.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const REQUEST_LEN: usize = 28;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Flags whose meaning we implement or may safely ignore; anything else (FAST_ZERO,
/// PAYLOAD_LEN, future bits) changes semantics we do not offer, so it is refused.
pub const CMD_FLAGS_KNOWN: u16 = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE;

/// Replies.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const SIMPLE_REPLY_LEN: usize = 16;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub const STRUCTURED_HEADER_LEN: usize = 20;
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

/// Protocol errno values.
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;

/// One transmission-phase request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub magic: u32,
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

impl Request {
    /// A request of `kind` with the protocol's magic.
    pub fn new(kind: u16, flags: u16, cookie: u64, offset: u64, len: u32) -> Self {
        Self {
            magic: REQUEST_MAGIC,
            flags,
            kind,
            cookie,
            offset,
            len,
        }
    }

    /// The header's bytes (a WRITE's payload follows it).
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&self.magic.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8; REQUEST_LEN]) -> Self {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Request {
            magic: u32_at(0),
            flags: u16_at(4),
            kind: u16_at(6),
            cookie: u64_at(8),
            offset: u64_at(16),
            len: u32_at(24),
        }
    }
}

/// The server's greeting: magic, `IHAVEOPT`, handshake flags.
pub const GREETING_LEN: usize = 18;

/// The greeting a server sends with `flags`.
pub fn greeting(flags: u16) -> [u8; GREETING_LEN] {
    let mut b = [0u8; GREETING_LEN];
    b[0..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&flags.to_be_bytes());
    b
}

/// The handshake flags of a greeting, or `None` when it is not a newstyle NBD greeting.
pub fn parse_greeting(b: &[u8; GREETING_LEN]) -> Option<u16> {
    (b[0..8] == NBD_MAGIC.to_be_bytes() && b[8..16] == IHAVEOPT.to_be_bytes())
        .then(|| u16::from_be_bytes([b[16], b[17]]))
}

/// A client's option: `IHAVEOPT`, the option, the data's length, the data.
pub fn option_request(option: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + data.len());
    m.extend_from_slice(&IHAVEOPT.to_be_bytes());
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    m
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`: the export's name, then the info items asked
/// for.
pub fn go_data(export: &str, info: &[u16]) -> Vec<u8> {
    let mut d = Vec::with_capacity(6 + export.len() + 2 * info.len());
    d.extend_from_slice(&(export.len() as u32).to_be_bytes());
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&(info.len() as u16).to_be_bytes());
    for i in info {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

/// The fixed part of an option reply: magic, option, reply type, data length.
pub const OPTION_REPLY_HEADER_LEN: usize = 20;

/// An option reply's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReply {
    pub magic: u64,
    pub option: u32,
    /// `NBD_REP_*`; a refusal has [`REP_FLAG_ERROR`] set.
    pub kind: u32,
    /// Length of the data that follows.
    pub len: u32,
}

impl OptionReply {
    pub fn new(option: u32, kind: u32, len: u32) -> Self {
        Self {
            magic: OPTION_REPLY_MAGIC,
            option,
            kind,
            len,
        }
    }

    pub fn encode(&self) -> [u8; OPTION_REPLY_HEADER_LEN] {
        let mut b = [0u8; OPTION_REPLY_HEADER_LEN];
        b[0..8].copy_from_slice(&self.magic.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.kind.to_be_bytes());
        b[16..20].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8; OPTION_REPLY_HEADER_LEN]) -> Self {
        Self {
            magic: u64::from_be_bytes(b[0..8].try_into().unwrap_or_default()),
            option: u32::from_be_bytes(b[8..12].try_into().unwrap_or_default()),
            kind: u32::from_be_bytes(b[12..16].try_into().unwrap_or_default()),
            len: u32::from_be_bytes(b[16..20].try_into().unwrap_or_default()),
        }
    }

    /// Whether the server refused the option.
    pub fn is_error(&self) -> bool {
        self.kind & REP_FLAG_ERROR != 0
    }
}

/// `NBD_INFO_EXPORT`: the export's size and transmission flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    pub flags: u16,
}

impl ExportInfo {
    /// The data of an `NBD_REP_INFO` reply carrying it.
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
        b[2..10].copy_from_slice(&self.size.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b
    }

    /// The export information in an `NBD_REP_INFO` reply's data, if that is what it carries.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() < 12 || data[0..2] != INFO_EXPORT.to_be_bytes() {
            return None;
        }
        Some(Self {
            size: u64::from_be_bytes(data[2..10].try_into().ok()?),
            flags: u16::from_be_bytes([data[10], data[11]]),
        })
    }
}

/// A simple reply's header: magic, error, cookie (a READ's data follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleReply {
    pub magic: u32,
    pub error: u32,
    pub cookie: u64,
}

impl SimpleReply {
    pub fn parse(b: &[u8; SIMPLE_REPLY_LEN]) -> Self {
        Self {
            magic: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            error: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            cookie: u64::from_be_bytes(b[8..16].try_into().unwrap_or_default()),
        }
    }
}

/// Writes a simple reply header into the first [`SIMPLE_REPLY_LEN`] bytes of `out`.
pub fn put_simple_header(out: &mut [u8], error: u32, cookie: u64) {
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
}

/// Writes a structured reply chunk header into the first [`STRUCTURED_HEADER_LEN`] bytes.
pub fn put_structured_header(out: &mut [u8], flags: u16, kind: u16, cookie: u64, len: u32) {
    out[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..20].copy_from_slice(&len.to_be_bytes());
}

/// A complete simple reply without payload.
pub fn simple_reply(error: u32, cookie: u64) -> Vec<u8> {
    let mut out = vec![0; SIMPLE_REPLY_LEN];
    put_simple_header(&mut out, error, cookie);
    out
}

/// A complete final `NBD_REPLY_TYPE_ERROR` chunk carrying a human-readable message.
pub fn structured_error(error: u32, cookie: u64, message: &str) -> Vec<u8> {
    // The message length is a u16 and the spec caps strings at 4096 bytes; cut on a char
    // boundary so the client still receives valid UTF-8.
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &message.as_bytes()[..end];
    let payload_len = 4 + 2 + msg.len();
    let mut out = vec![0; STRUCTURED_HEADER_LEN + payload_len];
    put_structured_header(
        &mut out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        payload_len as u32,
    );
    let p = &mut out[STRUCTURED_HEADER_LEN..];
    p[0..4].copy_from_slice(&error.to_be_bytes());
    p[4..6].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    p[6..].copy_from_slice(msg);
    out
}

/// A complete final `NBD_REPLY_TYPE_NONE` chunk.
pub fn structured_done(cookie: u64) -> Vec<u8> {
    let mut out = vec![0; STRUCTURED_HEADER_LEN];
    put_structured_header(&mut out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parses_big_endian_fields() {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        b[6..8].copy_from_slice(&CMD_WRITE.to_be_bytes());
        b[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        b[16..24].copy_from_slice(&(5u64 << 40).to_be_bytes());
        b[24..28].copy_from_slice(&4096u32.to_be_bytes());
        let r = Request::parse(&b);
        assert_eq!(r.magic, REQUEST_MAGIC);
        assert_eq!(r.flags, CMD_FLAG_FUA);
        assert_eq!(r.kind, CMD_WRITE);
        assert_eq!(r.cookie, 0x0102_0304_0506_0708);
        assert_eq!(r.offset, 5 << 40);
        assert_eq!(r.len, 4096);
    }

    #[test]
    fn every_message_parses_back_what_it_encodes() {
        let r = Request::new(CMD_WRITE, CMD_FLAG_FUA, 9, 1 << 33, 4096);
        assert_eq!(Request::parse(&r.encode()), r);
        assert_eq!(parse_greeting(&greeting(FLAG_FIXED_NEWSTYLE)), Some(1));
        assert_eq!(parse_greeting(&[0u8; GREETING_LEN]), None);
        let o = OptionReply::new(OPT_GO, REP_ERR_POLICY, 5);
        assert_eq!(OptionReply::parse(&o.encode()), o);
        assert!(o.is_error() && !OptionReply::new(OPT_GO, REP_ACK, 0).is_error());
        let i = ExportInfo {
            size: 1 << 30,
            flags: TFLAG_HAS_FLAGS | TFLAG_READ_ONLY,
        };
        assert_eq!(ExportInfo::parse(&i.encode()), Some(i));
        assert_eq!(ExportInfo::parse(&INFO_NAME.to_be_bytes()), None);
        let reply = simple_reply(EPERM, 77);
        let parsed = SimpleReply::parse(reply.as_slice().try_into().unwrap());
        assert_eq!(
            (parsed.magic, parsed.error, parsed.cookie),
            (SIMPLE_REPLY_MAGIC, EPERM, 77)
        );
        // NBD_OPT_GO for "ab" asking for the block size: name length, name, count, item.
        let m = option_request(OPT_GO, &go_data("ab", &[INFO_BLOCK_SIZE]));
        assert_eq!(m[..8], IHAVEOPT.to_be_bytes());
        assert_eq!(m[8..16], [0, 0, 0, 7, 0, 0, 0, 10]);
        assert_eq!(m[16..], [0, 0, 0, 2, b'a', b'b', 0, 1, 0, 3]);
    }

    #[test]
    fn error_chunk_truncates_long_messages_on_char_boundary() {
        let msg = "é".repeat(3000); // 6000 bytes
        let out = structured_error(EIO, 7, &msg);
        let n = u16::from_be_bytes([out[24], out[25]]) as usize;
        assert!(n <= 4096);
        assert!(std::str::from_utf8(&out[26..26 + n]).is_ok());
        assert_eq!(out.len(), 26 + n);
        let len = u32::from_be_bytes([out[16], out[17], out[18], out[19]]) as usize;
        assert_eq!(len, 6 + n);
    }
}
