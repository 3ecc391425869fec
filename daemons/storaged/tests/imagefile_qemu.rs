//! Image import and export checked against QEMU's own tools: images made by qemu-img and
//! qemu-io must read back byte for byte as `qemu-img convert -O raw` sees them, and images we
//! write must pass `qemu-img check` and compare equal to the volume.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use storaged::block::{BlockDevice, Extent};
use storaged::imagefile::{
    ImageFileError, ImageFormat, detect, open_source, write_qcow2, write_raw,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn have_qemu() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok()
        && Command::new("qemu-io").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipping: qemu-img or qemu-io not installed");
    }
    ok
}

fn run(cmd: &str, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Reads `image` through `open_source` and compares it, and its zero extents, with what
/// qemu-img converts it to.
fn assert_reads_like_qemu(image: &Path, dir: &Path) -> TestResult {
    let raw = dir.join("expected.raw");
    run("qemu-img", &["convert", "-O", "raw", p(image), p(&raw)])?;
    let expected = std::fs::read(&raw)?;
    let file = File::open(image)?;
    assert_eq!(detect(&file)?, ImageFormat::Qcow2);
    let src = open_source(file, ImageFormat::Qcow2)?;
    assert_eq!(src.size(), expected.len() as u64);
    let mut got = vec![0u8; expected.len()];
    // Odd-sized pieces, so reads start and end inside clusters.
    for (i, piece) in got.chunks_mut(1_000_003).enumerate() {
        src.read_at(piece, i as u64 * 1_000_003)?;
    }
    assert!(
        got == expected,
        "{} differs from qemu-img's raw",
        image.display()
    );
    let mut pos = 0;
    for e in src.extents()? {
        assert_eq!(e.offset, pos);
        pos += e.len;
        let range = &expected[e.offset as usize..(e.offset + e.len) as usize];
        if !e.data {
            assert!(range.iter().all(|&b| b == 0), "zero extent {e:?} has data");
        }
    }
    assert_eq!(pos, expected.len() as u64);
    Ok(())
}

const PATTERNS: &[&str] = &[
    "write -P 0x11 0 100k",
    "write -P 0x22 3M 5000",
    "write -P 0x33 5242880 1",
    "write -P 0x44 8388000 608",
];

fn make_image(path: &Path, opts: &[&str]) -> TestResult {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[p(path), "8M"]);
    run("qemu-img", &args)?;
    for c in PATTERNS {
        run("qemu-io", &["-f", "qcow2", "-c", c, p(path)])?;
    }
    Ok(())
}

#[test]
fn reads_qemu_images() -> TestResult {
    if !have_qemu() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    for (name, opts) in [
        ("default", &[][..]),
        ("4k", &["-o", "cluster_size=4096"][..]),
        ("2m", &["-o", "cluster_size=2M"][..]),
        ("v2", &["-o", "compat=0.10"][..]),
    ] {
        let img = dir.path().join(format!("{name}.qcow2"));
        make_image(&img, opts)?;
        assert_reads_like_qemu(&img, dir.path())?;
    }
    Ok(())
}

#[test]
fn reads_compressed_and_zero_clusters() -> TestResult {
    if !have_qemu() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let plain = dir.path().join("plain.qcow2");
    make_image(&plain, &[])?;
    for cs in ["65536", "4096"] {
        let comp = dir.path().join(format!("c{cs}.qcow2"));
        let opt = format!("cluster_size={cs}");
        run(
            "qemu-img",
            &[
                "convert",
                "-c",
                "-O",
                "qcow2",
                "-o",
                &opt,
                p(&plain),
                p(&comp),
            ],
        )?;
        let check = run("qemu-img", &["check", "--output=json", p(&comp)])?;
        assert!(!check.contains("\"compressed-clusters\": 0,"), "{check}");
        assert!(check.contains("\"compressed-clusters\""), "{check}");
        assert_reads_like_qemu(&comp, dir.path())?;
    }

    let zero = dir.path().join("zero.qcow2");
    make_image(&zero, &[])?;
    // Zero flag over allocated data, with and without unmapping it.
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -z 0 64k", p(&zero)],
    )?;
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -z -u 3M 64k", p(&zero)],
    )?;
    assert_reads_like_qemu(&zero, dir.path())?;
    let src = open_source(File::open(&zero)?, ImageFormat::Qcow2)?;
    let ext = src.extents()?;
    let at = |off: u64| {
        ext.iter()
            .find(|e| e.offset <= off && off < e.offset + e.len)
            .map(|e| e.data)
    };
    assert_eq!(at(0), Some(false));
    assert_eq!(at(64 << 10), Some(true));
    assert_eq!(at(3 << 20), Some(false));
    Ok(())
}

