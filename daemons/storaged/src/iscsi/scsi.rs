//! The SCSI block commands (SBC-3, and the SPC-4 ones every initiator sends) on a
//! [`BlockDevice`]: what a command does and what it answers, with sense data for each error.
//! Blocking: the target runs [`execute`] on tokio's blocking pool.
//!
//! A volume is served as one LUN of 512-byte logical blocks (4 KiB physical), thin
//! provisioned: UNMAP and WRITE SAME with UNMAP free storage as NBD's TRIM does, and GET LBA
//! STATUS reports holes. A golden image is write protected.

use crate::block::BlockDevice;

/// Logical block size.
pub const BLOCK: u64 = 512;
/// Largest transfer of one command, in blocks (advertised in the Block Limits page).
pub const MAX_TRANSFER_BLOCKS: u32 = (32 << 20) / BLOCK as u32;
/// Largest UNMAP or WRITE SAME range, in blocks.
const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
/// Descriptors one UNMAP may carry.
const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// SCSI status codes.
pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;
pub const TASK_SET_FULL: u8 = 0x28;

/// A sense key with its additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    pub const INVALID_OPCODE: Sense = Sense::new(0x05, 0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(0x05, 0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(0x05, 0x24, 0x00);
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(0x05, 0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAMETERS: Sense = Sense::new(0x05, 0x26, 0x00);
    pub const PARAMETER_LIST_LENGTH: Sense = Sense::new(0x05, 0x1a, 0x00);
    pub const WRITE_PROTECTED: Sense = Sense::new(0x07, 0x27, 0x00);
    pub const READ_ERROR: Sense = Sense::new(0x03, 0x11, 0x00);
    pub const WRITE_ERROR: Sense = Sense::new(0x03, 0x0c, 0x00);
    pub const SPACE_EXHAUSTED: Sense = Sense::new(0x07, 0x27, 0x07);
    pub const MISCOMPARE: Sense = Sense::new(0x0e, 0x1d, 0x00);
    pub const ABORTED: Sense = Sense::new(0x0b, 0x00, 0x00);
    pub const DATA_PHASE_ERROR: Sense = Sense::new(0x0b, 0x4b, 0x00);
    /// Not sent: this node no longer serves the volume (on a pair, the other node took it
    /// over). The target closes the connection instead of answering, so the initiator logs
    /// in again — to the node that serves the volume now — and no error reaches its OS.
    pub const CLOSE: Sense = Sense::new(0xff, 0xff, 0xff);

    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense { key, asc, ascq }
    }

    /// Fixed-format sense data (SPC-4 §4.5.3), 18 bytes.
    pub fn fixed(&self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = self.key;
        s[7] = 10;
        s[12] = self.asc;
        s[13] = self.ascq;
        s
    }

    /// The sense for an I/O error of a read or a write.
    fn of_io(e: &std::io::Error, writing: bool) -> Sense {
        if e.kind() == std::io::ErrorKind::ConnectionAborted {
            return Sense::CLOSE;
        }
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Sense::SPACE_EXHAUSTED,
            Some(libc::EROFS | libc::EPERM) => Sense::WRITE_PROTECTED,
            _ if writing => Sense::WRITE_ERROR,
            _ => Sense::READ_ERROR,
        }
    }
}

/// What a command answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    pub sense: Option<Sense>,
    /// Data to the initiator (a read's, an inquiry's...).
    pub data: Vec<u8>,
}

impl Outcome {
    fn good(data: Vec<u8>) -> Outcome {
        Outcome {
            status: GOOD,
            sense: None,
            data,
        }
    }
    pub fn check(sense: Sense) -> Outcome {
        Outcome {
            status: CHECK_CONDITION,
            sense: Some(sense),
            data: Vec::new(),
        }
    }
}

/// Whether the command carries data to the target, and how much its CDB says (bytes).
pub fn data_out_len(cdb: &[u8]) -> Option<u64> {
    let blocks = match cdb[0] {
        0x0a if cdb[4] == 0 => 256,
        0x0a => u64::from(cdb[4]),
        0x2a | 0x2e => u64::from(be16(&cdb[7..])),
        0xaa | 0xae => u64::from(be32(&cdb[6..])),
        // VERIFY with BYTCHK: the blocks to compare, or the one block.
        0x2f | 0xaf | 0x8f => {
            let n = match cdb[0] {
                0x2f => u64::from(be16(&cdb[7..])),
                0xaf => u64::from(be32(&cdb[6..])),
                _ => u64::from(be32(&cdb[10..])),
            };
            match (cdb[1] >> 1) & 0x03 {
                1 => n,
                3 => 1,
                _ => return None,
            }
        }
        0x8a | 0x8e => u64::from(be32(&cdb[10..])),
        0x41 | 0x93 => 1,
        0x89 => u64::from(cdb[13]) * 2,
        0x42 => return Some(u64::from(be16(&cdb[7..]))),
        _ => return None,
    };
    Some(blocks * BLOCK)
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

/// Who the LUN is, for the identification pages.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The volume id (its serial number).
    pub serial: String,
    /// The iSCSI target name (a SCSI name string designator).
    pub target: String,
}

