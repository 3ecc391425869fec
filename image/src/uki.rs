//! The unified kernel image: systemd-boot's EFI stub (Debian's systemd-boot-efi) with
//! `.osrel`, `.cmdline`, `.initrd` and `.linux` sections appended by binutils' objcopy, at
//! section-aligned addresses after the stub's last section, as ukify places them. `.linux`
//! comes last, as ukify does. Debian 12 has no ukify (systemd 252), so objcopy it is.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("{0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0}: not a PE32+ EFI stub")]
    NotPe(PathBuf),
    #[error("objcopy failed: {0}")]
    Objcopy(String),
}

/// Debian's stub (package systemd-boot-efi).
pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// What the stub's PE headers say about where new sections can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeLayout {
    pub image_base: u64,
    pub section_alignment: u64,
    /// First RVA after the last section.
    pub end_rva: u64,
    /// File offset of the COFF TimeDateStamp.
    pub timestamp_offset: usize,
    /// File offset of the optional header's CheckSum.
    pub checksum_offset: usize,
}

fn u16_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?).into())
}
fn u32_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?).into())
}

/// Reads the PE32+ headers we need.
pub fn pe_layout(b: &[u8]) -> Option<PeLayout> {
    let pe = usize::try_from(u32_at(b, 0x3c)?).ok()?;
    if b.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = pe + 4;
    let nsections = usize::try_from(u16_at(b, coff + 2)?).ok()?;
    let opt_size = usize::try_from(u16_at(b, coff + 16)?).ok()?;
    let opt = coff + 20;
    if u16_at(b, opt)? != 0x20b {
        return None;
    }
    let image_base = u32_at(b, opt + 24)? | (u32_at(b, opt + 28)? << 32);
    let section_alignment = u32_at(b, opt + 32)?;
    let mut end_rva = 0;
    for i in 0..nsections {
        let s = opt + opt_size + i * 40;
        let vsize = u32_at(b, s + 8)?.max(u32_at(b, s + 16)?);
        end_rva = end_rva.max(u32_at(b, s + 12)? + vsize);
    }
    Some(PeLayout {
        image_base,
        section_alignment: section_alignment.max(1),
        end_rva,
        timestamp_offset: coff + 4,
        checksum_offset: opt + 64,
    })
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The PE image checksum (16-bit one's-complement-style sum with carries folded, skipping
/// the CheckSum field, plus the file length), as IMAGEHLP's CheckSumMappedFile computes it.
pub fn pe_checksum(b: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, c) in b.chunks(2).enumerate() {
        let o = i * 2;
        if o == checksum_offset || o == checksum_offset + 2 {
            continue;
        }
        let w = u64::from(c[0]) | c.get(1).map_or(0, |&h| u64::from(h) << 8);
        sum += w;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(b.len() as u32)
}

/// What goes into the UKI.
#[derive(Debug, Clone)]
pub struct UkiSpec {
    pub stub: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub os_release: String,
    /// Written into the PE TimeDateStamp (SOURCE_DATE_EPOCH).
    pub timestamp: u32,
}

/// Builds the UKI at `out` (temporary section files go next to it).
pub fn build(spec: &UkiSpec, out: &Path) -> Result<(), UkiError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| UkiError::Io(p, e)
    };
    let stub = std::fs::read(&spec.stub).map_err(io(&spec.stub))?;
    let pe = pe_layout(&stub).ok_or_else(|| UkiError::NotPe(spec.stub.clone()))?;
    let osrel = out.with_extension("osrel");
    let cmdline = out.with_extension("cmdline");
    std::fs::write(&osrel, &spec.os_release).map_err(io(&osrel))?;
    std::fs::write(&cmdline, &spec.cmdline).map_err(io(&cmdline))?;
    let sections: [(&str, &Path); 4] = [
        (".osrel", &osrel),
        (".cmdline", &cmdline),
        (".initrd", &spec.initrd),
        (".linux", &spec.kernel),
    ];
    let mut cmd = Command::new("objcopy");
    let mut rva = align(pe.end_rva, pe.section_alignment);
    for (name, path) in sections {
        let len = std::fs::metadata(path).map_err(io(path))?.len();
        cmd.arg("--add-section")
            .arg(format!("{name}={}", path.display()));
        cmd.arg("--change-section-vma")
            .arg(format!("{name}=0x{:x}", pe.image_base + rva));
        rva = align(rva + len.max(1), pe.section_alignment);
    }
    cmd.arg(&spec.stub).arg(out);
    let res = cmd.output().map_err(io(Path::new("objcopy")))?;
    let _ = std::fs::remove_file(&osrel);
    let _ = std::fs::remove_file(&cmdline);
    if !res.status.success() {
        return Err(UkiError::Objcopy(
            String::from_utf8_lossy(&res.stderr).trim().into(),
        ));
    }
    // objcopy stamps PE output with the current time (and checksums it); make it the
    // build's fixed time and checksum again.
    let mut img = std::fs::read(out).map_err(io(out))?;
    let out_pe = pe_layout(&img).ok_or_else(|| UkiError::NotPe(out.into()))?;
    let (t, c) = (out_pe.timestamp_offset, out_pe.checksum_offset);
    img[t..t + 4].copy_from_slice(&spec.timestamp.to_le_bytes());
    let had_checksum = img[c..c + 4] != [0; 4];
    if had_checksum {
        let sum = pe_checksum(&img, c);
        img[c..c + 4].copy_from_slice(&sum.to_le_bytes());
    }
    std::fs::write(out, img).map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_debian_stub() {
        let Ok(stub) = std::fs::read(DEFAULT_STUB) else {
            eprintln!("skipped: {DEFAULT_STUB} missing (install systemd-boot-efi)");
            return;
        };
        let pe = pe_layout(&stub).unwrap();
        assert!(pe.section_alignment >= 512);
        assert!(pe.end_rva > 0);
        assert!(pe_layout(b"MZ not a pe").is_none());
    }
}
