//! LVM2 without device-mapper: read a physical volume's label and text metadata to list its
//! volume group and logical volumes, find where a linear logical volume lies on the PV (so a
//! loop device can expose it), and rename the volume group in place (`vgrename`).
//!
//! Only what plan scripts need is supported: a logical volume whose extents are one
//! contiguous run on one PV of this disk. Anything else (striped, mirrored, thin, RAID,
//! spread over PVs) is listed but refused with a clear error when used.

mod label;
mod text;

pub use label::{LabelError, MdaText, Pv, PvLabel, lvm_crc};
pub use text::TextError;

use text::Value;

/// Why LVM metadata could not be read, used or changed.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("LVM metadata: {0}")]
    Metadata(String),
    #[error("logical volume {lv}: {why}")]
    Unsupported { lv: String, why: String },
    #[error("{0:?} is not a valid volume group name")]
    BadName(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalVolume {
    /// The name the segments use (`pv0`).
    pub key: String,
    pub id: String,
    /// First extent, in bytes from the PV start.
    pub pe_start: u64,
    pub pe_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// `striped` (with one stripe: linear), `thin`, `raid1`, ...
    pub kind: String,
    /// (PV key, first extent on that PV) per stripe.
    pub stripes: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    pub name: String,
    /// Hidden volumes (pool metadata, mirror legs) are not listed by `lvs`.
    pub visible: bool,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    /// Bytes per extent.
    pub extent_size: u64,
    pub pvs: Vec<PhysicalVolume>,
    pub lvs: Vec<LogicalVolume>,
}

fn meta(what: impl Into<String>) -> LvmError {
    LvmError::Metadata(what.into())
}

fn uint(v: &Value, key: &str, ctx: &str) -> Result<u64, LvmError> {
    v.int(key)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| meta(format!("{ctx}: no {key}")))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The volume group a metadata text describes (its one top-level section).
pub fn parse_vg(text: &str) -> Result<VolumeGroup, LvmError> {
    let top = text::parse(text)?;
    let vg = top
        .entries()
        .iter()
        .find(|e| matches!(e.value, Value::Section(_)))
        .ok_or_else(|| meta("no volume group section"))?;
    let v = &vg.value;
    let ctx = format!("volume group {}", vg.key);
    let extent_size = uint(v, "extent_size", &ctx)? * 512;
    let mut pvs = Vec::new();
    for e in v.get("physical_volumes").map_or(&[][..], Value::entries) {
        let c = format!("{ctx}, {}", e.key);
        pvs.push(PhysicalVolume {
            key: e.key.clone(),
            id: e.value.str("id").unwrap_or_default().to_string(),
            pe_start: uint(&e.value, "pe_start", &c)? * 512,
            pe_count: uint(&e.value, "pe_count", &c)?,
        });
    }
    let mut lvs = Vec::new();
    for e in v.get("logical_volumes").map_or(&[][..], Value::entries) {
        let c = format!("{ctx}, logical volume {}", e.key);
        let mut segments = Vec::new();
        for s in e
            .value
            .entries()
            .iter()
            .filter(|s| s.key.starts_with("segment"))
        {
            let sv = &s.value;
            if !matches!(sv, Value::Section(_)) {
                continue;
            }
            let mut stripes = Vec::new();
            if let Some(Value::Array(a)) = sv.get("stripes") {
                for pair in a.chunks(2) {
                    if let [Value::Str(pv), Value::Int(start)] = pair {
                        stripes.push((pv.clone(), u64::try_from(*start).unwrap_or(0)));
                    }
                }
            }
            segments.push(Segment {
                start_extent: uint(sv, "start_extent", &c)?,
                extent_count: uint(sv, "extent_count", &c)?,
                kind: sv.str("type").unwrap_or("unknown").to_string(),
                stripes,
            });
        }
        segments.sort_by_key(|s| s.start_extent);
        lvs.push(LogicalVolume {
            name: e.key.clone(),
            visible: strings(e.value.get("status"))
                .iter()
                .any(|s| s == "VISIBLE"),
            segments,
        });
    }
    Ok(VolumeGroup {
        name: vg.key.clone(),
        id: v.str("id").unwrap_or_default().to_string(),
        seqno: uint(v, "seqno", &ctx)?,
        extent_size,
        pvs,
        lvs,
    })
}

fn same_uuid(a: &str, b: &str) -> bool {
    a.chars()
        .filter(|&c| c != '-')
        .eq(b.chars().filter(|&c| c != '-'))
}

impl VolumeGroup {
    /// Where linear logical volume `lv` lies on the PV whose UUID is `pv_uuid`: (offset from
    /// the PV start, length), both in bytes.
    pub fn linear_range(&self, lv: &str, pv_uuid: &str) -> Result<(u64, u64), LvmError> {
        let unsupported = |why: String| LvmError::Unsupported {
            lv: format!("/dev/{}/{lv}", self.name),
            why,
        };
        let l = self
            .lvs
            .iter()
            .find(|l| l.name == lv)
            .ok_or_else(|| unsupported("no such logical volume".into()))?;
        let mut range: Option<(String, u64, u64)> = None; // pv key, first pv extent, extents
        for s in &l.segments {
            if s.kind != "striped" || s.stripes.len() != 1 {
                return Err(unsupported(format!(
                    "segment type {:?} with {} stripe(s) is not supported, only linear volumes \
                     can be attached without device-mapper",
                    s.kind,
                    s.stripes.len()
                )));
            }
            let (pv, start) = &s.stripes[0];
            range = match range {
                None => Some((pv.clone(), *start, s.extent_count)),
                Some((p, first, n)) if p == *pv && first + n == *start => {
                    Some((p, first, n + s.extent_count))
                }
                Some(_) => {
                    return Err(unsupported(
                        "its extents are not one contiguous run on one physical volume".into(),
                    ));
                }
            };
        }
        let (pv_key, first, extents) =
            range.ok_or_else(|| unsupported("it has no segments".into()))?;
        let pv =
            self.pvs.iter().find(|p| p.key == pv_key).ok_or_else(|| {
                unsupported(format!("it lies on unknown physical volume {pv_key}"))
            })?;
        if !same_uuid(&pv.id, pv_uuid) {
            return Err(unsupported(format!(
                "it lies on physical volume {}, which is not on this disk",
                pv.id
            )));
        }
        if first + extents > pv.pe_count {
            return Err(unsupported(
                "it extends past the end of its physical volume".into(),
            ));
        }
        Ok((
            pv.pe_start + first * self.extent_size,
            extents * self.extent_size,
        ))
    }
}

/// Checks a new volume group name as LVM does.
pub fn validate_vg_name(name: &str) -> Result<(), LvmError> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(LvmError::BadName(name.to_string()))
    }
}