/// Runs `cdb` (with `data` from the initiator, for a write) on `dev`. `lun` is the LUN the
/// initiator named: only 0 exists.
pub fn execute(dev: &dyn BlockDevice, id: &Identity, lun: u64, cdb: &[u8], data: &[u8]) -> Outcome {
    // REPORT LUNS, INQUIRY and REQUEST SENSE answer for any LUN (SPC-4 §4.6.3).
    let opcode = cdb[0];
    if lun != 0 && !matches!(opcode, 0xa0 | 0x12 | 0x03) {
        return Outcome::check(Sense::LUN_NOT_SUPPORTED);
    }
    let r = match opcode {
        0x00 | 0x1b | 0x1e | 0x35 | 0x91 | 0x34 | 0x90 => misc(dev, cdb),
        0x03 => Ok(request_sense(cdb)),
        0x12 => inquiry(id, lun, cdb),
        0x25 => Ok(read_capacity10(dev)),
        0x9e if cdb[1] & 0x1f == 0x10 => read_capacity16(dev, cdb),
        0x9e if cdb[1] & 0x1f == 0x12 => get_lba_status(dev, cdb),
        0xa0 => report_luns(cdb),
        0x1a | 0x5a => mode_sense(dev, cdb),
        0x08 | 0x28 | 0xa8 | 0x88 => read(dev, cdb),
        // WRITE, and WRITE AND VERIFY (what was written is what reads back).
        0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e => write(dev, cdb, data),
        0x2f | 0xaf | 0x8f => verify(dev, cdb, data),
        0x42 => unmap(dev, cdb, data),
        0x41 | 0x93 => write_same(dev, cdb, data),
        0x89 => compare_and_write(dev, cdb, data),
        _ => Err(Sense::INVALID_OPCODE),
    };
    r.unwrap_or_else(Outcome::check)
}

/// A READ whose blocks are all in memory, answered without waiting (on the target's async
/// thread, sparing a hand-off to the blocking pool and back). None: not a READ, or not
/// cached: [`execute`] it.
pub fn read_cached(dev: &dyn BlockDevice, lun: u64, cdb: &[u8]) -> Option<Outcome> {
    if lun != 0 || !matches!(cdb[0], 0x08 | 0x28 | 0xa8 | 0x88) || no_protection(cdb).is_err() {
        return None;
    }
    let (lba, n, _) = range(cdb);
    if in_range(dev, lba, n).is_err() || n == 0 || n > 256 {
        return None;
    }
    let mut buf = vec![0u8; (n * BLOCK) as usize];
    match dev.read_cached(&mut buf, lba * BLOCK) {
        Ok(true) => Some(Outcome::good(buf)),
        _ => None,
    }
}

/// The range a read, write or verify CDB names: (first block, blocks, FUA).
fn range(cdb: &[u8]) -> (u64, u64, bool) {
    let fua = cdb[1] & 0x08 != 0;
    match cdb[0] {
        0x08 | 0x0a => {
            let lba = u64::from(be32(&[0, cdb[1] & 0x1f, cdb[2], cdb[3]]));
            let n = if cdb[4] == 0 { 256 } else { u64::from(cdb[4]) };
            (lba, n, false)
        }
        0x28 | 0x2a | 0x2f | 0x34 | 0x35 | 0x41 | 0x2e => {
            (u64::from(be32(&cdb[2..])), u64::from(be16(&cdb[7..])), fua)
        }
        0xa8 | 0xaa | 0xae | 0xaf => (u64::from(be32(&cdb[2..])), u64::from(be32(&cdb[6..])), fua),
        0x89 => (be64(&cdb[2..]), u64::from(cdb[13]), fua),
        _ => (be64(&cdb[2..]), u64::from(be32(&cdb[10..])), fua),
    }
}

