//! Attaching OS volumes as local block devices, against the real kernel: disk images made
//! with sfdisk/mkfs/LVM tools, attached from a file and from storaged over NBD through FUSE,
//! mounted with the kernel, written, detached, checked through storaged; failures midway
//! and killed processes leave nothing behind.
//!
//! Needs root, /dev/loop-control and /dev/fuse, and the tools from scripts/install-deps.sh;
//! skips with a printed reason otherwise. CI runs it as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount, umount};
use storaged::store::Store;
use volume_attach::{
    AttachError, AttachOptions, AttachedDisk, FsType, NbdClientKind, cleanup_leftovers,
};

const MIB: u64 = 1 << 20;

fn why_skip(tools: &[&str], fuse: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing".into());
    }
    if fuse && !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    for t in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()));
        if !found {
            return Some(format!("{t} is not installed (scripts/install-deps.sh)"));
        }
    }
    None
}

macro_rules! require {
    ($tools:expr, $fuse:expr) => {
        if let Some(why) = why_skip(&$tools, $fuse) {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (start, size) in bytes of each partition, as sfdisk reads the table.
fn sfdisk_layout(img: &Path) -> Vec<(String, u64, u64)> {
    let j: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("--json").arg(img))).unwrap();
    j["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let num: String = node
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (
                num,
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect()
}

/// Copies `fs` (a filesystem image) into `img` at `offset`, skipping zero blocks.
fn place(img: &Path, offset: u64, fs: &Path) {
    let data = std::fs::read(fs).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    for (i, c) in data.chunks(64 << 10).enumerate() {
        if c.iter().any(|&b| b != 0) {
            f.write_all_at(c, offset + (i as u64) * (64 << 10)).unwrap();
        }
    }
}

fn mkfs(kind: &str, dir: &Path, size: u64) -> PathBuf {
    let p = dir.join(format!("{kind}.fs"));
    File::create(&p).unwrap().set_len(size).unwrap();
    match kind {
        "ext4" => {
            let src = dir.join("ext4-src/etc");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("hostname"), "golden\n").unwrap();
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-d"])
                .arg(dir.join("ext4-src"))
                .arg(&p));
        }
        // Small test filesystems need xfsprogs' test-suite switch (the minimum is 300 MB).
        "xfs" => {
            run(Command::new("mkfs.xfs")
                .args(["-q", "-f"])
                .arg(&p)
                .env("TEST_DIR", "1")
                .env("TEST_DEV", "1")
                .env("QA_CHECK_FS", "1"));
        }
        "vfat" => {
            run(Command::new("mkfs.vfat").arg(&p));
        }
        other => panic!("no mkfs for {other}"),
    }
    p
}

/// A 96 MiB GPT disk: 1 = 16 MiB EFI system partition (FAT), 2 = 24 MiB ext4 holding
/// /etc/hostname = "golden", 3 = 48 MiB xfs.
fn gpt_image(dir: &Path) -> PathBuf {
    let img = dir.join("gpt.img");
    File::create(&img).unwrap().set_len(96 * MIB).unwrap();
    let script = "label: gpt\n\
                  size=16MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n\
                  size=24MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n\
                  size=48MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n";
    sfdisk(&img, script);
    let l = sfdisk_layout(&img);
    place(&img, l[0].1, &mkfs("vfat", dir, l[0].2));
    place(&img, l[1].1, &mkfs("ext4", dir, l[1].2));
    place(&img, l[2].1, &mkfs("xfs", dir, l[2].2));
    img
}

fn sfdisk(img: &Path, script: &str) {
    let mut c = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loop devices whose backing file lies under `root`.
fn loops_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file"))
            && Path::new(b.trim_end().trim_end_matches(" (deleted)")).starts_with(root)
        {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Waits for autoclear to finish, which the kernel may do just after the last close.
fn wait_no_loops(root: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = loops_under(root);
        if l.is_empty() || Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mount_at(node: &Path, at: &Path, fs: &str) {
    std::fs::create_dir_all(at).unwrap();
    mount(Some(node), at, Some(fs), MsFlags::empty(), None::<&str>)
        .unwrap_or_else(|e| panic!("mount {} ({fs}) at {}: {e}", node.display(), at.display()));
}

fn canon(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

#[test]
fn file_gpt_partitions_filesystems_and_names() {
    require!(["sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat"], false);
    let tmp = tempfile::tempdir().unwrap();
    let img = gpt_image(tmp.path());
    let work = tmp.path().join("work");
    let layout = sfdisk_layout(&img);

    let d = AttachedDisk::attach_file(&img, &work).unwrap();
    assert_eq!(d.devices(), ["/dev/sda"]);
    assert_eq!(d.partitions(), ["/dev/sda1", "/dev/sda2", "/dev/sda3"]);
    let fs: Vec<_> = d
        .filesystems()
        .into_iter()
        .map(|(n, f)| (n, f.to_string()))
        .collect();
    assert_eq!(
        fs,
        [
            ("/dev/sda1".to_string(), "vfat".to_string()),
            ("/dev/sda2".into(), "ext4".into()),
            ("/dev/sda3".into(), "xfs".into())
        ]
    );
    for (i, (_, start, size)) in layout.iter().enumerate() {
        let t = d.resolve(&format!("/dev/vda{}", i + 1)).unwrap();
        assert_eq!((t.offset, t.len), (*start, *size), "partition {}", i + 1);
        assert!(t.node.to_string_lossy().starts_with("/dev/loop"), "{t:?}");
    }
    // The FAT partition's byte range is what userspace FAT code will use.
    let esp = d.resolve("/dev/sda1").unwrap();
    assert!(matches!(esp.fs, FsType::Vfat(_)));
    let mut boot = [0u8; 512];
    File::open(d.disk_path())
        .unwrap()
        .read_exact_at(&mut boot, esp.offset)
        .unwrap();
    assert_eq!(&boot[510..], &[0x55, 0xAA]);

    let errs = [
        (
            "/dev/sdb",
            "/dev/sdb: no such device: the OS volume is /dev/sda",
        ),
        (
            "/dev/sdb1",
            "/dev/sdb1: no such device: the OS volume is /dev/sda",
        ),
        (
            "/dev/sda9",
            "/dev/sda9: no such partition: the OS volume has /dev/sda1, /dev/sda2, /dev/sda3",
        ),
        (
            "/dev/rhel/root",
            "/dev/rhel/root: no such logical volume: the OS volume has none",
        ),
        ("sda1", "sda1: not a device name"),
    ];
    for (name, msg) in errs {
        let e = d.resolve(name).unwrap_err().to_string();
        assert!(e.starts_with(msg), "{name}: {e}");
    }

    // Mount ext4 and xfs with the kernel, write, and leave them mounted: detach unmounts.
    let root = work.join("root");
    mount_at(&d.resolve("/dev/sda2").unwrap().node, &root, "ext4");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "golden\n"
    );
    std::fs::write(root.join("etc/hostname"), "personalized\n").unwrap();
    mount_at(
        &d.resolve("/dev/sda3").unwrap().node,
        &work.join("data"),
        "xfs",
    );
    std::fs::write(work.join("data/x"), "on xfs").unwrap();
    assert_eq!(
        loops_under(&canon(&img)).len(),
        4,
        "whole disk + 3 partitions"
    );
    d.detach().unwrap();
    assert!(wait_no_loops(&canon(&img)).is_empty());
    assert!(
        volume_attach::mounts_under(&canon(&work))
            .unwrap()
            .is_empty()
    );

    // The writes are in the image.
    let d = AttachedDisk::attach_file(&img, &work).unwrap();
    mount_at(&d.resolve("/dev/sda2").unwrap().node, &root, "ext4");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "personalized\n"
    );
    umount(&root).unwrap();
    mount_at(
        &d.resolve("/dev/xvda3").unwrap().node,
        &work.join("data"),
        "xfs",
    );
    assert_eq!(
        std::fs::read_to_string(work.join("data/x")).unwrap(),
        "on xfs"
    );
    drop(d);
    assert!(wait_no_loops(&canon(&img)).is_empty());
    assert!(
        volume_attach::mounts_under(&canon(&work))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn failure_midway_leaves_nothing_attached() {
    require!(["sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat"], false);
    let tmp = tempfile::tempdir().unwrap();
    let img = gpt_image(tmp.path());
    let work = tmp.path().join("work");
    let before = loops_under(&canon(&img));
    assert!(before.is_empty());
    let e = AttachedDisk::attach_file_with(
        &img,
        &work,
        &AttachOptions {
            max_loops: Some(2),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, AttachError::TooManyLoops(2)), "{e}");
    assert!(wait_no_loops(&canon(&img)).is_empty());

    // A damaged GPT fails before anything is attached, and says why.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0xFF; 16], 512 + 20).unwrap();
    let last = 96 * MIB - 512;
    f.write_all_at(&[0xFF; 16], last + 20).unwrap();
    let e = AttachedDisk::attach_file(&img, &work).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(loops_under(&canon(&img)).is_empty());
}

struct Served {
    store: Arc<Store>,
    addr: SocketAddr,
    golden: String,
    clone: String,
}

/// storaged in-process: imports `img` as a golden image, clones it, exports the clone to
/// 127.0.0.1 and serves NBD on an ephemeral port.
fn serve(dir: &Path, img: &Path) -> Served {
    let store = Arc::new(Store::open(dir).unwrap());
    let golden = store
        .import(
            Some("golden"),
            File::open(img).unwrap(),
            None,
            false,
            None,
            &mut |_, _| {},
        )
        .unwrap()
        .record
        .id;
    let clone = store
        .clone_volume(&golden, Some("osvol"))
        .unwrap()
        .record
        .id;
    store
        .export_add(&clone, vec!["127.0.0.1/32".parse().unwrap()], false)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let catalog: Arc<dyn storaged::export::ExportCatalog> = store.clone();
    std::thread::spawn(move || rt.block_on(storaged::nbd::serve(listener, catalog)));
    Served {
        store,
        addr,
        golden,
        clone,
    }
}

#[test]
fn nbd_clone_is_personalized_and_golden_is_untouched() {
    require!(["sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat"], true);
    nbd_round_trip(NbdClientKind::Fuse);
}

/// The appliance's path: the same through `/dev/nbdN` (runs inside the appliance VM).
#[test]
fn kernel_nbd_clone_is_personalized() {
    require!(["sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat"], false);
    if !volume_attach::kernel_nbd_available() {
        eprintln!("SKIPPED: no /dev/nbd0 or the nbd module is not loaded");
        return;
    }
    nbd_round_trip(NbdClientKind::Kernel);
}

fn nbd_round_trip(kind: NbdClientKind) {
    let opts = AttachOptions {
        nbd_client: kind,
        ..Default::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let img = gpt_image(tmp.path());
    let s = serve(&tmp.path().join("store"), &img);
    let golden_sum = s.store.content_checksum(&s.golden).unwrap();
    let work = tmp.path().join("work");

    let e = AttachedDisk::attach_nbd_with(s.addr, "no-such-volume", &work, &opts).unwrap_err();
    assert!(e.to_string().contains("no-such-volume"), "{e}");
    assert!(
        volume_attach::mounts_under(&canon(&work))
            .unwrap()
            .is_empty()
    );

    let d = AttachedDisk::attach_nbd_with(s.addr, &s.clone, &work, &opts).unwrap();
    if kind == NbdClientKind::Fuse {
        assert!(d.disk_path().starts_with(canon(&work)));
    }
    assert_eq!(d.size(), 96 * MIB);
    assert_eq!(d.partitions(), ["/dev/sda1", "/dev/sda2", "/dev/sda3"]);
    assert!(matches!(
        d.resolve("/dev/sda1").unwrap().fs,
        FsType::Vfat(_)
    ));
    let root = work.join("root");
    mount_at(&d.resolve("/dev/sda2").unwrap().node, &root, "ext4");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "golden\n"
    );
    std::fs::write(root.join("etc/hostname"), "host-17\n").unwrap();
    umount(&root).unwrap();
    mount_at(
        &d.resolve("/dev/sda3").unwrap().node,
        &work.join("data"),
        "xfs",
    );
    std::fs::write(work.join("data/id"), "xfs over nbd").unwrap();
    // Left mounted on purpose: detach unmounts it, flushes and disconnects.
    d.detach().unwrap();
    assert!(
        volume_attach::mounts_under(&canon(&work))
            .unwrap()
            .is_empty()
    );
    assert!(wait_no_loops(&canon(&work)).is_empty());

    // Through storaged: the golden image did not change, the clone did.
    assert_eq!(s.store.content_checksum(&s.golden).unwrap(), golden_sum);
    assert_ne!(s.store.content_checksum(&s.clone).unwrap(), golden_sum);
    let out = tmp.path().join("clone.raw");
    s.store
        .export_to_file(
            &s.clone,
            &File::create(&out).unwrap(),
            storaged::imagefile::ImageFormat::Raw,
            &mut |_, _| {},
        )
        .unwrap();
    let check = tmp.path().join("check");
    let d = AttachedDisk::attach_file(&out, &check).unwrap();
    mount_at(
        &d.resolve("/dev/sda2").unwrap().node,
        &check.join("root"),
        "ext4",
    );
    assert_eq!(
        std::fs::read_to_string(check.join("root/etc/hostname")).unwrap(),
        "host-17\n"
    );
    mount_at(
        &d.resolve("/dev/sda3").unwrap().node,
        &check.join("data"),
        "xfs",
    );
    assert_eq!(
        std::fs::read_to_string(check.join("data/id")).unwrap(),
        "xfs over nbd"
    );
    d.detach().unwrap();
}

/// Runs an LVM command that sees only `dev` and leaves no backup files on the host.
fn lvm(args: &[&str], dev: &Path, positional: &[&std::ffi::OsStr]) -> String {
    run(Command::new(args[0])
        .args(&args[1..])
        .arg("--devices")
        .arg(dev)
        .args(["--config", "backup { backup = 0 archive = 0 }"])
        .args(positional)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1"))
}

/// An MBR disk like a RHEL install: 1 = ext4 /boot, 2 = extended with 5 = LVM PV (VG `rhel`
/// with linear LVs `root` and `swap`) and 6 = swap. The PV is made with pvcreate/vgcreate on
/// our own loop device; the LVs with vgcfgrestore (lvcreate needs device-mapper).
#[test]
fn mbr_lvm_mount_lv_and_vgrename() {
    require!(
        [
            "sfdisk",
            "mkfs.ext4",
            "pvcreate",
            "vgcreate",
            "vgcfgbackup",
            "vgcfgrestore",
            "mkswap"
        ],
        false
    );
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("mbr.img");
    File::create(&img).unwrap().set_len(80 * MIB).unwrap();
    sfdisk(
        &img,
        "label: dos\nsize=16MiB, type=83\ntype=5\nsize=40MiB, type=8e\nsize=8MiB, type=82\n",
    );
    let l = sfdisk_layout(&img);
    assert_eq!(
        l.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["1", "2", "5", "6"]
    );
    place(&img, l[0].1, &mkfs("ext4", tmp.path(), l[0].2));
    let work = tmp.path().join("work");

    let d = AttachedDisk::attach_file(&img, &work).unwrap();
    assert_eq!(
        d.partitions(),
        ["/dev/sda1", "/dev/sda2", "/dev/sda5", "/dev/sda6"]
    );
    for (i, name) in ["/dev/sda1", "/dev/sda5", "/dev/sda6"].iter().enumerate() {
        let p = &l[[0, 2, 3][i]];
        let t = d.resolve(name).unwrap();
        assert_eq!((t.offset, t.len), (p.1, p.2), "{name}");
    }
    assert!(
        d.resolve("/dev/sda2")
            .unwrap_err()
            .to_string()
            .contains("extended partition")
    );
    let pv = d.resolve("/dev/sda5").unwrap().node;
    let swap = d.resolve("/dev/sda6").unwrap().node;
    run(Command::new("mkswap").arg(&swap));
    lvm(&["pvcreate", "-y", "-q"], &pv, &[pv.as_os_str()]);
    lvm(&["vgcreate", "-q"], &pv, &["rhel".as_ref(), pv.as_os_str()]);
    let backup = tmp.path().join("rhel.vg");
    lvm(
        &["vgcfgbackup", "-q"],
        &pv,
        &["-f".as_ref(), backup.as_os_str(), "rhel".as_ref()],
    );
    let text = std::fs::read_to_string(&backup).unwrap();
    let lvs = r#"
	logical_volumes {
		root {
			id = "r00t00-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 5
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 0]
			}
		}
		swap {
			id = "swap00-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 5]
			}
		}
	}
"#;
    let end = text.rfind('}').unwrap();
    std::fs::write(&backup, format!("{}{lvs}}}\n", &text[..end])).unwrap();
    lvm(
        &["vgcfgrestore", "-q"],
        &pv,
        &["-f".as_ref(), backup.as_os_str(), "rhel".as_ref()],
    );
    d.detach().unwrap();

    let mut d = AttachedDisk::attach_file(&img, &work).unwrap();
    assert_eq!(d.vgs(), ["rhel"]);
    assert_eq!(d.lvs(), ["/dev/rhel/root", "/dev/rhel/swap"]);
    let root_lv = d.resolve("/dev/rhel/root").unwrap();
    assert_eq!(d.resolve("/dev/mapper/rhel-root").unwrap(), root_lv);
    // pe_start 1 MiB into the PV, 5 extents of 4 MiB.
    assert_eq!((root_lv.offset, root_lv.len), (l[2].1 + MIB, 20 * MIB));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&root_lv.node));
    let root = work.join("root");
    mount_at(&root_lv.node, &root, "ext4");
    std::fs::write(root.join("os-release"), "rhel on lvm\n").unwrap();
    umount(&root).unwrap();

    d.vgrename("rhel", "rhel2").unwrap();
    assert_eq!(d.lvs(), ["/dev/rhel2/root", "/dev/rhel2/swap"]);
    assert!(
        d.resolve("/dev/rhel/root")
            .unwrap_err()
            .to_string()
            .contains("/dev/rhel2/root")
    );
    assert!(matches!(
        d.vgrename("nope", "x"),
        Err(AttachError::NoSuchVg { .. })
    ));
    assert!(matches!(
        d.vgrename("rhel2", "rhel2"),
        Err(AttachError::VgExists(_))
    ));
    // LVM itself reads the renamed group.
    let pv = d.resolve("/dev/sda5").unwrap().node;
    let vgs = lvm(
        &[
            "vgs",
            "--readonly",
            "--noheadings",
            "-o",
            "vg_name,lv_count",
        ],
        &pv,
        &[],
    );
    assert_eq!(vgs.split_whitespace().collect::<Vec<_>>(), ["rhel2", "2"]);
    d.detach().unwrap();

    let d = AttachedDisk::attach_file(&img, &work).unwrap();
    assert_eq!(d.vgs(), ["rhel2"]);
    let fs: Vec<_> = d
        .filesystems()
        .into_iter()
        .map(|(n, f)| format!("{n}={f}"))
        .collect();
    assert_eq!(
        fs,
        [
            "/dev/sda1=ext4",
            "/dev/sda6=swap",
            "/dev/rhel2/root=ext4",
            "/dev/rhel2/swap=unknown"
        ]
    );
    mount_at(
        &d.resolve("/dev/mapper/rhel2-root").unwrap().node,
        &root,
        "ext4",
    );
    assert_eq!(
        std::fs::read_to_string(root.join("os-release")).unwrap(),
        "rhel on lvm\n"
    );
    drop(d);
    assert!(wait_no_loops(&canon(&img)).is_empty());
}

const CHILD_ENV: &str = "STREAMER_ATTACH_CHILD_DIR";

/// Not a test on its own: the body of the process `killed_process_leftovers_are_cleaned`
/// starts and kills. It attaches over NBD, mounts ext4, says it is ready and waits.
#[test]
fn child_attaches_and_waits_to_be_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let img = gpt_image(&dir);
    let s = serve(&dir.join("store"), &img);
    let work = dir.join("work/vol1");
    let fuse = AttachOptions {
        nbd_client: NbdClientKind::Fuse,
        ..Default::default()
    };
    let d = AttachedDisk::attach_nbd_with(s.addr, &s.clone, &work, &fuse).unwrap();
    mount_at(
        &d.resolve("/dev/sda2").unwrap().node,
        &work.join("root"),
        "ext4",
    );
    std::fs::write(dir.join("ready"), "").unwrap();
    std::thread::sleep(Duration::from_secs(120));
    drop(d);
}

