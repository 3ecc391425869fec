//! The login phase (RFC 7143 §6, §11.12–11.13): the security stage (CHAP with MD5, mutual
//! CHAP on request), the operational stage (the parameters below), for a discovery session
//! or a normal one on one target (one volume).
//!
//! Who may log in to a volume: the export's address allow-list (as for NBD), then its
//! initiator names, then its CHAP secret when it has one. Every refusal is logged with the
//! initiator's name and address, and answered with the login status RFC 7143 gives it.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use md5::Digest;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::pdu::{self, Framing, Pdu, PduError, op};
use super::text;
use crate::export::{ExportCatalog, ExportError, IscsiAccess, OpenExport};

/// Target names are this prefix and the volume's id (or name).
pub const TARGET_PREFIX: &str = "iqn.2026-12.org.streamer:";
/// The largest data segment this target takes (declared in the login).
pub const MAX_RECV: usize = 256 << 10;
/// Our limit on the largest burst an initiator may send (MaxBurstLength, FirstBurstLength).
const MAX_BURST: u32 = 16 << 20;
/// Commands an initiator may have outstanding (the CmdSN window).
pub const CMD_WINDOW: u32 = 64;

/// The stages of a login.
const SECURITY: u8 = 0;
const OPERATIONAL: u8 = 1;
const FULL_FEATURE: u8 = 3;

/// Login status (class, detail).
const AUTH_FAILED: (u8, u8) = (0x02, 0x01);
const FORBIDDEN: (u8, u8) = (0x02, 0x02);
const NOT_FOUND: (u8, u8) = (0x02, 0x03);
const UNSUPPORTED_VERSION: (u8, u8) = (0x02, 0x05);
const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
const NO_SESSION: (u8, u8) = (0x02, 0x0a);
const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);

/// What the connection negotiated.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The largest data segment the initiator takes (its MaxRecvDataSegmentLength).
    pub max_send: usize,
    pub max_burst: u32,
    pub first_burst: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
}

impl Default for Params {
    /// RFC 7143's defaults.
    fn default() -> Params {
        Params {
            header_digest: false,
            data_digest: false,
            max_send: 8192,
            max_burst: 262_144,
            first_burst: 65_536,
            initial_r2t: true,
            immediate_data: true,
        }
    }
}

impl Params {
    /// How PDUs are read from the initiator.
    pub fn framing(&self) -> Framing {
        Framing {
            header_digest: self.header_digest,
            data_digest: self.data_digest,
            max_recv: MAX_RECV,
        }
    }
}

/// What the session is for.
#[derive(Debug)]
pub enum Kind {
    /// SendTargets only.
    Discovery,
    /// One volume's LUN.
    Normal {
        export: Box<OpenExport>,
        target: String,
    },
}

/// A completed login: the connection goes on in the full feature phase.
#[derive(Debug)]
pub struct Session {
    pub initiator: String,
    pub kind: Kind,
    pub params: Params,
    /// The next CmdSN expected, and the next StatSN to send.
    pub exp_cmd_sn: u32,
    pub stat_sn: u32,
}

/// Why a login ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Pdu(#[from] PduError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("login refused ({class:#04x}/{detail:#04x}): {why}")]
    Refused { class: u8, detail: u8, why: String },
}

/// Sessions made so far (their TSIH).
static SESSIONS: AtomicU16 = AtomicU16::new(1);

/// A CHAP exchange under way.
struct Challenge {
    id: u8,
    bytes: [u8; 16],
}