fn blocks(dev: &dyn BlockDevice) -> u64 {
    dev.size() / BLOCK
}

/// Checks that `[lba, lba + n)` is on the device.
fn in_range(dev: &dyn BlockDevice, lba: u64, n: u64) -> Result<(), Sense> {
    match lba.checked_add(n) {
        Some(end) if end <= blocks(dev) => Ok(()),
        _ => Err(Sense::LBA_OUT_OF_RANGE),
    }
}

fn writable(dev: &dyn BlockDevice) -> Result<(), Sense> {
    if dev.read_only() {
        Err(Sense::WRITE_PROTECTED)
    } else {
        Ok(())
    }
}

/// TEST UNIT READY, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, SYNCHRONIZE CACHE,
/// PRE-FETCH.
fn misc(dev: &dyn BlockDevice, cdb: &[u8]) -> Result<Outcome, Sense> {
    match cdb[0] {
        0x35 | 0x91 | 0x34 | 0x90 => {
            let (lba, n, _) = range(cdb);
            in_range(dev, lba, n)?;
            if matches!(cdb[0], 0x35 | 0x91) && !dev.read_only() {
                dev.flush().map_err(|e| Sense::of_io(&e, true))?;
            }
        }
        0x1e if cdb[4] & 0x03 != 0 => return Err(Sense::INVALID_FIELD_IN_CDB),
        _ => {}
    }
    Ok(Outcome::good(Vec::new()))
}

fn allocation(len: usize, data: Vec<u8>) -> Outcome {
    let mut data = data;
    data.truncate(len);
    Outcome::good(data)
}

fn request_sense(cdb: &[u8]) -> Outcome {
    // Errors are reported with their command (autosense): nothing is pending here.
    let mut s = Sense::new(0, 0, 0).fixed().to_vec();
    if cdb[1] & 0x01 != 0 {
        // Descriptor format asked: an empty descriptor-format sense.
        s = vec![0x72, 0, 0, 0, 0, 0, 0, 0];
    }
    allocation(usize::from(cdb[4]), s)
}