#[test]
fn killed_process_leftovers_are_cleaned() {
    require!(["sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat"], true);
    let tmp = tempfile::tempdir().unwrap();
    let dir = canon(tmp.path());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_attaches_and_waits_to_be_killed",
            "--nocapture",
        ])
        .env(CHILD_ENV, &dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.join("ready").exists() {
        assert!(Instant::now() < deadline, "the child never got ready");
        assert!(child.try_wait().unwrap().is_none(), "the child died");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    let work = dir.join("work");
    // A FUSE server that dies while its own process still has the disk file open must not
    // hang the exit (the kernel would wait for it to answer FLUSH).
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = cleanup_leftovers(&work);
            panic!("the killed process hangs in exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = volume_attach::mounts_under(&work).unwrap();
    assert!(
        left.iter().any(|m| m.fstype == "ext4"),
        "the ext4 mount outlives the killed process: {left:?}"
    );
    assert!(!loops_under(&work).is_empty(), "its loop device too");

    let report = cleanup_leftovers(&work).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(report.unmounted.len() >= 2, "ext4 and FUSE: {report:?}");
    assert!(volume_attach::mounts_under(&work).unwrap().is_empty());
    assert!(wait_no_loops(&work).is_empty(), "{:?}", loops_under(&work));
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "{report:?}");
    // Idempotent.
    assert_eq!(cleanup_leftovers(&work).unwrap(), Default::default());
}