/// Runs the login on a new connection from `client`; `portal` is the address the target
/// names in SendTargets answers ("ip:port").
pub async fn login<R, W>(
    r: &mut R,
    w: &mut W,
    client: IpAddr,
    catalog: &Arc<dyn ExportCatalog>,
) -> Result<Session, LoginError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut state = State {
        client,
        initiator: String::new(),
        kind: None,
        params: Params::default(),
        access: IscsiAccess::default(),
        authenticated: false,
        challenge: None,
        auth_chap: false,
        stat_sn: 0,
        first: true,
        declared_mrdsl: false,
        pending: Vec::new(),
    };
    loop {
        let req = pdu::read_pdu(r, Framing::LOGIN).await?;
        if req.opcode() != op::LOGIN {
            let why = format!("a PDU of opcode {:#04x} during login", req.opcode());
            return Err(state.refuse(w, &req, INITIATOR_ERROR, why).await);
        }
        if state.first {
            state.stat_sn = req.exp_stat_sn();
            if req.byte(3) > 0 {
                let why = format!(
                    "iSCSI versions {}..{}; this target speaks 0",
                    req.byte(3),
                    req.byte(2)
                );
                return Err(state.refuse(w, &req, UNSUPPORTED_VERSION, why).await);
            }
            if req.u16_at(14) != 0 {
                let why = "adding a connection to an existing session is not supported".into();
                return Err(state.refuse(w, &req, NO_SESSION, why).await);
            }
        }
        let flags = req.flags();
        let (transit, more) = (flags & 0x80 != 0, flags & 0x40 != 0);
        let (csg, nsg) = ((flags >> 2) & 3, flags & 3);
        // A text split over several PDUs (C bit): collected, each part answered empty.
        state.pending.extend_from_slice(&req.data);
        if more {
            let mut resp = state.response(&req, csg, None);
            state.send(w, &mut resp).await?;
            continue;
        }
        let data = std::mem::take(&mut state.pending);
        let pairs = match text::parse(&data) {
            Ok(p) => p,
            Err(why) => return Err(state.refuse(w, &req, INITIATOR_ERROR, why).await),
        };
        let answer = match state.stage(csg, &pairs, catalog) {
            Ok(a) => a,
            Err((status, why)) => return Err(state.refuse(w, &req, status, why).await),
        };
        // The transit the initiator asks for, if this stage is done.
        // (Out of the security stage only once authenticated.)
        let next = if !transit || (csg == SECURITY && !state.authenticated) {
            None
        } else if nsg <= csg || nsg == 2 {
            let why = format!("a transit from stage {csg} to stage {nsg}");
            return Err(state.refuse(w, &req, INITIATOR_ERROR, why).await);
        } else {
            Some(nsg)
        };
        let mut resp = state.response(&req, csg, next);
        resp.data = text::encode(&answer);
        if next == Some(FULL_FEATURE) {
            let tsih = SESSIONS.fetch_add(1, Ordering::Relaxed).max(1);
            resp.set_u16(14, tsih);
            if state.kind.is_none() {
                let why = "no SessionType nor TargetName".into();
                return Err(state.refuse(w, &req, MISSING_PARAMETER, why).await);
            }
            state.send(w, &mut resp).await?;
            let kind = state.kind.take().ok_or_else(|| LoginError::Refused {
                class: 3,
                detail: 0,
                why: "lost the session kind".into(),
            })?;
            if let Kind::Normal { target, .. } = &kind {
                tracing::info!(
                    initiator = %state.initiator, client = %client, %target,
                    "iSCSI login"
                );
            }
            return Ok(Session {
                initiator: state.initiator,
                kind,
                params: state.params,
                exp_cmd_sn: req.sn24(),
                stat_sn: state.stat_sn,
            });
        }
        state.send(w, &mut resp).await?;
    }
}

struct State {
    client: IpAddr,
    initiator: String,
    kind: Option<Kind>,
    params: Params,
    access: IscsiAccess,
    authenticated: bool,
    challenge: Option<Challenge>,
    /// CHAP was chosen as the AuthMethod.
    auth_chap: bool,
    stat_sn: u32,
    first: bool,
    /// Our MaxRecvDataSegmentLength was declared (once is enough).
    declared_mrdsl: bool,
    /// Text of PDUs with the C bit, waiting for the last part.
    pending: Vec<u8>,
}

type Status = ((u8, u8), String);

