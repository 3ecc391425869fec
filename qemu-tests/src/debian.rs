//! A real Debian golden image for the Linux scenarios, made with mmdebstrap and cached
//! between runs: Debian 12 with systemd, its kernel and initramfs, ifupdown, ping, sudo
//! and open-iscsi, on a GPT disk with an EFI system partition (systemd-boot at the
//! removable-media path, the kernel, the initramfs and one boot-loader entry) and an ext4
//! root made with `mkfs.ext4 -d` (no mounts).
//!
//! The same image boots from a local disk (QEMU's NBD driver: a virtio disk) and through
//! its NIC's firmware over iSCSI: the root is found by its label, and when the firmware left
//! an iSCSI Boot Firmware Table (ACPI `iBFT`) the initramfs logs in to the target it names
//! (open-iscsi's initramfs script with `ISCSI_AUTO`, set by `/etc/iscsi/iscsi.initramfs`
//! only when the table exists: without one the script would wait minutes for DHCP). The kernel and initramfs
//! are separate files rather than one unified kernel image: iPXE's EFI SAN boot (Debian's
//! `ipxe-qemu`) fails to load a 44 MB PE image ("Load Error") but loads systemd-boot, which
//! loads the kernel and hands it the initramfs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Bump when the recipe changes: the cache key.
const RECIPE: &str = "debian12-systemd-iscsi-v5";
/// The root filesystem's partition (the plan scripts mount /dev/sda2).
pub const ROOT_PARTITION: u32 = 2;
const ESP_MIB: u64 = 64;
const ROOT_MIB: u64 = 768;
/// Packages over mmdebstrap's minbase (dbus: systemd-logind, which turns the ACPI power
/// button into a clean shutdown, needs it; open-iscsi: the root on iSCSI, and the
/// initiator the scenarios drive inside the guest, as root through sudo).
const PACKAGES: &str = "systemd-sysv,udev,kmod,dbus,linux-image-amd64,initramfs-tools,ifupdown,\
                        iputils-ping,login,passwd,open-iscsi,sudo";
