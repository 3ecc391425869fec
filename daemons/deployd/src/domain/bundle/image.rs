//! Golden image files: what HPE produces (a zip holding one raw disk image named after the
//! golden image id) and what we accept besides, to be lenient (a gzip of a raw image, as
//! HPE's best-practices paper describes; a bare qcow2 or raw image).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use tempfile::NamedTempFile;
use zip::write::SimpleFileOptions;

use super::BundleError;

/// How an image file is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// A zip with exactly one file member.
    Zip,
    Gzip,
    /// A raw or qcow2 image, as is (storaged detects which).
    Plain,
}

/// Looks at an image file. `claims_zip`: the client named it `*.zip`, so anything but a
/// valid zip is refused rather than taken as a raw image.
pub fn sniff(file: &mut File, claims_zip: bool) -> Result<Packing, BundleError> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))
        .map_err(BundleError::io("reading the image"))?;
    let n = read_up_to(file, &mut magic).map_err(BundleError::io("reading the image"))?;
    file.seek(SeekFrom::Start(0))
        .map_err(BundleError::io("reading the image"))?;
    let packing = if n >= 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06") {
        Packing::Zip
    } else if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Packing::Gzip
    } else if claims_zip {
        return Err(BundleError::Image(
            "The golden image file is named .zip but is not a zip archive.".into(),
        ));
    } else if n == 0 {
        return Err(BundleError::Image("The golden image file is empty.".into()));
    } else {
        Packing::Plain
    };
    if packing == Packing::Zip {
        let f = file
            .try_clone()
            .map_err(BundleError::io("reading the image"))?;
        single_member(&mut open_zip(f)?)?;
        file.seek(SeekFrom::Start(0))
            .map_err(BundleError::io("reading the image"))?;
    }
    Ok(packing)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn open_zip(f: File) -> Result<zip::ZipArchive<File>, BundleError> {
    zip::ZipArchive::new(f).map_err(|e| {
        BundleError::Image(format!(
            "The golden image zip cannot be read (truncated or corrupt): {e}."
        ))
    })
}

/// The index of the only file in `zip`.
fn single_member(zip: &mut zip::ZipArchive<File>) -> Result<usize, BundleError> {
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let e = zip
            .by_index_raw(i)
            .map_err(|e| BundleError::Image(format!("The golden image zip is corrupt: {e}.")))?;
        if !e.is_dir() {
            files.push(i);
        }
    }
    match files.as_slice() {
        [one] => Ok(*one),
        other => Err(BundleError::Image(format!(
            "A golden image zip must hold exactly one disk image; this one holds {} files.",
            other.len()
        ))),
    }
}

/// Unpacks `path` into a raw (or qcow2) file in `tmp_dir`; `None` when it is usable as is.
/// At most `limit` bytes are written (a guard against decompression bombs).
pub fn unpack(
    path: &Path,
    packing: Packing,
    tmp_dir: &Path,
    limit: u64,
) -> Result<Option<NamedTempFile>, BundleError> {
    let open = || File::open(path).map_err(BundleError::io("opening the image"));
    let mut out = match packing {
        Packing::Plain => return Ok(None),
        _ => crate::services::files::temp_file_in(tmp_dir)
            .map_err(|e| BundleError::Io(format!("temporary file: {e}")))?,
    };
    let copied = match packing {
        Packing::Zip => {
            let mut zip = open_zip(open()?)?;
            let i = single_member(&mut zip)?;
            let mut member = zip.by_index(i).map_err(|e| {
                BundleError::Image(format!("The golden image zip is corrupt: {e}."))
            })?;
            copy_bounded(&mut member, out.as_file_mut(), limit)
        }
        Packing::Gzip => {
            let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(open()?));
            copy_bounded(&mut gz, out.as_file_mut(), limit)
        }
        Packing::Plain => unreachable!("returned above"),
    };
    match copied {
        Ok(0) => Err(BundleError::Image(
            "The golden image file holds an empty image.".into(),
        )),
        Ok(_) => Ok(Some(out)),
        Err(e) if e.kind() == std::io::ErrorKind::Other => Err(BundleError::Image(format!(
            "The golden image cannot be unpacked: {e}."
        ))),
        Err(e) => Err(BundleError::Image(format!(
            "The golden image cannot be unpacked (truncated or corrupt): {e}."
        ))),
    }
}

fn copy_bounded(src: &mut dyn Read, dst: &mut File, limit: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = src.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > limit {
            return Err(std::io::Error::other(format!(
                "the image is larger than the limit of {limit} bytes"
            )));
        }
        dst.write_all(&buf[..k])?;
    }
    dst.flush()?;
    Ok(n)
}

/// Writes the raw image `raw` into `out` as HPE's golden image zip: one deflated member
/// named `member` (the golden image id).
pub fn pack_zip(raw: &mut File, member: &str, out: &mut File) -> Result<(), BundleError> {
    let io = BundleError::io("writing the golden image zip");
    raw.seek(SeekFrom::Start(0)).map_err(&io)?;
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(&mut *out));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let zerr =
        |e: zip::result::ZipError| BundleError::Io(format!("writing the golden image zip: {e}"));
    w.start_file(member, opts).map_err(zerr)?;
    std::io::copy(raw, &mut w).map_err(&io)?;
    let mut buffered = w.finish().map_err(zerr)?;
    buffered.flush().map_err(&io)?;
    drop(buffered);
    out.seek(SeekFrom::Start(0)).map_err(&io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_with(bytes: &[u8]) -> NamedTempFile {
        let mut t = NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        t
    }

    #[test]
    fn zip_gzip_and_plain_images_unpack_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut raw_file = tmp_with(&raw);
        let mut zipped = NamedTempFile::new().unwrap();
        pack_zip(raw_file.as_file_mut(), "gi-id", zipped.as_file_mut()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gzipped = tmp_with(&gz.finish().unwrap());
        for (t, want) in [
            (&zipped, Packing::Zip),
            (&gzipped, Packing::Gzip),
            (&raw_file, Packing::Plain),
        ] {
            let mut f = t.reopen().unwrap();
            assert_eq!(sniff(&mut f, false).unwrap(), want);
            let out = unpack(t.path(), want, dir.path(), 1 << 30).unwrap();
            let bytes = match out {
                Some(o) => std::fs::read(o.path()).unwrap(),
                None => std::fs::read(t.path()).unwrap(),
            };
            assert_eq!(bytes, raw);
        }
        // The bound holds.
        assert!(unpack(zipped.path(), Packing::Zip, dir.path(), 1000).is_err());
    }

    #[test]
    fn truncated_or_multi_member_zips_and_fake_zips_are_refused() {
        let raw = vec![7u8; 10_000];
        let mut raw_file = tmp_with(&raw);
        let mut zipped = NamedTempFile::new().unwrap();
        pack_zip(raw_file.as_file_mut(), "gi", zipped.as_file_mut()).unwrap();
        let bytes = std::fs::read(zipped.path()).unwrap();
        let cut = tmp_with(&bytes[..bytes.len() / 2]);
        assert!(sniff(&mut cut.reopen().unwrap(), true).is_err());
        assert!(sniff(&mut raw_file.reopen().unwrap(), true).is_err());
        let mut two = NamedTempFile::new().unwrap();
        {
            let mut w = zip::ZipWriter::new(two.as_file_mut());
            for n in ["a", "b"] {
                w.start_file(n, SimpleFileOptions::default()).unwrap();
                w.write_all(b"x").unwrap();
            }
            w.finish().unwrap();
        }
        let e = sniff(&mut two.reopen().unwrap(), true).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }
}
