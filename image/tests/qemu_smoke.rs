//! Direct kernel boot of Debian's kernel with our initramfs in QEMU (TCG): a trivial /init
//! prints a marker on ttyS0 and powers off. Skips with a reason when QEMU, busybox or apt is
//! missing. Takes about 5 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamer_image::initramfs::{InitramfsSpec, Modules};

const MARKER: &str = "STREAMER-SMOKE-OK";

#[test]
fn debian_kernel_boots_our_initramfs() {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: qemu-system-x86_64 missing (apt-get install qemu-system-x86)");
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: /bin/busybox missing (busybox-static)");
        return;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let kernel = match streamer_image::kernel::fetch(&target.join("streamer-image/cache")) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("skipped: cannot fetch Debian's kernel: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init");
    std::fs::write(&init, format!("#!/bin/sh\necho {MARKER}\npoweroff -f\n")).unwrap();
    let built = streamer_image::initramfs::build(&InitramfsSpec {
        init,
        binaries: vec![],
        multicall: vec![],
        busybox: "/bin/busybox".into(),
        host_programs: vec![],
        modules: Some(Modules {
            dir: kernel.modules_dir.clone(),
            release: kernel.release.clone(),
            names: vec!["virtio_blk".into()],
        }),
        os_release: streamer_image::os_release("0.0.0-test"),
        mtime: 0,
    })
    .unwrap();
    // The compressed form boots too (the image uses the uncompressed one).
    let initrd = dir.path().join("initramfs.cpio.gz");
    std::fs::write(&initrd, built.gzip().unwrap()).unwrap();
    let serial = dir.path().join("serial.log");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        status.is_some(),
        "QEMU did not power off within 120 s; serial:\n{log}"
    );
    assert!(log.contains(MARKER), "no marker on ttyS0; serial:\n{log}");
    eprintln!(
        "booted to the marker and powered off in {:.1?}",
        start.elapsed()
    );
}