impl State {
    fn response(&self, req: &Pdu, csg: u8, next: Option<u8>) -> Pdu {
        let mut resp = Pdu::new(op::LOGIN_RESPONSE);
        let mut flags = csg << 2;
        if let Some(nsg) = next {
            flags |= 0x80 | nsg;
        }
        resp.set_flags(flags);
        resp.bhs[8..14].copy_from_slice(&req.bhs[8..14]); // ISID
        resp.set_itt(req.itt());
        let cmd_sn = req.sn24();
        resp.set_sequence(self.stat_sn, cmd_sn, cmd_sn.wrapping_add(CMD_WINDOW - 1));
        resp
    }

    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        resp: &mut Pdu,
    ) -> std::io::Result<()> {
        self.first = false;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        pdu::write_pdu(w, resp, Framing::LOGIN).await?;
        w.flush().await
    }

    /// Answers the initiator with a failed login, logs why, and returns the error.
    async fn refuse<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        req: &Pdu,
        (class, detail): (u8, u8),
        why: String,
    ) -> LoginError {
        tracing::warn!(
            initiator = %self.initiator, client = %self.client,
            "iSCSI login refused: {why}"
        );
        let mut resp = self.response(req, (req.flags() >> 2) & 3, None);
        resp.set_byte(36, class);
        resp.set_byte(37, detail);
        let _ = self.send(w, &mut resp).await;
        LoginError::Refused { class, detail, why }
    }

    /// Takes one stage's keys and gives the answers.
    fn stage(
        &mut self,
        csg: u8,
        pairs: &[(String, String)],
        catalog: &Arc<dyn ExportCatalog>,
    ) -> Result<Vec<(String, String)>, Status> {
        let mut answer = Vec::new();
        // Declarations first: who is asking, for what.
        for (k, v) in pairs {
            match k.as_str() {
                "InitiatorName" => self.initiator = v.clone(),
                "SessionType" if v == "Discovery" && self.kind.is_none() => {
                    self.kind = Some(Kind::Discovery)
                }
                "SessionType" if v == "Normal" || v == "Discovery" => {}
                "SessionType" => return Err((INITIATOR_ERROR, format!("SessionType={v}"))),
                "TargetName" if self.kind.is_none() => {
                    let export = self.open(v, catalog)?;
                    self.kind = Some(Kind::Normal {
                        export: Box::new(export),
                        target: v.clone(),
                    });
                }
                _ => {}
            }
        }
        if self.initiator.is_empty() {
            return Err((MISSING_PARAMETER, "no InitiatorName".into()));
        }
        if self.kind.is_none() {
            return Err((
                MISSING_PARAMETER,
                "no TargetName for a normal session".into(),
            ));
        }
        if let Some(Kind::Normal { .. }) = &self.kind
            && !self.access.initiators.is_empty()
            && !self.access.initiators.contains(&self.initiator)
        {
            return Err((
                FORBIDDEN,
                format!("initiator {} is not allowed on this volume", self.initiator),
            ));
        }
        let chap_required = self.access.chap.is_some();
        if csg == SECURITY {
            self.security(pairs, &mut answer)?;
        } else if chap_required && !self.authenticated {
            return Err((
                AUTH_FAILED,
                "this volume needs CHAP; the initiator skipped it".into(),
            ));
        } else {
            self.authenticated = true;
        }
        // Operational keys only in their own stage (RFC 7143 §6.3: the security stage carries
        // security keys); an initiator that goes from security straight to the full feature
        // phase keeps the defaults.
        if csg == OPERATIONAL {
            self.operational(pairs, &mut answer);
        }
        if self.first
            && let Some(Kind::Normal { .. }) = &self.kind
        {
            answer.push(("TargetPortalGroupTag".into(), "1".into()));
        }
        Ok(answer)
    }

    /// Opens the volume a TargetName names, checking the address allow-list.
    fn open(
        &mut self,
        target: &str,
        catalog: &Arc<dyn ExportCatalog>,
    ) -> Result<OpenExport, Status> {
        let name = target
            .strip_prefix(TARGET_PREFIX)
            .ok_or_else(|| (NOT_FOUND, format!("no target {target}")))?;
        match catalog.open(name, self.client) {
            Ok(export) => {
                self.access = export.iscsi.clone();
                Ok(export)
            }
            Err(ExportError::Unknown(_)) => Err((NOT_FOUND, format!("no target {target}"))),
            Err(ExportError::Denied { .. }) => Err((
                FORBIDDEN,
                format!("address {} may not use {target}", self.client),
            )),
        }
    }

    /// The security stage: AuthMethod, then CHAP's steps.
    fn security(
        &mut self,
        pairs: &[(String, String)],
        answer: &mut Vec<(String, String)>,
    ) -> Result<(), Status> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let chap_required = self.access.chap.is_some();
        if let Some(methods) = get("AuthMethod") {
            let offered: Vec<&str> = methods.split(',').collect();
            let choice = if chap_required {
                offered.contains(&"CHAP").then_some("CHAP")
            } else if offered.contains(&"None") {
                Some("None")
            } else {
                None
            };
            match choice {
                Some("None") => self.authenticated = true,
                Some(_) => self.auth_chap = true,
                None => {
                    return Err((
                        AUTH_FAILED,
                        format!(
                            "AuthMethod={methods}: this volume {}",
                            if chap_required {
                                "needs CHAP"
                            } else {
                                "has no CHAP secret"
                            }
                        ),
                    ));
                }
            }
            answer.push(("AuthMethod".into(), choice.unwrap_or("Reject").into()));
        }
        if !self.auth_chap {
            if !chap_required && get("AuthMethod").is_none() {
                self.authenticated = true;
            }
            return Ok(());
        }
        if let Some(algorithms) = get("CHAP_A") {
            if !algorithms.split(',').any(|a| a == "5") {
                return Err((AUTH_FAILED, format!("CHAP_A={algorithms}: only MD5 (5)")));
            }
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            let id = uuid::Uuid::new_v4().as_bytes()[0];
            answer.push(("CHAP_A".into(), "5".into()));
            answer.push(("CHAP_I".into(), id.to_string()));
            answer.push(("CHAP_C".into(), text::encode_binary(&bytes)));
            self.challenge = Some(Challenge { id, bytes });
            return Ok(());
        }
        if let (Some(user), Some(response)) = (get("CHAP_N"), get("CHAP_R")) {
            let (Some(c), Some(chap)) = (self.challenge.take(), self.access.chap.clone()) else {
                return Err((AUTH_FAILED, "CHAP_R before a challenge".into()));
            };
            let expected = chap_md5(c.id, chap.secret.as_bytes(), &c.bytes);
            let given = text::decode_binary(response).unwrap_or_default();
            if user != chap.user || given != expected {
                return Err((AUTH_FAILED, format!("CHAP failed for user {user:?}")));
            }
            // Mutual CHAP: the initiator challenges the target in turn.
            if let (Some(id), Some(challenge)) = (get("CHAP_I"), get("CHAP_C")) {
                let Some(mutual) = self.access.mutual_chap.clone() else {
                    return Err((
                        AUTH_FAILED,
                        "mutual CHAP asked; the volume has no target secret".into(),
                    ));
                };
                let id: u8 = id
                    .parse()
                    .map_err(|_| (AUTH_FAILED, format!("CHAP_I={id}")))?;
                // Not empty, and not this target's own challenge sent back (a reflection).
                let challenge = text::decode_binary(challenge)
                    .filter(|ch| !ch.is_empty() && ch.as_slice() != c.bytes)
                    .ok_or_else(|| (AUTH_FAILED, "a bad CHAP_C".to_string()))?;
                answer.push(("CHAP_N".into(), mutual.user.clone()));
                answer.push((
                    "CHAP_R".into(),
                    text::encode_binary(&chap_md5(id, mutual.secret.as_bytes(), &challenge)),
                ));
            }
            self.authenticated = true;
        }
        Ok(())
    }

    /// The operational keys (RFC 7143 §13): each answered by its negotiation rule.
    fn operational(&mut self, pairs: &[(String, String)], answer: &mut Vec<(String, String)>) {
        let p = &mut self.params;
        let mut declared = false;
        for (k, v) in pairs {
            let num = || v.parse::<u64>().ok();
            let reply: Option<String> = match k.as_str() {
                "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName"
                | "AuthMethod" | "CHAP_A" | "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C" => None,
                "HeaderDigest" | "DataDigest" => {
                    let choice = v
                        .split(',')
                        .find(|d| *d == "CRC32C" || *d == "None")
                        .unwrap_or("Reject");
                    let on = choice == "CRC32C";
                    if k == "HeaderDigest" {
                        p.header_digest = on;
                    } else {
                        p.data_digest = on;
                    }
                    Some(choice.into())
                }
                "MaxConnections" => Some("1".into()),
                "InitialR2T" => {
                    // OR: we do not need it; the initiator may.
                    p.initial_r2t = v == "Yes";
                    Some(v.clone())
                }
                "ImmediateData" => {
                    p.immediate_data = v == "Yes";
                    Some(v.clone())
                }
                "MaxRecvDataSegmentLength" => {
                    if let Some(n) = num() {
                        p.max_send = (n as usize).clamp(512, 16 << 20);
                    }
                    declared = true;
                    None
                }
                "MaxBurstLength" => num().map(|n| {
                    p.max_burst = (n.min(u64::from(MAX_BURST)) as u32).max(512);
                    p.max_burst.to_string()
                }),
                "FirstBurstLength" => num().map(|n| {
                    p.first_burst = (n.min(u64::from(MAX_BURST)) as u32).max(512);
                    p.first_burst.to_string()
                }),
                "DefaultTime2Wait" => num().map(|n| n.max(2).to_string()),
                "DefaultTime2Retain" => Some("0".into()),
                "MaxOutstandingR2T" => Some("1".into()),
                "DataPDUInOrder" | "DataSequenceInOrder" => Some("Yes".into()),
                "ErrorRecoveryLevel" => Some("0".into()),
                "IFMarker" | "OFMarker" => Some("No".into()),
                "OFMarkInt" | "IFMarkInt" => Some("Reject".into()),
                _ => Some("NotUnderstood".into()),
            };
            if let Some(r) = reply {
                answer.push((k.clone(), r));
            }
        }
        // FirstBurstLength may not exceed MaxBurstLength.
        p.first_burst = p.first_burst.min(p.max_burst);
        if declared || !self.declared_mrdsl {
            answer.push(("MaxRecvDataSegmentLength".into(), MAX_RECV.to_string()));
            self.declared_mrdsl = true;
        }
    }
}

/// CHAP's MD5 response (RFC 1994): MD5(id || secret || challenge).
pub fn chap_md5(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut h = md5::Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().to_vec()
}

/// Answers a Text Request's SendTargets (in a discovery session, or in a normal one for its
/// own target): the targets `client` may use, at `portal`.
pub fn send_targets(
    catalog: &Arc<dyn ExportCatalog>,
    client: IpAddr,
    portal: &str,
    which: &str,
    only: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in catalog.list(client) {
        let target = format!("{TARGET_PREFIX}{}", e.id);
        if only.is_some_and(|t| t != target) {
            continue;
        }
        if which != "All" && which != target && !which.is_empty() {
            continue;
        }
        out.push(("TargetName".into(), target));
        out.push(("TargetAddress".into(), format!("{portal},1")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chap_md5_is_rfc_1994s() {
        // MD5(0x01 || "secret" || 0x0203).
        let r = chap_md5(1, b"secret", &[2, 3]);
        let mut h = md5::Md5::new();
        h.update([1u8, b's', b'e', b'c', b'r', b'e', b't', 2, 3]);
        assert_eq!(r, h.finalize().to_vec());
    }
}