#[test]
fn refuses_backing_files_and_corrupt_images() -> TestResult {
    if !have_qemu() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let base = dir.path().join("base.qcow2");
    make_image(&base, &[])?;
    let over = dir.path().join("overlay.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            p(&base),
            "-F",
            "qcow2",
            p(&over),
        ],
    )?;
    let e = open_source(File::open(&over)?, ImageFormat::Qcow2).err();
    assert!(
        matches!(&e, Some(ImageFileError::Unsupported(m))
            if m.contains("backing file") && m.contains("base.qcow2")),
        "{e:?}"
    );

    // Cut off inside the metadata: the L2 table is gone.
    let trunc = dir.path().join("trunc.qcow2");
    std::fs::copy(&base, &trunc)?;
    File::options().write(true).open(&trunc)?.set_len(200_000)?;
    let e = open_source(File::open(&trunc)?, ImageFormat::Qcow2)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|m| m.contains("corrupt") && m.contains("beyond the end of the file")),
        "{e:?}"
    );

    // Cut off inside the data: the L1 and L2 tables survive, the last clusters do not.
    let short = dir.path().join("short.qcow2");
    std::fs::copy(&base, &short)?;
    let len = std::fs::metadata(&short)?.len();
    File::options()
        .write(true)
        .open(&short)?
        .set_len(len - 4096)?;
    let src = open_source(File::open(&short)?, ImageFormat::Qcow2)?;
    let e = src.extents().err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|m| m.contains("data cluster at")),
        "{e:?}"
    );

    let l1 = dir.path().join("l1.qcow2");
    std::fs::copy(&base, &l1)?;
    File::options()
        .write(true)
        .open(&l1)?
        .write_all_at(&(1u64 << 40).to_be_bytes(), 40)?;
    let e = open_source(File::open(&l1)?, ImageFormat::Qcow2).err();
    assert!(
        matches!(
            &e,
            Some(ImageFileError::Corrupt {
                field: "l1_table_offset",
                offset: 40,
                ..
            })
        ),
        "{e:?}"
    );
    Ok(())
}

/// A volume backed by a sparse file, reporting zero extents per 64 KiB block.
#[derive(Debug)]
struct FileDevice {
    file: Mutex<File>,
    size: u64,
}

impl BlockDevice for FileDevice {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .read_exact_at(buf, offset)
    }
    fn write_at(&self, _: &[u8], _: u64, _: bool) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn write_zeroes(&self, _: u64, _: u64, _: bool, _: bool) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn trim(&self, _: u64, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> std::io::Result<Vec<Extent>> {
        let end = ((offset / 65536 + 1) * 65536).min(offset + len);
        let mut buf = vec![0u8; (end - offset) as usize];
        self.read_at(&mut buf, offset)?;
        let zero = buf.iter().all(|&b| b == 0);
        Ok(vec![Extent {
            len: end - offset,
            hole: zero,
            zero,
        }])
    }
}

fn create(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[test]
fn exports_pass_qemu_img_check_and_compare() -> TestResult {
    if !have_qemu() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // 600 MiB + 1000 bytes: more than one L2 table's range (512 MiB), not cluster aligned.
    let size = (600 << 20) + 1000;
    let vol = dir.path().join("volume.raw");
    let f = create(&vol)?;
    f.set_len(size)?;
    f.write_all_at(&[0x5a; 200_000], 12345)?;
    f.write_all_at(&[0xa5; 70_000], (512 << 20) - 30_000)?;
    f.write_all_at(b"end", size - 3)?;
    let dev = FileDevice {
        file: Mutex::new(f),
        size,
    };

    let q = dir.path().join("out.qcow2");
    let out = create(&q)?;
    let mut last = 0;
    write_qcow2(&out, &dev, &mut |n| last = n)?;
    assert_eq!(last, size);
    run("qemu-img", &["check", p(&q)])?;
    run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "qcow2", p(&vol), p(&q)],
    )?;
    let info = run("qemu-img", &["info", "--output=json", p(&q)])?;
    assert!(
        info.contains("\"compat\": \"1.1\"") && info.contains("\"cluster-size\": 65536"),
        "{info}"
    );
    // Only the clusters holding data are stored: far less than the volume.
    assert!(std::fs::metadata(&q)?.len() < 2 << 20);

    let r = dir.path().join("out.raw");
    let out = create(&r)?;
    write_raw(&out, &dev, &mut |_| {})?;
    run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", p(&vol), p(&r)],
    )?;
    // The raw export stays sparse.
    assert!(std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&r)?) * 512 < 4 << 20);
    Ok(())
}
