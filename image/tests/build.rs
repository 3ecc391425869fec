//! Builds the whole image from Debian's current kernel twice and checks it with other tools:
//! cpio, objdump, sfdisk and mtools. Skips with a reason when apt or the stub is unavailable.

use std::path::{Path, PathBuf};
use std::process::Command;

use streamer_image::{BuildOptions, cpio, layout};

fn cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("streamer-image/cache")
}

fn tool(cmd: &mut Command) -> String {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("{cmd:?}: {e}"),
    };
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn builds_the_same_image_twice_and_other_tools_read_it() {
    if !Path::new(streamer_image::uki::DEFAULT_STUB).exists() || !Path::new("/bin/busybox").exists()
    {
        eprintln!("skipped: systemd-boot-efi or busybox-static missing (scripts/install-deps.sh)");
        return;
    }
    let kernel = match streamer_image::kernel::fetch(&cache()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("skipped: cannot fetch Debian's kernel: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("fake-init");
    std::fs::write(&init, b"#!/bin/sh\necho marker\n").unwrap();
    let daemon = dir.path().join("storaged");
    std::fs::write(&daemon, b"not really storaged").unwrap();
    let opts = |out: &str| BuildOptions {
        init: init.clone(),
        binaries: vec![daemon.clone()],
        multicall: vec![],
        busybox: "/bin/busybox".into(),
        host_programs: vec!["/sbin/mke2fs".into()],
        kernel_deb: None,
        cache: cache(),
        stub: streamer_image::uki::DEFAULT_STUB.into(),
        out: dir.path().join(out),
        cmdline: "console=ttyS0".into(),
        modules: layout::DEFAULT_MODULES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        seed: "test".into(),
        source_date_epoch: 1_700_000_000,
        sizes_mib: [64, 16, 8],
        version: "0.0.0-test".into(),
        etcd: Path::new("/usr/bin/etcd")
            .exists()
            .then(|| "/usr/bin/etcd".into()),
    };
    let a = streamer_image::build(&opts("a"), &|_| {}).unwrap();
    let b = streamer_image::build(&opts("b"), &|_| {}).unwrap();
    for (x, y) in [
        (&a.initramfs, &b.initramfs),
        (&a.uki, &b.uki),
        (&a.image, &b.image),
    ] {
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{x:?} differs"
        );
    }

    // The initramfs: our parser and Debian's cpio agree on what is inside.
    let raw = a.initramfs_info.cpio.clone();
    let parsed = cpio::parse(&raw).unwrap();
    let names: Vec<&str> = parsed.iter().map(|p| p.path.as_str()).collect();
    let modules = format!("lib/modules/{}", kernel.release);
    for want in [
        "init".to_string(),
        "usr/bin/storaged".into(),
        "bin/busybox".into(),
        "bin/sh".into(),
        "dev/console".into(),
        "etc/os-release".into(),
        format!("{modules}/modules.dep"),
        format!("{modules}/kernel/drivers/block/virtio_blk.ko"),
        format!("{modules}/kernel/fs/fat/fat.ko"),
    ] {
        assert!(names.contains(&want.as_str()), "{want} missing");
    }
    assert!(parsed.iter().all(|p| p.mtime == 1_700_000_000));
    let init_entry = parsed.iter().find(|p| p.path == "init").unwrap();
    assert_eq!(init_entry.mode, 0o100755);
    assert_eq!(init_entry.data, b"#!/bin/sh\necho marker\n");
    if Path::new("/usr/bin/cpio").exists() {
        let raw_path = dir.path().join("initramfs.cpio");
        std::fs::write(&raw_path, &raw).unwrap();
        let listed = tool(Command::new("cpio").arg("-it").arg("-F").arg(&raw_path));
        let listed: Vec<&str> = listed.lines().collect();
        assert_eq!(listed, names, "cpio -it disagrees");
    } else {
        eprintln!("cpio -it check skipped: cpio missing");
    }

    // The UKI has its sections.
    let h = tool(Command::new("objdump").arg("-h").arg(&a.uki));
    for s in [".osrel", ".cmdline", ".initrd", ".linux"] {
        assert!(h.contains(&format!(" {s} ")), "{s} missing:\n{h}");
    }

    // The partition table reads back with sfdisk, the ESP with mtools.
    let json = tool(Command::new("sfdisk").arg("--json").arg(&a.image));
    for p in layout::PARTITIONS {
        assert!(
            json.contains(&format!("\"name\": \"{}\"", p.name)),
            "{json}"
        );
        assert!(json.contains(p.type_guid), "{json}");
    }
    let esp = a.disk.partitions[0].1;
    let uki = std::fs::read(&a.uki).unwrap();
    for path in [layout::SLOT_A_PATH, layout::SLOT_B_PATH] {
        let out = Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{esp}", a.image.display()))
            .arg(format!("::/{path}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == uki, "{path} differs from the UKI");
    }
    // etcd, gzip-compressed, for pair members.
    if let Some(etcd) = &opts("c").etcd {
        let out = Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{esp}", a.image.display()))
            .arg(format!("::/{}", layout::ESP_ETCD_PATH))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&out.stdout[..]),
            &mut unpacked,
        )
        .unwrap();
        assert!(unpacked == std::fs::read(etcd).unwrap(), "etcd differs");
    }
    let conf = a.disk.partitions[1].1;
    let out = tool(
        Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{conf}", a.image.display()))
            .arg("::/streamer.conf"),
    );
    assert_eq!(out, streamer_image::DEFAULT_CONFIG);
}
