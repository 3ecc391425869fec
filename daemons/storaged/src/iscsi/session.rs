//! The full feature phase of one connection (RFC 7143 §3.2–3.4, §11): SCSI commands with
//! their data (immediate, unsolicited, or asked for with R2T), NOP keep-alives, text
//! (SendTargets), task management, logout.
//!
//! Commands run one after another in the order they arrive (their CmdSN order on the one
//! connection a session has); a write whose data is still coming waits (`Waiting`) while
//! other PDUs are read. A write is acknowledged (its SCSI Response sent) only after the block
//! device took it — on a pair, after the peer did too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::login::{self, CMD_WINDOW, Kind, Params, Session};
use super::pdu::{self, FINAL, Pdu, PduError, RESERVED_TAG, op};
use super::scsi::{self, Identity, Outcome, Sense};
use super::text;
use crate::block::BlockDevice;
use crate::export::ExportCatalog;

/// An idle connection is pinged (NOP-In) after this long...
const PING_AFTER: Duration = Duration::from_secs(10);
/// ...and closed when nothing came back this long after the ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Write data a connection may be waiting for at once (beyond it: TASK SET FULL).
const MAX_PENDING_WRITE_BYTES: usize = 128 << 20;

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Pdu(#[from] PduError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the initiator did not answer a NOP-In ping")]
    Silent,
    #[error("this node no longer serves the volume")]
    NotServed,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A write waiting for its data.
struct PendingWrite {
    lun: u64,
    cdb: [u8; 16],
    buf: Vec<u8>,
    received: usize,
    /// The end of the data asked for or allowed so far (unsolicited burst, R2Ts).
    asked_until: usize,
    r2t_sn: u32,
    /// The transfer tag of the R2T outstanding, if any.
    ttt: Option<u32>,
    /// The DataSN the next Data-Out of the current sequence must carry (each R2T starts a
    /// sequence at 0, as the unsolicited data does).
    data_sn: u32,
    /// The bytes the CDB says it transfers (the SCSI transfer length), for the residual.
    needed: usize,
}

/// The writes of a connection waiting for their data, and the bytes they hold.
#[derive(Default)]
struct Waiting {
    writes: HashMap<u32, PendingWrite>,
    bytes: usize,
}

impl Waiting {
    fn insert(&mut self, itt: u32, w: PendingWrite) {
        self.bytes += w.buf.len();
        self.writes.insert(itt, w);
    }

    fn take(&mut self, itt: u32) -> Option<PendingWrite> {
        let w = self.writes.remove(&itt)?;
        self.bytes -= w.buf.len();
        Some(w)
    }

    fn clear(&mut self) {
        self.writes.clear();
        self.bytes = 0;
    }
}

struct Conn<'a, W> {
    w: &'a mut W,
    params: Params,
    stat_sn: u32,
    exp_cmd_sn: u32,
    next_ttt: u32,
}

impl<W: AsyncWrite + Unpin> Conn<'_, W> {
    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(CMD_WINDOW - 1)
    }

    /// Sends a response that carries a StatSN (and advances it).
    async fn respond(&mut self, mut p: Pdu, extra: &[u8]) -> std::io::Result<()> {
        let sn = self.stat_sn;
        self.stat_sn = sn.wrapping_add(1);
        p.set_sequence(sn, self.exp_cmd_sn, self.max_cmd_sn());
        pdu::write_parts(self.w, &mut p, extra, self.framing()).await
    }

    /// Sends a PDU that carries no StatSN of its own (Data-In without status, R2T).
    async fn send(&mut self, mut p: Pdu, extra: &[u8]) -> std::io::Result<()> {
        p.set_sequence(self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn());
        pdu::write_parts(self.w, &mut p, extra, self.framing()).await
    }

    fn framing(&self) -> pdu::Framing {
        pdu::Framing {
            max_recv: login::MAX_RECV,
            ..self.params.framing()
        }
    }
}

