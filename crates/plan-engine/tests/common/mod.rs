//! What the engine's integration tests share: whether this machine can run them, a run
//! configuration, and a small Linux disk image built with the system's tools.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use plan_engine::run::RunConfig;

pub fn can_run() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let loops = Path::new("/dev/loop-control").exists();
    let busybox = Path::new("/bin/busybox").exists();
    if !(root && loops && busybox) {
        eprintln!(
            "SKIPPED: needs root, /dev/loop-control and /bin/busybox (root={root}, loop={loops}, busybox={busybox})"
        );
    }
    root && loops && busybox
}

pub fn config(dir: &Path) -> RunConfig {
    let mut cfg = RunConfig::new(dir.join("runs"));
    cfg.sandbox.timeout = std::time::Duration::from_secs(30);
    cfg
}

/// A GPT disk with an ESP (FAT32) and an ext4 root holding a small Linux tree.
pub fn linux_image(dir: &Path) -> Option<PathBuf> {
    for tool in ["sfdisk", "mkfs.vfat", "mkfs.ext4"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("SKIPPED: {tool} is not installed");
            return None;
        }
    }
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(tree.join("tmp")).unwrap();
    std::fs::create_dir_all(tree.join("proc")).unwrap();
    std::fs::create_dir_all(tree.join("dev")).unwrap();
    std::fs::create_dir_all(tree.join("boot/efi")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "golden\n").unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(tree.join("etc/ssh/ssh_host_rsa_key"), "KEY\n").unwrap();
    std::fs::write(tree.join("etc/ssh/ssh_host_ed25519_key"), "KEY\n").unwrap();
    // A static busybox as the guest's /bin, so `command` and `sh` have something to run.
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "true", "echo", "mkfifo", "sleep", "seq", "touch", "mkdir", "cat",
    ] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    let img = dir.join("linux.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(192 << 20)
        .unwrap();
    let run = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let mut sf = Command::new("sfdisk");
    sf.arg("--quiet")
        .arg(&img)
        .stdin(std::process::Stdio::piped());
    let mut child = sf.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\nstart=2048, size=131072, type=U\nstart=133120, type=L\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    // One sector per cluster: FAT32 needs at least 65525 clusters to be read as FAT32.
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "--offset=2048"])
        .arg(&img)
        .arg("65536"));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", &format!("offset={}", 133120 * 512), "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("60M"));
    Some(img)
}

/// Runs `f` on the ext4 root (`/dev/sda2`) of `image`, mounted read-only by the kernel in a
/// directory below `dir`; unmounts and detaches it after.
pub fn with_ext4_root<T>(image: &Path, dir: &Path, f: impl FnOnce(&Path) -> T) -> T {
    let work = dir.join(format!("check-{}", uuid::Uuid::new_v4()));
    let disk = volume_attach::AttachedDisk::attach_file(image, &work.join("attach")).unwrap();
    let root = disk.resolve("/dev/sda2").unwrap();
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    nix::mount::mount(
        Some(&root.node),
        &mnt,
        Some("ext4"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let out = f(&mnt);
    nix::mount::umount(&mnt).unwrap();
    disk.detach().unwrap();
    out
}