/// `text` with its volume group renamed to `new` and its sequence number bumped; every other
/// byte is kept.
pub fn renamed_text(text: &str, new: &str) -> Result<String, LvmError> {
    validate_vg_name(new)?;
    let top = text::parse(text)?;
    let vg = top
        .entries()
        .iter()
        .find(|e| matches!(e.value, Value::Section(_)))
        .ok_or_else(|| meta("no volume group section"))?;
    let seq = vg.value.entry("seqno").ok_or_else(|| meta("no seqno"))?;
    let n = vg
        .value
        .int("seqno")
        .ok_or_else(|| meta("seqno is not a number"))?;
    // Replace the later span first so the earlier one's offsets stay valid.
    let mut out = text.to_string();
    out.replace_range(seq.value_span.clone(), &(n + 1).to_string());
    out.replace_range(vg.key_span.clone(), new);
    Ok(out)
}

/// A physical volume as found on the disk: its label, its metadata copies and the volume
/// group they describe.
#[derive(Debug, Clone)]
pub struct PvScan {
    pub label: PvLabel,
    pub copies: Vec<MdaText>,
    /// `None` for a PV that belongs to no volume group yet.
    pub vg: Option<VolumeGroup>,
}

/// Reads the PV at `pv`, or `None` when it has no LVM label.
pub fn scan(pv: Pv<'_>) -> Result<Option<PvScan>, LvmError> {
    let Some(label) = label::read_label(pv)? else {
        return Ok(None);
    };
    let copies = label::read_metadata(pv, &label)?;
    // The copy with the highest sequence number wins, as in LVM.
    let mut vg: Option<VolumeGroup> = None;
    for c in &copies {
        let g = parse_vg(&c.text)?;
        if vg.as_ref().is_none_or(|v| g.seqno > v.seqno) {
            vg = Some(g);
        }
    }
    Ok(Some(PvScan { label, copies, vg }))
}

