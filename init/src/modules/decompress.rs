//! Turns a module file into the ELF bytes `init_module` takes. The format is found from the
//! file's magic bytes, not its name, so a misnamed file is still read correctly.

use std::io::Read;

/// Upper bound on a decompressed module; the largest in-tree modules are a few tens of MiB.
const MAX_MODULE_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("not a kernel module (neither ELF nor xz, zstd or gzip)")]
    UnknownFormat,
    #[error("corrupt {format:?} data: {reason}")]
    Corrupt { format: Compression, reason: String },
    #[error("module is larger than {} MiB once decompressed", MAX_MODULE_BYTES >> 20)]
    TooLarge,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Option<Compression> {
        if head.starts_with(b"\x7fELF") {
            Some(Compression::None)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else {
            None
        }
    }
}

/// The module's ELF bytes, whatever it was compressed with.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let format = Compression::detect(data).ok_or(DecompressError::UnknownFormat)?;
    let corrupt = |reason: String| DecompressError::Corrupt { format, reason };
    let out = match format {
        Compression::None => data.to_vec(),
        Compression::Xz => {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut &data[..], &mut out).map_err(|e| corrupt(e.to_string()))?;
            out
        }
        Compression::Zstd => {
            let mut input = data;
            let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
                .map_err(|e| corrupt(e.to_string()))?;
            read_capped(decoder).map_err(|e| corrupt(e.to_string()))?
        }
        Compression::Gzip => {
            read_capped(flate2::read::GzDecoder::new(data)).map_err(|e| corrupt(e.to_string()))?
        }
    };
    if out.len() as u64 > MAX_MODULE_BYTES {
        return Err(DecompressError::TooLarge);
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(corrupt("decompressed data is not ELF".to_owned()));
    }
    Ok(out)
}

fn read_capped(r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(MAX_MODULE_BYTES + 1).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/test_data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn every_format_gives_the_same_elf_bytes() {
        let plain = fixture("fake.ko");
        for (name, format) in [
            ("fake.ko", Compression::None),
            ("fake.ko.xz", Compression::Xz),
            ("fake.ko.zst", Compression::Zstd),
            ("fake.ko.gz", Compression::Gzip),
        ] {
            let data = fixture(name);
            assert_eq!(Compression::detect(&data), Some(format), "{name}");
            assert_eq!(decompress(&data).unwrap(), plain, "{name}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(matches!(
            decompress(b"hello"),
            Err(DecompressError::UnknownFormat)
        ));
        for name in ["fake.ko.xz", "fake.ko.zst", "fake.ko.gz"] {
            let data = fixture(name);
            let cut = &data[..data.len() / 2];
            assert!(decompress(cut).is_err(), "{name} truncated");
        }
    }
}