/// The golden image's kernel command line: the root by label (a virtio disk over NBD, a
/// SCSI disk over iSCSI), classic interface names (eth0), the serial console.
const CMDLINE: &str = "root=LABEL=root rw net.ifnames=0 console=ttyS0,115200";
/// open-iscsi's initramfs settings (a shell fragment its script sources): log in from the
/// firmware's table when there is one. The initramfs then configures the NIC the way the
/// table says its address came (iPXE's came from DHCP: the initramfs asks DHCP again).
const ISCSI_INITRAMFS: &str = "if [ -e /sys/firmware/acpi/tables/iBFT ]; then ISCSI_AUTO=true; fi";
/// systemd-boot (Debian's `systemd-boot-efi`, which also has the UKI stub).
const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The cached raw disk image, built first when missing (several minutes: it downloads
/// Debian packages). `cache` is kept between runs.
pub fn golden_image(cache: &Path) -> Result<PathBuf> {
    let img = cache.join(format!("{RECIPE}.raw"));
    if img.exists() {
        return Ok(img);
    }
    std::fs::create_dir_all(cache)?;
    let work = tempfile::Builder::new()
        .prefix("debian-build-")
        .tempdir_in(cache)?;
    let root = work.path().join("root");
    eprintln!(
        "building the Debian golden image with mmdebstrap (cached in {})",
        cache.display()
    );
    run(Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            &format!("--include={PACKAGES}"),
            // Before the packages: the initramfs open-iscsi's hook builds includes it.
            &format!(
                "--setup-hook=mkdir -p \"$1/etc/iscsi\" && \
                 echo '{ISCSI_INITRAMFS}' > \"$1/etc/iscsi/iscsi.initramfs\""
            ),
            "bookworm",
        ])
        .arg(&root)
        .arg("http://deb.debian.org/debian"))
    .context("mmdebstrap (apt-get install mmdebstrap; it needs the Debian mirror)")?;
    slim(&root)?;
    // Console login on the serial port comes from systemd's serial-getty generator.
    std::fs::write(root.join("etc/fstab"), "LABEL=root / ext4 defaults 0 1\n")?;
    std::fs::write(root.join("etc/hostname"), "golden\n")?;
    std::fs::write(
        root.join("etc/network/interfaces"),
        "auto lo\niface lo inet loopback\n",
    )?;
    // Each deployed module gets its own initiator name from the plan.
    let _ = std::fs::remove_file(root.join("etc/iscsi/initiatorname.iscsi"));
    let kernel = newest(&root.join("boot"), "vmlinuz-")?;
    let initrd = newest(&root.join("boot"), "initrd.img-")?;
    let loader = work.path().join("loader.conf");
    std::fs::write(&loader, "timeout 0\ndefault debian.conf\n")?;
    let entry = work.path().join("debian.conf");
    std::fs::write(
        &entry,
        format!("title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions {CMDLINE}\n"),
    )?;
    let part = work.path().join("disk.raw");
    let total = ESP_MIB + ROOT_MIB + 2;
    std::fs::File::create(&part)?.set_len(total << 20)?;
    let mut sfdisk = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&part)
        .stdin(Stdio::piped())
        .spawn()
        .context("sfdisk (apt-get install fdisk)")?;
    let layout = format!(
        "label: gpt\nstart=2048, size={}, type=U, name=esp\nstart={}, size={}, type=L, name=root\n",
        ESP_MIB * 2048,
        2048 + ESP_MIB * 2048,
        ROOT_MIB * 2048
    );
    std::io::Write::write_all(
        sfdisk.stdin.as_mut().context("sfdisk stdin")?,
        layout.as_bytes(),
    )?;
    drop(sfdisk.stdin.take());
    if !sfdisk.wait()?.success() {
        bail!("sfdisk failed");
    }
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "-n", "ESP", "--offset=2048"])
        .arg(&part)
        .arg((ESP_MIB * 1024).to_string()))?;
    let esp = format!("{}@@{}", part.display(), 2048 * 512);
    run(Command::new("mmd").args([
        "-i",
        &esp,
        "::/EFI",
        "::/EFI/BOOT",
        "::/loader",
        "::/loader/entries",
    ]))?;
    for (from, to) in [
        (Path::new(SYSTEMD_BOOT), "::/EFI/BOOT/BOOTX64.EFI"),
        (&kernel, "::/vmlinuz"),
        (&initrd, "::/initrd.img"),
        (&loader, "::/loader/loader.conf"),
        (&entry, "::/loader/entries/debian.conf"),
    ] {
        run(Command::new("mcopy").args(["-i", &esp]).arg(from).arg(to))
            .context("mcopy (apt-get install mtools systemd-boot-efi)")?;
    }
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "root", "-E"])
        .arg(format!("offset={}", (2048 + ESP_MIB * 2048) * 512))
        .arg("-d")
        .arg(&root)
        .arg(&part)
        .arg(format!("{ROOT_MIB}M")))?;
    std::fs::rename(&part, &img)?;
    Ok(img)
}

/// Drops what a test VM never uses (documentation, locales, drivers for absent hardware),
/// so the image uploads and clones quickly.
fn slim(root: &Path) -> Result<()> {
    for d in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/info",
    ] {
        let _ = std::fs::remove_dir_all(root.join(d));
    }
    let modules = root.join("lib/modules");
    for release in std::fs::read_dir(&modules)? {
        let k = release?.path().join("kernel");
        for d in [
            "drivers/gpu",
            "drivers/media",
            "drivers/infiniband",
            "drivers/net/wireless",
            "drivers/net/ethernet",
            "drivers/staging",
            "drivers/usb",
            "drivers/bluetooth",
            "drivers/iio",
            "drivers/hid",
            "drivers/isdn",
            "drivers/mtd",
            "drivers/hwmon",
            "drivers/edac",
            "sound",
            "net/wireless",
            "net/mac80211",
            "net/bluetooth",
            "fs/ocfs2",
            "fs/btrfs",
            "fs/xfs",
            "fs/nfs",
            "fs/ceph",
        ] {
            let _ = std::fs::remove_dir_all(k.join(d));
        }
    }
    let _ = std::fs::remove_dir_all(root.join("var/cache/apt"));
    let _ = std::fs::remove_dir_all(root.join("var/lib/apt/lists"));
    Ok(())
}

/// The path of the newest file in `dir` whose name starts with `prefix`.
fn newest(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}