/// Runs a logged-in connection until it ends.
pub async fn run<R, W>(
    r: &mut R,
    w: &mut W,
    session: Session,
    client: IpAddr,
    portal: &str,
    catalog: &Arc<dyn ExportCatalog>,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Session {
        initiator,
        kind,
        params,
        exp_cmd_sn,
        stat_sn,
    } = session;
    let mut c = Conn {
        w,
        params,
        stat_sn,
        exp_cmd_sn,
        next_ttt: 1,
    };
    let (device, identity, served, _export) = match kind {
        Kind::Discovery => (None, None, None, None),
        Kind::Normal { export, target } => (
            Some(Arc::clone(&export.device)),
            Some(Identity {
                serial: export.volume_id.clone(),
                target: target.clone(),
            }),
            Some(export.served.clone()),
            Some(export),
        ),
    };
    let own_target = identity.as_ref().map(|i| i.target.clone());
    let mut waiting = Waiting::default();
    let mut pinged = false;
    loop {
        c.w.flush().await?;
        let wait = if pinged { PING_TIMEOUT } else { PING_AFTER };
        let req = match tokio::time::timeout(wait, pdu::read_pdu(r, params.framing())).await {
            Ok(p) => p?,
            Err(_) if pinged => return Err(SessionError::Silent),
            Err(_) => {
                // Idle: a ping the initiator must answer (NOP-In with a transfer tag).
                let mut ping = Pdu::new(op::NOP_IN);
                ping.set_itt(RESERVED_TAG);
                ping.set_u32(20, 0x7000_0000);
                c.send(ping, &[]).await?;
                pinged = true;
                continue;
            }
        };
        pinged = false;
        if let Some(s) = &served
            && !s.still()
        {
            // The pair moved the volume to the other node: the initiator logs in again there.
            return Err(SessionError::NotServed);
        }
        // Commands that are not immediate must fall in the CmdSN window (RFC 7143 §3.2.2.1:
        // outside it they are dropped, unanswered) and advance the expected CmdSN.
        let numbered = matches!(
            req.opcode(),
            op::SCSI_COMMAND | op::TASK_MGMT | op::TEXT | op::LOGOUT | op::NOP_OUT
        ) && !req.immediate()
            && !(req.opcode() == op::NOP_OUT && req.itt() == RESERVED_TAG);
        if numbered {
            let ahead = req.sn24().wrapping_sub(c.exp_cmd_sn);
            if ahead >= CMD_WINDOW {
                tracing::debug!(
                    cmd_sn = req.sn24(),
                    expected = c.exp_cmd_sn,
                    "iSCSI: a command outside the CmdSN window, dropped"
                );
                continue;
            }
            c.exp_cmd_sn = req.sn24().wrapping_add(1);
        }
        match req.opcode() {
            op::NOP_OUT => {
                if req.itt() != RESERVED_TAG {
                    let mut nop = Pdu::new(op::NOP_IN);
                    nop.set_lun(req.lun());
                    nop.set_itt(req.itt());
                    nop.set_u32(20, RESERVED_TAG);
                    nop.data = req.data.clone();
                    c.respond(nop, &[]).await?;
                }
            }
            op::SCSI_COMMAND => {
                let (Some(dev), Some(id)) = (&device, &identity) else {
                    reject(&mut c, &req, 0x05).await?;
                    continue;
                };
                command(&mut c, &req, dev, id, &mut waiting).await?;
            }
            op::DATA_OUT => {
                let (Some(dev), Some(id)) = (&device, &identity) else {
                    reject(&mut c, &req, 0x04).await?;
                    continue;
                };
                data_out(&mut c, &req, dev, id, &mut waiting).await?;
            }
            op::TEXT => {
                let pairs = text::parse(&req.data).unwrap_or_default();
                let mut answer = Vec::new();
                for (k, v) in &pairs {
                    if k == "SendTargets" {
                        answer.extend(login::send_targets(
                            catalog,
                            client,
                            portal,
                            v,
                            own_target.as_deref(),
                        ));
                    } else {
                        answer.push((k.clone(), "NotUnderstood".into()));
                    }
                }
                let mut resp = Pdu::new(op::TEXT_RESPONSE);
                resp.set_itt(req.itt());
                resp.set_u32(20, RESERVED_TAG);
                resp.data = text::encode(&answer);
                if resp.data.len() > params.max_send {
                    // Longer than the initiator takes in one PDU: the list is cut (one
                    // target per volume keeps it short; continuation is not needed here).
                    resp.data.truncate(params.max_send);
                }
                c.respond(resp, &[]).await?;
            }
            op::TASK_MGMT => {
                let function = req.flags() & 0x7f;
                let referenced = req.u32_at(20);
                let response = match function {
                    // ABORT TASK: a write still waiting for data is dropped; one that ran
                    // already is done (its response was sent).
                    1 => match waiting.take(referenced) {
                        Some(_) => 0,
                        // Done already (or never seen): "task does not exist".
                        None => 1,
                    },
                    // ABORT TASK SET, CLEAR TASK SET, LUN RESET, TARGET WARM/COLD RESET.
                    2 | 4 | 5 | 6 | 7 => {
                        waiting.clear();
                        0
                    }
                    _ => 5, // not supported
                };
                let mut resp = Pdu::new(op::TASK_MGMT_RESPONSE);
                resp.set_byte(2, response);
                resp.set_itt(req.itt());
                c.respond(resp, &[]).await?;
            }
            op::LOGOUT => {
                let mut resp = Pdu::new(op::LOGOUT_RESPONSE);
                resp.set_itt(req.itt());
                c.respond(resp, &[]).await?;
                c.w.flush().await?;
                tracing::debug!(%initiator, %client, "iSCSI logout");
                return Ok(());
            }
            op::SNACK => reject(&mut c, &req, 0x05).await?,
            other => {
                reject(&mut c, &req, 0x04).await?;
                return Err(SessionError::Protocol(format!("opcode {other:#04x}")));
            }
        }
    }
}

