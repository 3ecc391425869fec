//! The replication protocol's messages, as bytes.
//!
//! Every message is one frame: a fixed header, a body (the volume id, then the payload), and
//! a CRC-32 of header and body. Little endian throughout.
//!
//! ```text
//!  0  magic "STRP"     4  version u16   6  kind u16
//!  8  seq u64         16  epoch u64    24  offset u64   32  len u64
//! 40  flags u32       44  volume id length u16          46  reserved u16
//! 48  body length u32 52  reserved u32
//! 56  body: volume id, then the payload (a write's data, a hello's or refusal's JSON/text)
//!     CRC-32 (IEEE) of bytes 0 .. end of body, u32
//! ```
//!
//! A frame that is not whole, has another magic or version, a body longer than
//! [`MAX_BODY`], or a CRC that does not match is refused with a [`WireError`] naming what; the
//! receiver then closes the connection (nothing of a bad frame is ever applied).

use std::borrow::Cow;
use std::io::{self, Read, Write};

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"STRP";
/// This protocol's version. A peer with another one is refused at its hello.
pub const VERSION: u16 = 1;
/// The largest body accepted: a whole NBD request (32 MiB) with room for its volume id.
pub const MAX_BODY: u32 = (32 << 20) + 4096;
const HEADER: usize = 56;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// The first frame each side sends: who it is (JSON payload).
    Hello = 1,
    /// Data written at `offset` (the payload).
    Write = 2,
    /// `len` bytes at `offset` made to read as zeroes (flag [`FLAG_TRIM`]: may be freed).
    Zeroes = 3,
    /// Everything acknowledged before is made durable.
    Flush = 4,
    /// `seq` was applied (and, for a flush or a FUA write, synced).
    Ack = 5,
    /// `seq` was refused (payload: why); the sender stops using this connection.
    Refuse = 6,
    /// A catalog change (JSON payload: a `CatalogOp`), applied before the owner commits it.
    Catalog = 7,
    /// The owner asks which regions of the volume the replica's own activity log marks
    /// (writes it made while it owned the volume, possibly never replicated); the ack's
    /// payload lists them (u64 little endian each). With [`FLAG_CLEAR`]: the owner has them
    /// in its own log now, the replica clears its log. With [`FLAG_GENERATION`]: the
    /// replica's copy is current at generation `offset`. The ack's `offset`: the copy's
    /// generation.
    Regions = 8,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Write,
            3 => Kind::Zeroes,
            4 => Kind::Flush,
            5 => Kind::Ack,
            6 => Kind::Refuse,
            7 => Kind::Catalog,
            8 => Kind::Regions,
            _ => return None,
        })
    }
}

/// The write must be durable on the replica before it is acknowledged.
pub const FLAG_FUA: u32 = 1;
/// A zeroed range may be freed (NBD's TRIM, or WRITE_ZEROES without NO_HOLE).
pub const FLAG_TRIM: u32 = 2;
/// On [`Kind::Regions`]: the replica is to clear its activity log of the volume.
pub const FLAG_CLEAR: u32 = 4;
/// On the ack of a [`Kind::Regions`]: the replica has no such volume.
pub const FLAG_MISSING: u32 = 8;
/// On [`Kind::Regions`]: the replica's copy is current at generation `offset` (a resync
/// ended). The ack of a plain [`Kind::Regions`] carries the copy's generation in `offset`.
pub const FLAG_GENERATION: u32 = 16;
/// On a refusal: the sender may not write this volume (an older epoch, not a member of the
/// pair, another protocol version).
pub const REFUSED_DEPOSED: u32 = 1;
/// On a refusal: the replica could not apply the change itself (its disk is full, the volume
/// is missing there): the owner goes on without it for that volume, which a resync repairs.
pub const REFUSED_CANNOT_APPLY: u32 = 2;

/// One message. Its payload is borrowed when it is sent (a write's data goes from the
/// client's buffer to the socket, not copied for each attempt) and owned when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub seq: u64,
    /// The volume's epoch as the sender knows it; the replica refuses an older one.
    pub epoch: u64,
    pub offset: u64,
    pub len: u64,
    pub flags: u32,
    pub volume: String,
    pub payload: Cow<'a, [u8]>,
}

impl Frame<'_> {
    /// The frame with a payload of its own.
    pub fn into_owned(self) -> Frame<'static> {
        Frame {
            payload: Cow::Owned(self.payload.into_owned()),
            ..self
        }
    }

    pub fn new(kind: Kind, seq: u64) -> Frame<'static> {
        Frame {
            kind,
            seq,
            epoch: 0,
            offset: 0,
            len: 0,
            flags: 0,
            volume: String::new(),
            payload: Cow::Borrowed(&[]),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the connection ended")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a replication frame (magic {0:02x?})")]
    Magic([u8; 4]),
    #[error("protocol version {theirs}; this storaged speaks {VERSION}")]
    Version { theirs: u16 },
    #[error("unknown frame kind {0}")]
    Kind(u16),
    #[error("a frame body of {0} bytes (at most {MAX_BODY})")]
    TooLong(u32),
    #[error("a frame's checksum does not match (sent {sent:08x}, computed {computed:08x})")]
    Checksum { sent: u32, computed: u32 },
    #[error("a frame's volume id is not UTF-8, or longer than its body")]
    Volume,
}

