//! iSCSI PDUs as bytes (RFC 7143 §11): the 48-byte basic header segment, additional header
//! segments, the data segment padded to four bytes, and the optional CRC32C header and data
//! digests.
//!
//! [`read_pdu`] checks everything a peer controls before anything is allocated or acted on:
//! an unknown opcode, a data segment longer than the negotiated limit, a digest that does
//! not match: each is a [`PduError`] that names it, and the connection is closed.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the basic header segment.
pub const BHS: usize = 48;

/// Initiator opcodes.
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT: u8 = 0x02;
    pub const LOGIN: u8 = 0x03;
    pub const TEXT: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    // Target opcodes.
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const REJECT: u8 = 0x3f;
}

/// The final bit (byte 1) of most PDUs.
pub const FINAL: u8 = 0x80;
/// A task tag or transfer tag that names nothing.
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// One PDU: its header (the opcode-specific fields are read and written through the
/// accessors), and its data segment (unpadded).
#[derive(Clone, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: [u8; BHS],
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Pdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdu")
            .field("opcode", &format_args!("{:#04x}", self.opcode()))
            .field("itt", &format_args!("{:#x}", self.itt()))
            .field("data", &self.data.len())
            .finish()
    }
}

/// Why a PDU could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("the connection ended")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a data segment of {len} bytes (at most {max} were negotiated)")]
    TooLong { len: usize, max: usize },
    #[error("the header digest does not match (sent {sent:08x}, computed {computed:08x})")]
    HeaderDigest { sent: u32, computed: u32 },
    #[error("the data digest does not match (sent {sent:08x}, computed {computed:08x})")]
    DataDigest { sent: u32, computed: u32 },
}

/// What the connection negotiated about framing.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The largest data segment this side accepts.
    pub max_recv: usize,
}

impl Framing {
    /// As during login: no digests, 8 KiB data segments (RFC 7143 §13.12's default).
    pub const LOGIN: Framing = Framing {
        header_digest: false,
        data_digest: false,
        max_recv: 8192,
    };
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Pdu {
    /// A target PDU of `opcode` with the final bit set, no data.
    pub fn new(opcode: u8) -> Pdu {
        let mut bhs = [0u8; BHS];
        bhs[0] = opcode;
        bhs[1] = FINAL;
        Pdu {
            bhs,
            data: Vec::new(),
        }
    }

    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    /// The immediate bit (byte 0).
    pub fn immediate(&self) -> bool {
        self.bhs[0] & 0x40 != 0
    }
    pub fn flags(&self) -> u8 {
        self.bhs[1]
    }
    pub fn set_flags(&mut self, f: u8) {
        self.bhs[1] = f;
    }
    pub fn byte(&self, at: usize) -> u8 {
        self.bhs[at]
    }
    pub fn set_byte(&mut self, at: usize, v: u8) {
        self.bhs[at] = v;
    }
    pub fn u16_at(&self, at: usize) -> u16 {
        be16(&self.bhs[at..])
    }
    pub fn set_u16(&mut self, at: usize, v: u16) {
        self.bhs[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn u32_at(&self, at: usize) -> u32 {
        be32(&self.bhs[at..])
    }
    pub fn set_u32(&mut self, at: usize, v: u32) {
        self.bhs[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn lun(&self) -> u64 {
        u64::from_be_bytes(self.bhs[8..16].try_into().unwrap_or([0; 8]))
    }
    pub fn set_lun(&mut self, lun: u64) {
        self.bhs[8..16].copy_from_slice(&lun.to_be_bytes());
    }
    /// Initiator task tag (bytes 16..20).
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    pub fn set_itt(&mut self, v: u32) {
        self.set_u32(16, v);
    }
    /// CmdSN of an initiator PDU; StatSN of a target PDU (bytes 24..28).
    pub fn sn24(&self) -> u32 {
        self.u32_at(24)
    }
    /// ExpStatSN of an initiator PDU (bytes 28..32).
    pub fn exp_stat_sn(&self) -> u32 {
        self.u32_at(28)
    }
    /// The SCSI command descriptor block of a SCSI Command PDU.
    pub fn cdb(&self) -> &[u8] {
        &self.bhs[32..48]
    }
    /// Sets StatSN, ExpCmdSN, MaxCmdSN (bytes 24, 28, 32), as every target response carries.
    pub fn set_sequence(&mut self, stat_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) {
        self.set_u32(24, stat_sn);
        self.set_u32(28, exp_cmd_sn);
        self.set_u32(32, max_cmd_sn);
    }
}

/// Reads one PDU, checked against `framing`.
pub async fn read_pdu(r: &mut (impl AsyncRead + Unpin), framing: Framing) -> Result<Pdu, PduError> {
    let mut bhs = [0u8; BHS];
    match r.read_exact(&mut bhs).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(PduError::Closed),
        Err(e) => return Err(e.into()),
    }
    let ahs_len = usize::from(bhs[4]) * 4;
    let data_len = (usize::from(bhs[5]) << 16) | (usize::from(bhs[6]) << 8) | usize::from(bhs[7]);
    if data_len > framing.max_recv {
        return Err(PduError::TooLong {
            len: data_len,
            max: framing.max_recv,
        });
    }
    // Additional header segments are not used by any command this target serves; they are
    // read (for the digest) and ignored.
    let mut ahs = vec![0u8; ahs_len];
    r.read_exact(&mut ahs).await.map_err(eof)?;
    if framing.header_digest {
        let mut d = [0u8; 4];
        r.read_exact(&mut d).await.map_err(eof)?;
        let sent = u32::from_le_bytes(d);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&bhs), &ahs);
        if sent != computed {
            return Err(PduError::HeaderDigest { sent, computed });
        }
    }
    let padded = data_len.div_ceil(4) * 4;
    let mut data = vec![0u8; padded];
    r.read_exact(&mut data).await.map_err(eof)?;
    if framing.data_digest && data_len > 0 {
        let mut d = [0u8; 4];
        r.read_exact(&mut d).await.map_err(eof)?;
        let sent = u32::from_le_bytes(d);
        let computed = crc32c::crc32c(&data);
        if sent != computed {
            return Err(PduError::DataDigest { sent, computed });
        }
    }
    data.truncate(data_len);
    Ok(Pdu { bhs, data })
}

fn eof(e: std::io::Error) -> PduError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        PduError::Closed
    } else {
        e.into()
    }
}