/// Renames the volume group on one PV: every metadata copy is rewritten and committed.
pub fn rename(pv: Pv<'_>, scan: &PvScan, new: &str) -> Result<(), LvmError> {
    let vg = scan
        .vg
        .as_ref()
        .ok_or_else(|| meta("the physical volume belongs to no volume group"))?;
    for c in &scan.copies {
        // Write the text of the newest copy to every area so they agree afterwards.
        let newest = scan
            .copies
            .iter()
            .find(|c| parse_vg(&c.text).is_ok_and(|g| g.seqno == vg.seqno))
            .unwrap_or(c);
        let text = renamed_text(&newest.text, new)?;
        label::write_metadata(pv, c, &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};

    /// The first MiB of a 64 MiB PV made by pvcreate/vgcreate (LVM 2.03.16), with a linear
    /// LV `root` of 3 extents at PV extent 2 added by vgcfgrestore.
    fn sample() -> std::fs::File {
        let gz = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test_data/lvm_pv.img.gz"
        ))
        .unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&raw).unwrap();
        f
    }

    #[test]
    fn reads_a_real_pv() {
        let f = sample();
        let s = scan(Pv { dev: &f, base: 0 }).unwrap().unwrap();
        assert_eq!(s.label.uuid, "Wx6dGi-QjYq-8gAw-opsO-gszt-m3ny-IVsSqL");
        assert_eq!(s.label.device_size, 64 << 20);
        assert_eq!(s.label.data_offset, 1 << 20);
        let vg = s.vg.unwrap();
        assert_eq!(vg.name, "testvg");
        assert_eq!(vg.extent_size, 4 << 20);
        assert_eq!(vg.lvs.len(), 1);
        assert_eq!(vg.lvs[0].name, "root");
        assert!(vg.lvs[0].visible);
        // pe_start 1 MiB + extent 2 × 4 MiB; 3 extents.
        assert_eq!(
            vg.linear_range("root", &s.label.uuid).unwrap(),
            ((1 << 20) + 2 * (4 << 20), 3 * (4 << 20))
        );
    }

    #[test]
    fn vgrename_round_trips() {
        let f = sample();
        let pv = Pv { dev: &f, base: 0 };
        let before = scan(pv).unwrap().unwrap();
        rename(pv, &before, "rhel").unwrap();
        let after = scan(pv).unwrap().unwrap();
        let vg = after.vg.unwrap();
        assert_eq!(vg.name, "rhel");
        assert_eq!(vg.seqno, before.vg.as_ref().unwrap().seqno + 1);
        assert_eq!(vg.lvs, before.vg.unwrap().lvs);
        // Twice more: the text moves on through the circular area and stays readable.
        for name in ["a", "bb"] {
            let s = scan(pv).unwrap().unwrap();
            rename(pv, &s, name).unwrap();
            assert_eq!(scan(pv).unwrap().unwrap().vg.unwrap().name, name);
        }
        assert!(matches!(
            rename(pv, &scan(pv).unwrap().unwrap(), "bad name"),
            Err(LvmError::BadName(_))
        ));
    }

    #[test]
    fn refuses_what_a_loop_cannot_show() {
        let f = sample();
        let s = scan(Pv { dev: &f, base: 0 }).unwrap().unwrap();
        let text = &s.copies[0].text;
        let striped = text.replace("stripe_count = 1", "stripe_count = 2");
        let striped = striped.replace("\"pv0\", 2", "\"pv0\", 2, \"pv0\", 9");
        let vg = parse_vg(&striped).unwrap();
        let e = vg.linear_range("root", &s.label.uuid).unwrap_err();
        assert!(e.to_string().contains("only linear volumes"), "{e}");
        let thin = text.replace("type = \"striped\"", "type = \"thin\"");
        let e = parse_vg(&thin)
            .unwrap()
            .linear_range("root", &s.label.uuid)
            .unwrap_err();
        assert!(e.to_string().contains("\"thin\""), "{e}");
        let other = parse_vg(text)
            .unwrap()
            .linear_range("root", "AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA");
        assert!(other.unwrap_err().to_string().contains("not on this disk"));
    }

    #[test]
    fn damaged_metadata_is_reported() {
        let f = sample();
        let s = scan(Pv { dev: &f, base: 0 }).unwrap().unwrap();
        let c = &s.copies[0];
        // Flip a byte of the text: its checksum no longer matches.
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, c.mda.0 + c.offset + 10).unwrap();
        b[0] ^= 1;
        std::os::unix::fs::FileExt::write_all_at(&f, &b, c.mda.0 + c.offset + 10).unwrap();
        let e = scan(Pv { dev: &f, base: 0 }).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