/// Writes `f` as one frame (the payload is not copied: header, volume id, payload and
/// checksum go to `w` in turn; a buffered `w` is the caller's to flush).
pub fn write_frame(w: &mut impl Write, f: &Frame<'_>) -> Result<(), WireError> {
    let body_len = f.volume.len() + f.payload.len();
    if body_len > MAX_BODY as usize {
        return Err(WireError::TooLong(body_len as u32));
    }
    let mut head = Vec::with_capacity(HEADER);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(f.kind as u16).to_le_bytes());
    for v in [f.seq, f.epoch, f.offset, f.len] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    head.extend_from_slice(&f.flags.to_le_bytes());
    head.extend_from_slice(&(f.volume.len() as u16).to_le_bytes());
    head.extend_from_slice(&0u16.to_le_bytes());
    head.extend_from_slice(&(body_len as u32).to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    for part in [&head[..], f.volume.as_bytes(), &f.payload] {
        crc.update(part);
        w.write_all(part)?;
    }
    w.write_all(&crc.finalize().to_le_bytes())?;
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads one whole frame, checked (an answer, a hello: the owner's side, whose frames are
/// small; a replica reads writes with [`read_frame_in`]).
pub fn read_frame(r: &mut impl Read) -> Result<Frame<'static>, WireError> {
    Ok(read_frame_in(r, &mut Vec::new())?.into_owned())
}

/// Reads one whole frame, checked, its payload into `payload` (emptied first; its memory is
/// kept, so a connection that reads into one buffer does not have fresh pages zeroed for
/// every write it gets). The frame's payload is borrowed from it.
pub fn read_frame_in<'b>(
    r: &mut impl Read,
    payload: &'b mut Vec<u8>,
) -> Result<Frame<'b>, WireError> {
    let mut head = [0u8; HEADER];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let magic = [head[0], head[1], head[2], head[3]];
    if magic != MAGIC {
        return Err(WireError::Magic(magic));
    }
    let version = u16_at(&head, 4);
    if version != VERSION {
        return Err(WireError::Version { theirs: version });
    }
    let kind = Kind::from_u16(u16_at(&head, 6)).ok_or(WireError::Kind(u16_at(&head, 6)))?;
    let body_len = u32_at(&head, 48);
    if body_len > MAX_BODY {
        return Err(WireError::TooLong(body_len));
    }
    let vol_len = u16_at(&head, 44) as usize;
    if vol_len > body_len as usize {
        return Err(WireError::Volume);
    }
    // The volume id is read into a buffer of its own, the payload into the caller's (a
    // write's data is neither zeroed first nor copied out of a bigger buffer).
    let mut volume = Vec::with_capacity(vol_len);
    payload.clear();
    payload.reserve(body_len as usize - vol_len);
    let mut sent = [0u8; 4];
    let whole = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => WireError::Closed,
        _ => e.into(),
    };
    read_exactly(r, &mut volume, vol_len).map_err(whole)?;
    read_exactly(r, payload, body_len as usize - vol_len).map_err(whole)?;
    r.read_exact(&mut sent).map_err(whole)?;
    let sent = u32::from_le_bytes(sent);
    let mut h = crc32fast::Hasher::new();
    h.update(&head);
    h.update(&volume);
    h.update(payload);
    let computed = h.finalize();
    if sent != computed {
        return Err(WireError::Checksum { sent, computed });
    }
    let volume = String::from_utf8(volume).map_err(|_| WireError::Volume)?;
    Ok(Frame {
        kind,
        seq: u64_at(&head, 8),
        epoch: u64_at(&head, 16),
        offset: u64_at(&head, 24),
        len: u64_at(&head, 32),
        flags: u32_at(&head, 40),
        volume,
        payload: Cow::Borrowed(&payload[..]),
    })
}

/// Appends exactly `n` bytes of `r` to `buf` (whose capacity is reserved: nothing is zeroed).
fn read_exactly(r: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let got = r.by_ref().take(n as u64).read_to_end(buf)?;
    if got < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame<'static> {
        Frame {
            kind: Kind::Write,
            seq: 7,
            epoch: 3,
            offset: 4096,
            len: 5,
            flags: FLAG_FUA,
            volume: "vol-1".into(),
            payload: Cow::Borrowed(b"hello"),
        }
    }

    #[test]
    fn a_frame_reads_back_as_written() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &sample()).unwrap();
        assert_eq!(buf.len(), HEADER + 10 + 4);
        assert_eq!(read_frame(&mut &buf[..]).unwrap(), sample());
    }

    #[test]
    fn damaged_frames_are_refused_and_named() {
        let mut good = Vec::new();
        write_frame(&mut good, &sample()).unwrap();
        // A flipped bit anywhere: the checksum (or the header check) catches it.
        for at in [8, 30, 57, 60] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            let e = read_frame(&mut &bad[..]).unwrap_err();
            assert!(matches!(e, WireError::Checksum { .. }), "byte {at}: {e}");
        }
        let mut other = good.clone();
        other[4] = 9;
        assert_eq!(
            read_frame(&mut &other[..]).unwrap_err().to_string(),
            "protocol version 9; this storaged speaks 1"
        );
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(
            read_frame(&mut &magic[..]).unwrap_err(),
            WireError::Magic(_)
        ));
        let mut long = good.clone();
        long[48..52].copy_from_slice(&(MAX_BODY + 1).to_le_bytes());
        assert!(matches!(
            read_frame(&mut &long[..]).unwrap_err(),
            WireError::TooLong(_)
        ));
        // Cut short: the connection ended, nothing returned.
        assert!(matches!(
            read_frame(&mut &good[..good.len() - 3]).unwrap_err(),
            WireError::Closed
        ));
    }
}
