//! `streamer-init --dry-run` as a normal process: the plan PID 1 would execute.

use std::process::Command;

fn init() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamer-init"))
}

#[test]
fn prints_the_plan_from_cmdline_config_and_module_tree() {
    let dir = tempfile::tempdir().unwrap();
    let modules = dir.path().join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(
        modules.join("modules.dep"),
        "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz\n\
         kernel/drivers/virtio/virtio_ring.ko.xz:\n\
         kernel/drivers/block/nbd.ko.zst:\n\
         kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:\n",
    )
    .unwrap();
    // A driver for a device no machine has: left out, whatever this machine's /sys holds.
    std::fs::write(
        modules.join("modules.alias"),
        "alias pci:v0000FFFEd0000FFFEsv*sd*bc*sc*i* e1000e\n",
    )
    .unwrap();
    std::fs::write(modules.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
    let conf = dir.path().join("streamer.conf");
    std::fs::write(&conf, "hostname = from-file\nconsole = ttyS1\n").unwrap();

    let out = init()
        .args(["--dry-run", "--cmdline"])
        .arg("console=ttyS0 streamer.mgmt=static:10.0.0.2/24,gw=10.0.0.1 streamer.hostname=sis1")
        .arg("--config")
        .arg(&conf)
        .arg("--modules-dir")
        .arg(&modules)
        .args(["--bin-dir", "/usr/bin"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = modules.display();
    let expected = format!(
        "mounts:
  proc on /proc type proc
  sysfs on /sys type sysfs
  devtmpfs on /dev type devtmpfs (mode=0755)
  devpts on /dev/pts type devpts (gid=5,mode=0620,ptmxmode=0666)
  tmpfs on /run type tmpfs (mode=0755)
  tmpfs on /tmp type tmpfs (mode=1777)
  cgroup2 on /sys/fs/cgroup type cgroup2
config:
  hostname sis1
  mgmt static:10.0.0.2/24,gw=10.0.0.1
  data PARTLABEL=streamer-data
  console ttyS1
  debug false
  aslr auto
modules:
  load {m}/kernel/drivers/virtio/virtio_ring.ko.xz
  load {m}/kernel/drivers/block/virtio_blk.ko.xz
"
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    // Built-in ext4 is neither loaded nor reported missing; absent drivers are noted.
    assert!(!stdout.contains("ext4"), "{stdout}");
    assert!(stdout.contains("  skip igb (not in this kernel's modules.dep)\n"));
    assert!(
        stdout.contains("  skip e1000e (no device of it here)\n"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!(
        "modules once ready:\n  load {m}/kernel/drivers/block/nbd.ko.zst\n"
    )));
    assert!(stdout.ends_with(
        "services:
  start storaged: /usr/bin/storaged serve --data-dir /data/storaged --nbd-listen 0.0.0.0:10809 --iscsi-listen 0.0.0.0:3260 --control /run/streamer/storaged.sock
  start deployd: /usr/bin/deployd --state-dir /data/deployd --listen 0.0.0.0:443 --storaged /run/streamer/storaged.sock --nbd 127.0.0.1:10809 --admin-password-reset /run/streamer/admin-password-reset --power-control-pid 1 (once storaged has started)
then: streamer: sis1 10.0.0.2 ready
"
    ), "{stdout}");
}

#[test]
fn a_bad_key_fails_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = init()
        .args([
            "--dry-run",
            "--cmdline",
            "streamer.mgmt=static:10.0.0.300/24",
        ])
        .arg("--config")
        .arg(dir.path().join("absent.conf"))
        .arg("--modules-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "streamer-init: kernel command line: bad value \"static:10.0.0.300/24\" for `mgmt`: \
         \"10.0.0.300\" is not an IP address\n"
    );
}

#[test]
fn refuses_to_run_as_an_ordinary_process_without_dry_run() {
    let out = init().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not PID 1"));
}
