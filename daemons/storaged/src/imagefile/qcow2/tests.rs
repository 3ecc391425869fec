//! Handmade images: tiny enough to lay out byte by byte, so each case tests one field.

use std::io::Write;
use std::os::unix::fs::FileExt;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use parking_lot::Mutex;

use super::super::{ImageFileError, SourceExtent, SourceImage};
use super::{COMPRESSED, COPIED, Qcow2Source, ZERO, write_qcow2};
use crate::block::{BlockDevice, Extent};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// 512-byte clusters, 8 of them: header at 0, L1 at 512, L2 at 1024, data from 1536.
struct Image {
    bytes: Vec<u8>,
}

impl Image {
    fn new() -> Self {
        let mut bytes = vec![0u8; 1536];
        bytes[0..4].copy_from_slice(b"QFI\xfb");
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&9u32.to_be_bytes());
        bytes[24..32].copy_from_slice(&4096u64.to_be_bytes());
        bytes[36..40].copy_from_slice(&1u32.to_be_bytes());
        bytes[40..48].copy_from_slice(&512u64.to_be_bytes());
        bytes[96..100].copy_from_slice(&4u32.to_be_bytes());
        bytes[100..104].copy_from_slice(&104u32.to_be_bytes());
        bytes[512..520].copy_from_slice(&(1024u64 | COPIED).to_be_bytes());
        Self { bytes }
    }

    fn set(&mut self, at: usize, v: &[u8]) -> &mut Self {
        self.bytes[at..at + v.len()].copy_from_slice(v);
        self
    }

    fn l2(&mut self, cluster: usize, entry: u64) -> &mut Self {
        self.set(1024 + cluster * 8, &entry.to_be_bytes())
    }

    fn append(&mut self, data: &[u8]) -> u64 {
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        at
    }

    fn open(&self) -> Result<Qcow2Source, ImageFileError> {
        let mut f = tempfile::tempfile().map_err(|e| ImageFileError::io("tempfile", e))?;
        f.write_all(&self.bytes)
            .map_err(|e| ImageFileError::io("tempfile", e))?;
        Qcow2Source::open(f)
    }
}

fn read_all(src: &dyn SourceImage) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; src.size() as usize];
    src.read_at(&mut v, 0)?;
    Ok(v)
}

#[test]
fn reads_data_zero_unallocated_and_compressed_clusters() -> TestResult {
    let mut img = Image::new();
    let data = img.append(&[0xaa; 512]);
    let zero_alloc = img.append(&[0xee; 512]);
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    let plain: Vec<u8> = (0..512u32).map(|i| (i % 7) as u8).collect();
    enc.write_all(&plain)?;
    let deflated = enc.finish()?;
    let coff = img.append(&deflated);
    // Additional sectors beyond the first, per the compressed entry format (x = 61 here).
    let sectors = ((coff % 512) + deflated.len() as u64).div_ceil(512) - 1;
    img.l2(0, data | COPIED)
        .l2(1, ZERO)
        .l2(2, zero_alloc | ZERO | COPIED)
        .l2(4, COMPRESSED | (sectors << 61) | coff);
    let src = img.open()?;
    let all = read_all(&src)?;
    let mut want = vec![0u8; 4096];
    want[..512].fill(0xaa);
    want[2048..2560].copy_from_slice(&plain);
    assert!(all == want, "image reads differently: {:?}", &all[..16]);

    // A read crossing cluster boundaries, starting inside the compressed cluster.
    let mut part = [0u8; 600];
    src.read_at(&mut part, 2000)?;
    assert_eq!(&part[..], &want[2000..2600]);

    assert_eq!(
        src.extents()?,
        vec![
            SourceExtent {
                offset: 0,
                len: 512,
                data: true
            },
            SourceExtent {
                offset: 512,
                len: 1536,
                data: false
            },
            SourceExtent {
                offset: 2048,
                len: 512,
                data: true
            },
            SourceExtent {
                offset: 2560,
                len: 1536,
                data: false
            },
        ]
    );
    Ok(())
}

#[test]
fn reads_beyond_virtual_size_fail() -> TestResult {
    let src = Image::new().open()?;
    let mut b = [0u8; 2];
    assert!(src.read_at(&mut b, 4095).is_err());
    Ok(())
}