fn inquiry(id: &Identity, lun: u64, cdb: &[u8]) -> Result<Outcome, Sense> {
    let alloc = usize::from(be16(&cdb[3..]));
    // No logical unit at this number: peripheral qualifier 3.
    let qualifier: u8 = if lun == 0 { 0x00 } else { 0x7f };
    if cdb[1] & 0x01 == 0 {
        if cdb[2] != 0 {
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        let mut d = vec![0u8; 66];
        d[0] = qualifier;
        d[2] = 0x06; // SPC-4
        d[3] = 0x02; // response data format 2, no HiSup/NormACA
        d[4] = (d.len() - 5) as u8;
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(b"STREAMER");
        d[16..32].copy_from_slice(b"OS volume       ");
        d[32..36].copy_from_slice(b"0001");
        // Version descriptors: SAM-5, SPC-4, SBC-3, iSCSI.
        for (i, v) in [0x00a0u16, 0x0460, 0x04c0, 0x0960].iter().enumerate() {
            d[58 + i * 2..60 + i * 2].copy_from_slice(&v.to_be_bytes());
        }
        return Ok(allocation(alloc, d));
    }
    let page = cdb[2];
    let mut d = vec![qualifier, page, 0, 0];
    match page {
        0x00 => d.extend_from_slice(&[0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]),
        0x80 => d.extend_from_slice(id.serial.as_bytes()),
        0x83 => {
            // NAA IEEE Registered Extended from the serial (locally made unique), then the
            // target's SCSI name string.
            let digest = <sha2::Sha256 as sha2::Digest>::digest(id.serial.as_bytes());
            let mut naa = [0u8; 16];
            naa[0] = 0x60 | (digest[0] & 0x0f);
            naa[1..16].copy_from_slice(&digest[1..16]);
            d.extend_from_slice(&[0x01, 0x03, 0x00, 16]);
            d.extend_from_slice(&naa);
            let mut name = id.target.as_bytes().to_vec();
            name.push(0);
            while !name.len().is_multiple_of(4) {
                name.push(0);
            }
            // iSCSI, UTF-8; PIV, the target device, a SCSI name string.
            d.extend_from_slice(&[0x53, 0xa8, 0x00, name.len() as u8]);
            d.extend_from_slice(&name);
        }
        0xb0 => {
            // Block Limits (SBC-3 §6.5.3); `p[i]` is byte 4 + i of the page.
            let mut p = [0u8; 60];
            p[1] = 0xff; // MAXIMUM COMPARE AND WRITE LENGTH
            p[2..4].copy_from_slice(&8u16.to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
            p[4..8].copy_from_slice(&MAX_TRANSFER_BLOCKS.to_be_bytes());
            p[8..12].copy_from_slice(&MAX_TRANSFER_BLOCKS.to_be_bytes());
            p[16..20].copy_from_slice(&MAX_UNMAP_BLOCKS.to_be_bytes());
            p[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
            p[24..28].copy_from_slice(&8u32.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
            p[32..40].copy_from_slice(&u64::from(MAX_UNMAP_BLOCKS).to_be_bytes());
            d.extend_from_slice(&p);
        }
        0xb1 => {
            let mut p = [0u8; 60];
            p[0..2].copy_from_slice(&1u16.to_be_bytes()); // non-rotating medium
            d.extend_from_slice(&p);
        }
        0xb2 => {
            // LBPU (UNMAP), LBPWS (WRITE SAME 16 with UNMAP), LBPWS10; LBPRZ: unmapped
            // blocks read as zeroes; provisioning type thin.
            d.extend_from_slice(&[0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0]);
        }
        _ => return Err(Sense::INVALID_FIELD_IN_CDB),
    }
    let len = (d.len() - 4) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(allocation(alloc, d))
}

fn read_capacity10(dev: &dyn BlockDevice) -> Outcome {
    let last = blocks(dev).saturating_sub(1).min(u64::from(u32::MAX)) as u32;
    let mut d = last.to_be_bytes().to_vec();
    d.extend_from_slice(&(BLOCK as u32).to_be_bytes());
    Outcome::good(d)
}

fn read_capacity16(dev: &dyn BlockDevice, cdb: &[u8]) -> Result<Outcome, Sense> {
    let alloc = be32(&cdb[10..]) as usize;
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&blocks(dev).saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&(BLOCK as u32).to_be_bytes());
    d[13] = 3; // 8 logical blocks per physical block (4 KiB)
    d[14] = 0x80 | 0x40; // LBPME (thin), LBPRZ (unmapped reads as zero)
    Ok(allocation(alloc, d))
}

fn get_lba_status(dev: &dyn BlockDevice, cdb: &[u8]) -> Result<Outcome, Sense> {
    let lba = be64(&cdb[2..]);
    let alloc = be32(&cdb[10..]) as usize;
    if lba >= blocks(dev) {
        return Err(Sense::LBA_OUT_OF_RANGE);
    }
    let offset = lba * BLOCK;
    let len = (dev.size() - offset).min(1 << 30);
    let extents = dev
        .block_status(offset, len)
        .map_err(|e| Sense::of_io(&e, false))?;
    let mut d = vec![0u8; 8];
    let mut at = lba;
    for e in extents.iter().take(64) {
        let n = e.len / BLOCK;
        if n == 0 {
            break;
        }
        let mut desc = [0u8; 16];
        desc[0..8].copy_from_slice(&at.to_be_bytes());
        desc[8..12].copy_from_slice(&(n.min(u64::from(u32::MAX)) as u32).to_be_bytes());
        desc[12] = if e.hole { 1 } else { 0 }; // deallocated / mapped
        d.extend_from_slice(&desc);
        at += n;
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(allocation(alloc, d))
}

fn report_luns(cdb: &[u8]) -> Result<Outcome, Sense> {
    let alloc = be32(&cdb[6..]) as usize;
    if alloc < 16 {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    let mut d = vec![0u8; 16];
    d[3] = 8; // one LUN: 0
    Ok(allocation(alloc, d))
}

fn mode_sense(dev: &dyn BlockDevice, cdb: &[u8]) -> Result<Outcome, Sense> {
    let ten = cdb[0] == 0x5a;
    let page = cdb[2] & 0x3f;
    let subpage = cdb[3];
    let alloc = if ten {
        usize::from(be16(&cdb[7..]))
    } else {
        usize::from(cdb[4])
    };
    let caching = {
        let mut p = vec![0x08, 0x12, 0x04]; // WCE: writes are cached until a flush
        p.resize(20, 0);
        p
    };
    let control = {
        let mut p = vec![0x0a, 0x0a, 0x02]; // GLTSD
        p.resize(12, 0);
        p
    };
    let mut pages = Vec::new();
    match (page, subpage) {
        (0x08, 0) => pages.extend_from_slice(&caching),
        (0x0a, 0) => pages.extend_from_slice(&control),
        (0x3f, 0 | 0xff) => {
            pages.extend_from_slice(&caching);
            pages.extend_from_slice(&control);
        }
        _ => return Err(Sense::INVALID_FIELD_IN_CDB),
    }
    // Page control 1 (changeable values): nothing can be changed.
    if cdb[2] >> 6 == 1 {
        let mut at = 0;
        while at + 1 < pages.len() {
            let n = usize::from(pages[at + 1]) + 2;
            let end = (at + n).min(pages.len());
            for b in &mut pages[at + 2..end] {
                *b = 0;
            }
            at += n;
        }
    }
    // WP for a golden image; DPOFUA: the FUA and DPO bits are taken.
    let wp = if dev.read_only() { 0x80 } else { 0 } | 0x10;
    let d = if ten {
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&((6 + pages.len()) as u16).to_be_bytes());
        h[3] = wp;
        h.extend_from_slice(&pages);
        h
    } else {
        let mut h = vec![(3 + pages.len()) as u8, 0, wp, 0];
        h.extend_from_slice(&pages);
        h
    };
    Ok(allocation(alloc, d))
}

/// RDPROTECT, WRPROTECT, VRPROTECT (byte 1, bits 5–7 of the 10, 12 and 16-byte CDBs): no
/// protection information here, so any value but 0 is refused.
fn no_protection(cdb: &[u8]) -> Result<(), Sense> {
    if !matches!(cdb[0], 0x08 | 0x0a) && cdb[1] >> 5 != 0 {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    Ok(())
}

fn read(dev: &dyn BlockDevice, cdb: &[u8]) -> Result<Outcome, Sense> {
    no_protection(cdb)?;
    let (lba, n, _) = range(cdb);
    in_range(dev, lba, n)?;
    if n > u64::from(MAX_TRANSFER_BLOCKS) {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    let mut buf = vec![0u8; (n * BLOCK) as usize];
    dev.read_at(&mut buf, lba * BLOCK)
        .map_err(|e| Sense::of_io(&e, false))?;
    Ok(Outcome::good(buf))
}

fn write(dev: &dyn BlockDevice, cdb: &[u8], data: &[u8]) -> Result<Outcome, Sense> {
    no_protection(cdb)?;
    let (lba, n, fua) = range(cdb);
    // A WRITE(6) of zero blocks is 256; the others write nothing.
    in_range(dev, lba, n)?;
    writable(dev)?;
    if n > u64::from(MAX_TRANSFER_BLOCKS) {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    // The initiator may send less than the CDB says (a residual overflow): the whole blocks
    // it sent are written, nothing more.
    let len = ((n * BLOCK) as usize).min(data.len() / BLOCK as usize * BLOCK as usize);
    if len > 0 {
        dev.write_at(&data[..len], lba * BLOCK, fua)
            .map_err(|e| Sense::of_io(&e, true))?;
    }
    Ok(Outcome::good(Vec::new()))
}

/// VERIFY: BYTCHK 0 checks the medium (reading it does); 1 compares the blocks sent, 3
/// compares each block with the one block sent.
fn verify(dev: &dyn BlockDevice, cdb: &[u8], data: &[u8]) -> Result<Outcome, Sense> {
    no_protection(cdb)?;
    let (lba, n, _) = range(cdb);
    in_range(dev, lba, n)?;
    if n > u64::from(MAX_TRANSFER_BLOCKS) {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    let bytchk = (cdb[1] >> 1) & 0x03;
    let mut now = vec![0u8; (n * BLOCK) as usize];
    dev.read_at(&mut now, lba * BLOCK)
        .map_err(|e| Sense::of_io(&e, false))?;
    let expected: Vec<u8> = match bytchk {
        0 => return Ok(Outcome::good(Vec::new())),
        1 if data.len() >= now.len() => data[..now.len()].to_vec(),
        3 if data.len() >= BLOCK as usize => data[..BLOCK as usize].repeat(n as usize),
        _ => return Err(Sense::INVALID_FIELD_IN_CDB),
    };
    if now != expected {
        return Err(Sense::MISCOMPARE);
    }
    Ok(Outcome::good(Vec::new()))
}

fn unmap(dev: &dyn BlockDevice, cdb: &[u8], data: &[u8]) -> Result<Outcome, Sense> {
    writable(dev)?;
    let len = usize::from(be16(&cdb[7..]));
    if len == 0 {
        return Ok(Outcome::good(Vec::new()));
    }
    if len < 8 || data.len() < len {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let descriptors = usize::from(be16(&data[2..]));
    if descriptors % 16 != 0 || 8 + descriptors > len {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let list: Vec<(u64, u64)> = data[8..8 + descriptors]
        .chunks_exact(16)
        .map(|d| (be64(d), u64::from(be32(&d[8..]))))
        .collect();
    if list.len() > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::INVALID_FIELD_IN_PARAMETERS);
    }
    for &(lba, n) in &list {
        in_range(dev, lba, n)?;
        if n > u64::from(MAX_UNMAP_BLOCKS) {
            return Err(Sense::INVALID_FIELD_IN_PARAMETERS);
        }
    }
    for (lba, n) in list {
        if n > 0 {
            dev.write_zeroes(lba * BLOCK, n * BLOCK, true, false)
                .map_err(|e| Sense::of_io(&e, true))?;
        }
    }
    Ok(Outcome::good(Vec::new()))
}

fn write_same(dev: &dyn BlockDevice, cdb: &[u8], data: &[u8]) -> Result<Outcome, Sense> {
    no_protection(cdb)?;
    let (lba, mut n, _) = range(cdb);
    // NDOB (16 only): no data block, zeroes.
    let no_data = cdb[0] == 0x93 && cdb[1] & 0x01 != 0;
    let unmap = cdb[1] & 0x08 != 0;
    // ANCHOR (anchored blocks are not supported), the obsolete PBDATA/LBDATA.
    if cdb[1] & 0x16 != 0 {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    // Zero blocks: to the end of the medium (WSNZ is 0 in the Block Limits page).
    if n == 0 && lba <= blocks(dev) {
        n = blocks(dev) - lba;
    }
    in_range(dev, lba, n)?;
    writable(dev)?;
    if n > u64::from(MAX_UNMAP_BLOCKS) {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    if n == 0 {
        return Ok(Outcome::good(Vec::new()));
    }
    // Exactly one block of data (none with NDOB).
    let block: &[u8] = if no_data {
        &[0u8; BLOCK as usize]
    } else if data.len() == BLOCK as usize {
        data
    } else {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    };
    // UNMAP: the blocks are freed (and read as zeroes: LBPRZ), whatever the data block.
    if unmap || block.iter().all(|b| *b == 0) {
        dev.write_zeroes(lba * BLOCK, n * BLOCK, unmap, false)
            .map_err(|e| Sense::of_io(&e, true))?;
        return Ok(Outcome::good(Vec::new()));
    }
    // The block repeated, a megabyte at a time.
    let per = (1 << 20) / BLOCK;
    let chunk: Vec<u8> = block.repeat(per.min(n) as usize);
    let mut done = 0;
    while done < n {
        let k = (n - done).min(per);
        dev.write_at(&chunk[..(k * BLOCK) as usize], (lba + done) * BLOCK, false)
            .map_err(|e| Sense::of_io(&e, true))?;
        done += k;
    }
    Ok(Outcome::good(Vec::new()))
}

/// Serialises COMPARE AND WRITE on this node (its read and write must not interleave with
/// another one's).
static COMPARE_AND_WRITE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn compare_and_write(dev: &dyn BlockDevice, cdb: &[u8], data: &[u8]) -> Result<Outcome, Sense> {
    let (lba, n, fua) = range(cdb);
    in_range(dev, lba, n)?;
    writable(dev)?;
    let len = (n * BLOCK) as usize;
    // The blocks to compare and the blocks to write, exactly.
    if data.len() != 2 * len {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    if n == 0 {
        return Ok(Outcome::good(Vec::new()));
    }
    let _one = COMPARE_AND_WRITE.lock();
    let mut now = vec![0u8; len];
    dev.read_at(&mut now, lba * BLOCK)
        .map_err(|e| Sense::of_io(&e, false))?;
    if let Some(at) = now.iter().zip(&data[..len]).position(|(a, b)| a != b) {
        let mut s = Sense::MISCOMPARE.fixed();
        // VALID, and the offset of the first differing byte in INFORMATION.
        s[0] |= 0x80;
        s[3..7].copy_from_slice(&(at as u32).to_be_bytes());
        return Ok(Outcome {
            status: CHECK_CONDITION,
            sense: Some(Sense::MISCOMPARE),
            data: s.to_vec(),
        });
    }
    dev.write_at(&data[len..2 * len], lba * BLOCK, fua)
        .map_err(|e| Sense::of_io(&e, true))?;
    Ok(Outcome::good(Vec::new()))
}