/// Writes `pdu` (its data segment length set from its data), with the digests `framing`
/// asks for. The caller flushes.
pub async fn write_pdu(
    w: &mut (impl AsyncWrite + Unpin),
    pdu: &mut Pdu,
    framing: Framing,
) -> std::io::Result<()> {
    write_parts(w, pdu, &[], framing).await
}

/// As [`write_pdu`], with the data segment given apart (a read's data is not copied into
/// the PDU).
pub async fn write_parts(
    w: &mut (impl AsyncWrite + Unpin),
    pdu: &mut Pdu,
    extra: &[u8],
    framing: Framing,
) -> std::io::Result<()> {
    let len = pdu.data.len() + extra.len();
    pdu.bhs[4] = 0;
    pdu.bhs[5] = (len >> 16) as u8;
    pdu.bhs[6] = (len >> 8) as u8;
    pdu.bhs[7] = len as u8;
    w.write_all(&pdu.bhs).await?;
    if framing.header_digest {
        w.write_all(&crc32c::crc32c(&pdu.bhs).to_le_bytes()).await?;
    }
    if len == 0 {
        return Ok(());
    }
    let pad = [0u8; 3];
    let pad = &pad[..(4 - len % 4) % 4];
    w.write_all(&pdu.data).await?;
    w.write_all(extra).await?;
    w.write_all(pad).await?;
    if framing.data_digest {
        let mut crc = crc32c::crc32c(&pdu.data);
        crc = crc32c::crc32c_append(crc, extra);
        crc = crc32c::crc32c_append(crc, pad);
        w.write_all(&crc.to_le_bytes()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(digests: bool) -> Framing {
        Framing {
            header_digest: digests,
            data_digest: digests,
            max_recv: 1 << 16,
        }
    }

    #[tokio::test]
    async fn a_pdu_reads_back_as_written_with_and_without_digests() {
        for digests in [false, true] {
            let mut p = Pdu::new(op::TEXT_RESPONSE);
            p.set_itt(7);
            p.data = b"TargetName=iqn.x\0".to_vec();
            let mut buf = Vec::new();
            write_pdu(&mut buf, &mut p, framing(digests)).await.unwrap();
            assert_eq!(buf.len() % 4, 0);
            let back = read_pdu(&mut &buf[..], framing(digests)).await.unwrap();
            assert_eq!(back, p);
        }
    }

    #[tokio::test]
    async fn damaged_or_oversized_pdus_are_refused() {
        let mut p = Pdu::new(op::NOP_IN);
        p.data = vec![1; 100];
        let mut good = Vec::new();
        write_pdu(&mut good, &mut p, framing(true)).await.unwrap();
        let mut bad = good.clone();
        bad[20] ^= 1;
        assert!(matches!(
            read_pdu(&mut &bad[..], framing(true)).await,
            Err(PduError::HeaderDigest { .. })
        ));
        let mut bad = good.clone();
        bad[BHS + 4 + 10] ^= 1;
        assert!(matches!(
            read_pdu(&mut &bad[..], framing(true)).await,
            Err(PduError::DataDigest { .. })
        ));
        let small = Framing {
            max_recv: 64,
            ..framing(true)
        };
        assert!(matches!(
            read_pdu(&mut &good[..], small).await,
            Err(PduError::TooLong { len: 100, max: 64 })
        ));
        assert!(matches!(
            read_pdu(&mut &good[..30], framing(true)).await,
            Err(PduError::Closed)
        ));
    }
}