fn refused(img: &Image) -> String {
    match img.open() {
        Ok(_) => "opened".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refuses_what_it_cannot_read_exactly() {
    let cases: Vec<(&str, Image)> = vec![
        ("backing file \"base.img\"", {
            let mut i = Image::new();
            i.set(8, &200u64.to_be_bytes())
                .set(16, &8u32.to_be_bytes())
                .set(200, b"base.img");
            i
        }),
        ("encrypted", {
            let mut i = Image::new();
            i.set(32, &1u32.to_be_bytes());
            i
        }),
        ("external data file", {
            let mut i = Image::new();
            i.set(72, &4u64.to_be_bytes());
            i
        }),
        ("extended L2", {
            let mut i = Image::new();
            i.set(72, &16u64.to_be_bytes());
            i
        }),
        ("unknown incompatible feature bits 0x100", {
            let mut i = Image::new();
            i.set(72, &0x100u64.to_be_bytes());
            i
        }),
        ("zstd", {
            let mut i = Image::new();
            i.set(72, &8u64.to_be_bytes())
                .set(100, &112u32.to_be_bytes())
                .set(104, &[1]);
            i
        }),
        ("version 4", {
            let mut i = Image::new();
            i.set(4, &4u32.to_be_bytes());
            i
        }),
        ("cluster_bits at file offset 20", {
            let mut i = Image::new();
            i.set(20, &30u32.to_be_bytes());
            i
        }),
        ("size at file offset 24", {
            let mut i = Image::new();
            i.set(24, &u64::MAX.to_be_bytes());
            i
        }),
        ("l1_size at file offset 36: 1 entries cannot map", {
            let mut i = Image::new();
            i.set(24, &(1u64 << 20).to_be_bytes());
            i
        }),
        ("l1_size at file offset 36: 4294967295 entries exceed", {
            let mut i = Image::new();
            i.set(36, &u32::MAX.to_be_bytes());
            i
        }),
        ("l1_table_offset at file offset 40: L1 table at 1048576", {
            let mut i = Image::new();
            i.set(40, &(1u64 << 20).to_be_bytes());
            i
        }),
        (
            "L1 entry at file offset 512: L2 table at 65536 extends beyond",
            {
                let mut i = Image::new();
                i.set(512, &65536u64.to_be_bytes());
                i
            },
        ),
        ("L1 entry at file offset 512: reserved bits", {
            let mut i = Image::new();
            i.set(512, &(1024u64 | 1).to_be_bytes());
            i
        }),
        (
            "shorter than a qcow2 header",
            Image {
                bytes: b"QFI\xfb\0\0\0\x03".to_vec(),
            },
        ),
    ];
    for (want, img) in cases {
        let got = refused(&img);
        assert!(got.contains(want), "expected {want:?} in {got:?}");
    }
}

#[test]
fn refuses_bad_l2_entries_when_read() -> TestResult {
    let mut img = Image::new();
    img.l2(3, 1 << 20);
    let src = img.open()?;
    let e = src
        .extents()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("L2 entry at file offset 1048: data cluster at 1048576 extends beyond"),
        "{e}"
    );
    let mut b = [0u8; 512];
    assert!(src.read_at(&mut b, 3 * 512).is_err());
    src.read_at(&mut b, 0)?;

    let mut v2 = Image::new();
    v2.set(4, &2u32.to_be_bytes()).l2(0, ZERO);
    let e = v2
        .open()?
        .extents()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("zero flag set in a version 2 image"), "{e}");

    let mut bad_deflate = Image::new();
    let at = bad_deflate.append(&[0xff; 512]);
    bad_deflate.l2(0, COMPRESSED | at);
    assert!(read_all(&bad_deflate.open()?).is_err());
    Ok(())
}

/// A volume in memory that reports 64 KiB blocks of zeroes as zero extents.
#[derive(Debug)]
pub(crate) struct MemDevice(pub Mutex<Vec<u8>>);

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.0.lock().len() as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let d = self.0.lock();
        let o = offset as usize;
        buf.copy_from_slice(&d[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64, _fua: bool) -> std::io::Result<()> {
        let mut d = self.0.lock();
        let o = offset as usize;
        d[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64, _: bool, _: bool) -> std::io::Result<()> {
        let mut d = self.0.lock();
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.write_zeroes(offset, len, true, false)
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> std::io::Result<Vec<Extent>> {
        let d = self.0.lock();
        let block = 65536u64;
        let end = (offset / block + 1) * block;
        let end = end.min(offset + len);
        let zero = d[offset as usize..end as usize].iter().all(|&b| b == 0);
        Ok(vec![Extent {
            len: end - offset,
            hole: zero,
            zero,
        }])
    }
}

#[test]
fn written_image_reads_back() -> TestResult {
    // Not a multiple of the cluster size, data crossing an L2 boundary (8192 clusters = 512 MiB
    // would be too big for a unit test, so the crossing is tested with qemu-img instead).
    let mut data = vec![0u8; 3 * 65536 + 1000];
    data[10..20].fill(1);
    data[65536 * 2 + 5] = 9;
    data[3 * 65536 + 999] = 7;
    let dev = MemDevice(Mutex::new(data.clone()));
    let out = tempfile::tempfile()?;
    let mut seen = Vec::new();
    write_qcow2(&out, &dev, &mut |p| seen.push(p))?;
    assert_eq!(seen.last().copied(), Some(data.len() as u64));
    let src = Qcow2Source::open(out.try_clone()?)?;
    // The virtual disk is padded with zeroes to whole 512-byte sectors.
    let mut want = data.clone();
    want.resize(3 * 65536 + 1024, 0);
    assert!(read_all(&src)? == want, "read-back differs from the volume");
    let data_extents: Vec<_> = src.extents()?.into_iter().filter(|e| e.data).collect();
    assert_eq!(data_extents.len(), 2, "{data_extents:?}");
    // Header, L1, refcount table, refcount block, L2 table, three data clusters.
    assert_eq!(out.metadata()?.len(), 8 * 65536);
    let mut refcounts = [0u8; 18];
    out.read_exact_at(&mut refcounts, 3 * 65536)?;
    assert_eq!(
        refcounts,
        [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0]
    );
    Ok(())
}