/// A Reject PDU carrying the rejected header.
async fn reject<W: AsyncWrite + Unpin>(
    c: &mut Conn<'_, W>,
    req: &Pdu,
    reason: u8,
) -> std::io::Result<()> {
    let mut p = Pdu::new(op::REJECT);
    p.set_byte(2, reason);
    p.set_itt(RESERVED_TAG);
    p.data = req.bhs.to_vec();
    c.respond(p, &[]).await
}

async fn command<W: AsyncWrite + Unpin>(
    c: &mut Conn<'_, W>,
    req: &Pdu,
    dev: &Arc<dyn BlockDevice>,
    id: &Identity,
    waiting: &mut Waiting,
) -> std::io::Result<()> {
    let mut cdb = [0u8; 16];
    cdb.copy_from_slice(req.cdb());
    let expected = req.u32_at(20) as usize;
    let writing = req.flags() & 0x20 != 0;
    if !writing {
        let outcome = match scsi::read_cached(dev.as_ref(), req.lun(), &cdb) {
            Some(o) => o,
            None => run_blocking(dev, id, req.lun(), cdb, Vec::new()).await,
        };
        return finish(c, req.itt(), expected, None, outcome).await;
    }
    // What the CDB transfers; the initiator sends what it expects (EDTL), and the command
    // uses the smaller of the two (the difference is the residual).
    let needed = scsi::data_out_len(&cdb).map_or(expected, |n| n as usize);
    if expected > scsi::MAX_TRANSFER_BLOCKS as usize * scsi::BLOCK as usize * 2 + 4096
        || waiting.bytes + expected > MAX_PENDING_WRITE_BYTES
    {
        // Too much data waiting already: the initiator retries later.
        let busy = Outcome {
            status: scsi::TASK_SET_FULL,
            sense: None,
            data: Vec::new(),
        };
        return finish(c, req.itt(), expected, Some(needed), busy).await;
    }
    let mut w = PendingWrite {
        lun: req.lun(),
        cdb,
        buf: vec![0u8; expected],
        received: 0,
        asked_until: 0,
        r2t_sn: 0,
        ttt: None,
        data_sn: 0,
        needed,
    };
    // Immediate data, then what may come unsolicited.
    let immediate = req.data.len().min(expected);
    w.buf[..immediate].copy_from_slice(&req.data[..immediate]);
    w.received = immediate;
    w.asked_until = if c.params.initial_r2t {
        immediate
    } else {
        (c.params.first_burst as usize).min(expected).max(immediate)
    };
    if w.received >= expected {
        let outcome = run_blocking(dev, id, w.lun, w.cdb, w.buf).await;
        return finish(c, req.itt(), expected, Some(needed), outcome).await;
    }
    let itt = req.itt();
    // Nothing more is coming unsolicited: ask for the next burst.
    if w.asked_until <= w.received {
        ask(c, itt, &mut w, expected).await?;
    }
    waiting.insert(itt, w);
    Ok(())
}

/// Sends an R2T for the next burst of write `itt`.
async fn ask<W: AsyncWrite + Unpin>(
    c: &mut Conn<'_, W>,
    itt: u32,
    w: &mut PendingWrite,
    expected: usize,
) -> std::io::Result<()> {
    let from = w.asked_until.max(w.received);
    let len = (c.params.max_burst as usize).min(expected - from);
    let ttt = c.next_ttt;
    c.next_ttt = c.next_ttt.wrapping_add(1) & 0x7fff_ffff;
    let mut r2t = Pdu::new(op::R2T);
    r2t.set_lun(w.lun);
    r2t.set_itt(itt);
    r2t.set_u32(20, ttt);
    r2t.set_u32(36, w.r2t_sn);
    r2t.set_u32(40, from as u32);
    r2t.set_u32(44, len as u32);
    w.r2t_sn += 1;
    w.asked_until = from + len;
    w.ttt = Some(ttt);
    w.data_sn = 0;
    c.send(r2t, &[]).await
}

async fn data_out<W: AsyncWrite + Unpin>(
    c: &mut Conn<'_, W>,
    req: &Pdu,
    dev: &Arc<dyn BlockDevice>,
    id: &Identity,
    waiting: &mut Waiting,
) -> std::io::Result<()> {
    let itt = req.itt();
    let Some(w) = waiting.writes.get_mut(&itt) else {
        // Data for a task that ended (aborted, or refused as busy): dropped.
        return Ok(());
    };
    // Out of order, repeated or lost Data-Out (error recovery level 0 recovers none): the
    // task ends with a data phase error, nothing of it written; its later Data-Out PDUs
    // find no task and are dropped.
    if req.u32_at(36) != w.data_sn {
        tracing::warn!(
            "iSCSI: Data-Out DataSN {} where {} was due (task {itt:#x}): task failed",
            req.u32_at(36),
            w.data_sn
        );
        return fail_write(c, waiting, itt, Sense::DATA_PHASE_ERROR).await;
    }
    w.data_sn = w.data_sn.wrapping_add(1);
    let offset = req.u32_at(40) as usize;
    let end = offset.saturating_add(req.data.len());
    if end > w.buf.len() || end > w.asked_until.max(w.received) + c.params.max_burst as usize {
        // Beyond the transfer: a protocol error; the command fails, nothing is written.
        return fail_write(c, waiting, itt, Sense::INVALID_FIELD_IN_CDB).await;
    }
    w.buf[offset..end].copy_from_slice(&req.data);
    w.received += req.data.len();
    let expected = w.buf.len();
    if w.received >= expected {
        let Some(w) = waiting.take(itt) else {
            return Ok(());
        };
        let needed = w.needed;
        let outcome = run_blocking(dev, id, w.lun, w.cdb, w.buf).await;
        return finish(c, itt, expected, Some(needed), outcome).await;
    }
    // The end of a burst (F bit): ask for the next one.
    if req.flags() & FINAL != 0 && w.received >= w.asked_until {
        ask(c, itt, w, expected).await?;
    }
    Ok(())
}

/// Ends write `itt` with `sense`, nothing of it written.
async fn fail_write<W: AsyncWrite + Unpin>(
    c: &mut Conn<'_, W>,
    waiting: &mut Waiting,
    itt: u32,
    sense: Sense,
) -> std::io::Result<()> {
    let needed = waiting.take(itt).map_or(0, |w| w.needed);
    finish(c, itt, 0, Some(needed), Outcome::check(sense)).await
}

async fn run_blocking(
    dev: &Arc<dyn BlockDevice>,
    id: &Identity,
    lun: u64,
    cdb: [u8; 16],
    data: Vec<u8>,
) -> Outcome {
    let dev = Arc::clone(dev);
    let id = id.clone();
    tokio::task::spawn_blocking(move || scsi::execute(dev.as_ref(), &id, lun, &cdb, &data))
        .await
        .unwrap_or_else(|_| Outcome::check(Sense::ABORTED))
}

/// Sends a command's data (Data-In) and status. `write`: the bytes a write's CDB transfers
/// (None for a command without data to the target).
async fn finish<W: AsyncWrite + Unpin>(
    c: &mut Conn<'_, W>,
    itt: u32,
    expected: usize,
    write: Option<usize>,
    outcome: Outcome,
) -> std::io::Result<()> {
    let writing = write.is_some();
    if outcome.sense == Some(Sense::CLOSE) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "this node no longer serves the volume",
        ));
    }
    let data = if writing { &[][..] } else { &outcome.data[..] };
    let sent = data.len().min(expected);
    // Residuals: the initiator expected more (underflow) or less (overflow) than the
    // command transfers.
    let transfer = match write {
        Some(needed) => needed,
        None => data.len(),
    };
    let (under, over, residual) = if outcome.status == scsi::CHECK_CONDITION && !writing {
        (false, false, 0)
    } else if transfer < expected {
        (true, false, expected - transfer)
    } else if transfer > expected {
        (false, true, transfer - expected)
    } else {
        (false, false, 0)
    };
    let good = outcome.status == scsi::GOOD;
    if sent > 0 {
        let chunk = c.params.max_send.max(512);
        let mut at = 0;
        let mut data_sn = 0u32;
        while at < sent {
            let n = chunk.min(sent - at);
            let last = at + n == sent;
            let mut p = Pdu::new(op::DATA_IN);
            let mut flags = 0;
            if last {
                flags |= FINAL;
                if good {
                    // Phase collapse: the status rides on the last Data-In.
                    flags |= 0x01;
                    if under {
                        flags |= 0x02;
                    }
                    if over {
                        flags |= 0x04;
                    }
                }
            }
            p.set_flags(flags);
            p.set_itt(itt);
            p.set_u32(20, RESERVED_TAG);
            p.set_u32(36, data_sn);
            p.set_u32(40, at as u32);
            if last && good {
                p.set_u32(44, residual as u32);
                p.set_byte(3, outcome.status);
                c.respond(p, &data[at..at + n]).await?;
            } else {
                c.send(p, &data[at..at + n]).await?;
            }
            data_sn += 1;
            at += n;
        }
        if good {
            return Ok(());
        }
    }
    let mut resp = Pdu::new(op::SCSI_RESPONSE);
    let mut flags = FINAL;
    if under {
        flags |= 0x02;
    }
    if over {
        flags |= 0x04;
    }
    resp.set_flags(flags);
    resp.set_byte(3, outcome.status);
    resp.set_itt(itt);
    resp.set_u32(44, residual as u32);
    if let Some(sense) = outcome.sense {
        // COMPARE AND WRITE gives its own sense bytes (with the miscompare offset).
        let bytes = if outcome.data.len() == 18 && sense == Sense::MISCOMPARE {
            outcome.data.clone()
        } else {
            sense.fixed().to_vec()
        };
        let mut d = (bytes.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&bytes);
        resp.data = d;
    }
    c.respond(resp, &[]).await
}
