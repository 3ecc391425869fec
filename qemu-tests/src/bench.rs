//! `streamer-vm bench-boot`: how fast the appliance boots under TCG and how small it is.
//! Each run boots a fresh disk; the peer is the floor set by the same kernel and QEMU: a
//! busybox-only initramfs that prints the kernel clock and powers off, so the difference
//! is what our init, daemons and modules cost.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::appliance::{ApplianceSpec, Boot, ImageFiles, create_disk};
use crate::qemu::VmSpec;

/// One boot's numbers, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct BootTime {
    /// QEMU start → the line on the serial console, on this machine's clock.
    pub host: f64,
    /// The guest kernel's clock at that line.
    pub guest: f64,
}

/// A process's command line (shortened) and its resident memory in KiB.
pub type ProcessRss = (String, u64);

/// One boot's phases: a name and its length in seconds of the guest kernel's clock.
pub type Phases = Vec<(&'static str, f64)>;

/// Splits a boot into phases from the kernel's `Run /init` line and init's log (lines
/// `[   2.289] text`, the kernel clock). A phase whose lines are missing is left out.
pub fn boot_phases(dmesg_and_init_log: &str) -> Phases {
    let at = |needle: &str| -> Option<f64> {
        dmesg_and_init_log.lines().find_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix('[')?;
            let (clock, text) = rest.split_once(']')?;
            text.contains(needle).then(|| clock.trim().parse().ok())?
        })
    };
    let marks = [
        at("Run /init"),
        at("data partition "),
        at("started storaged"),
        at("storaged is ready"),
        at("deployd is ready"),
        at("ready after"),
    ];
    let span = |from: Option<f64>, to: Option<f64>| Some(to? - from?);
    let phases: [(&'static str, Option<f64>); 7] = [
        ("kernel start → /init runs", marks[0]),
        (
            "/init → data partition mounted (drivers; config partition and network meanwhile)",
            span(marks[0], marks[1]),
        ),
        (
            "data partition → storaged started (entropy seed, hostname)",
            span(marks[1], marks[2]),
        ),
        (
            "storaged: started → ready (deployd starting beside it)",
            span(marks[2], marks[3]),
        ),
        (
            "deployd: storaged ready → deployd ready",
            span(marks[3], marks[4]),
        ),
        ("the ready line", span(marks[4], marks[5])),
        ("**total: kernel start → ready**", marks[5]),
    ];
    phases
        .into_iter()
        .filter_map(|(name, t)| t.map(|t| (name, t)))
        .collect()
}

/// The console shell command whose output [`boot_phases`] reads.
const PHASES_COMMAND: &str = "dmesg | grep -m1 'Run /init'; cat /run/log/init.log";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Boots the appliance `runs` times on fresh disks; also returns the idle RSS (KiB) per
/// process measured on the last run (first boots only) and the last run's phases.
/// With `again`, all runs boot one disk that has booted once already (not counted): the
/// data filesystem exists, so this is the everyday boot.
pub fn appliance_boots(
    image: &ImageFiles,
    boot: Boot,
    runs: usize,
    dir: &Path,
    again: bool,
) -> Result<(Vec<BootTime>, Vec<ProcessRss>, Phases)> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    let mut phases = Vec::new();
    let shared = dir.join(format!("bench-{boot:?}-again.qcow2").to_lowercase());
    if again {
        let _ = std::fs::remove_file(&shared);
        create_disk(image, &shared, "4G")?;
        let mut spec = ApplianceSpec::new("bench-warm-up", boot, dir)?;
        spec.disk = shared.clone();
        let mut a = spec.start(image)?;
        a.wait_ready(Duration::from_secs(600))?;
        a.vm.power_down(Duration::from_secs(120))?;
    }
    for i in 0..runs {
        let name = format!("bench-{boot:?}-{i}").to_lowercase();
        let mut spec = ApplianceSpec::new(&name, boot, dir)?;
        if again {
            spec.disk = shared.clone();
        } else {
            let _ = std::fs::remove_file(&spec.disk);
            create_disk(image, &spec.disk, "4G")?;
        }
        let mut a = spec.start(image)?;
        let r = a.wait_ready(Duration::from_secs(600))?;
        times.push(BootTime {
            host: r.host_seconds,
            guest: r.guest_seconds,
        });
        if i + 1 == runs {
            a.open_shell()?;
            phases = boot_phases(&a.shell(PHASES_COMMAND, Duration::from_secs(60))?);
        }
        if i + 1 == runs && !again {
            // Idle: after the first-boot work (mke2fs, certificate, password hash) settled.
            std::thread::sleep(Duration::from_secs(15));
            let out = a.shell(
                "for p in /proc/[0-9]*; do r=$(awk '/VmRSS/{print $2}' $p/status 2>/dev/null); \
                 [ -n \"$r\" ] && echo \"$r $(tr '\\0' ' ' < $p/cmdline | cut -c1-40)\"; done; true",
                Duration::from_secs(60),
            )?;
            for line in out.lines() {
                let mut w = line.splitn(2, ' ');
                if let (Some(kib), Some(cmd)) = (w.next(), w.next())
                    && let Ok(kib) = kib.trim().parse::<u64>()
                {
                    rss.push((cmd.trim().to_owned(), kib));
                }
            }
        }
        if i + 1 == runs {
            a.close_shell()?;
        }
        a.vm.power_down(Duration::from_secs(120))?;
        if !again {
            let _ = std::fs::remove_file(&spec.disk);
        }
    }
    let _ = std::fs::remove_file(&shared);
    Ok((times, rss, phases))
}

/// The same kernel with a busybox-only initramfs: QEMU start → its first shell line.
pub fn floor_boots(image: &ImageFiles, runs: usize, dir: &Path) -> Result<Vec<BootTime>> {
    let root = dir.join("floor-root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .context("/bin/busybox (apt-get install busybox-static)")?;
    let init = "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
                echo \"floor ready $(/bin/busybox cut -d' ' -f1 /proc/uptime)\"\n\
                /bin/busybox poweroff -f\n";
    std::fs::create_dir_all(root.join("proc"))?;
    std::fs::create_dir_all(root.join("dev"))?;
    std::fs::write(root.join("init"), init)?;
    std::fs::set_permissions(
        root.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let cpio = dir.join("floor.cpio.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
            root.display(),
            cpio.display()
        ))
        .status()?;
    if !status.success() {
        bail!("cannot make the floor initramfs");
    }
    let mut out = Vec::new();
    for i in 0..runs {
        let mut spec = VmSpec::new(&format!("floor-{i}"), dir);
        spec.arg("-kernel")
            .arg(image.kernel().display().to_string())
            .arg("-initrd")
            .arg(cpio.display().to_string())
            .arg("-append")
            .arg(image.cmdline()?);
        let mut vm = spec.start()?;
        let started = Instant::now();
        let c = vm
            .console
            .expect(r"floor ready ([0-9.]+)", Duration::from_secs(300))?;
        out.push(BootTime {
            host: started.elapsed().as_secs_f64(),
            guest: c[1].parse()?,
        });
        vm.wait_exit(Duration::from_secs(60))?;
    }
    Ok(out)
}

fn compressed_size(file: &Path, cmd: &str) -> Result<u64> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} < '{}' | wc -c", file.display()))
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// Runs everything and renders the BENCHMARKS.md section.
pub fn report(image: &ImageFiles, runs: usize, dir: &Path, commit: &str) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    let dir = &std::fs::canonicalize(dir)?;
    let (direct, rss, first_phases) = appliance_boots(image, Boot::Direct, runs, dir, false)?;
    let (again, _, later_phases) = appliance_boots(image, Boot::Direct, runs, dir, true)?;
    let (uefi, _, _) = appliance_boots(image, Boot::Uefi, runs, dir, false)?;
    let (uefi_again, _, _) = appliance_boots(image, Boot::Uefi, runs, dir, true)?;
    let floor = floor_boots(image, runs, dir)?;
    let mut s = String::new();
    let when = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(s, "## Appliance boot (QEMU TCG), image size, idle memory\n");
    let _ = writeln!(
        s,
        "Measured {when} at commit {commit} by `make bench` (`streamer-vm bench-boot`): {runs} \
         boots each on a fresh 4 GiB disk (first boot: the data filesystem, the TLS certificate \
         and the Administrator's password hash are made), and {runs} later boots of one disk, \
         2 vCPUs, 2 GiB, TCG (no KVM on this machine), median shown. \"Guest\" is the guest \
         kernel's clock at init's `ready after` line (the API answers on 443); \"host\" is \
         QEMU start → the ready line on the serial console. The peer is the floor of the same \
         kernel and QEMU: a busybox-only initramfs that prints the kernel clock.\n"
    );
    let _ = writeln!(
        s,
        "| boot | guest s (median) | host s (median) | runs (guest) |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for (name, v) in [
        ("appliance, direct kernel boot, first boot", &direct),
        ("appliance, direct kernel boot, later boots", &again),
        ("appliance, UEFI (OVMF → UKI on the ESP), first boot", &uefi),
        ("appliance, UEFI, later boots", &uefi_again),
        ("peer floor: same kernel, busybox initramfs", &floor),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {:.2} | {:.2} | {} |",
            median(v.iter().map(|t| t.guest).collect()),
            median(v.iter().map(|t| t.host).collect()),
            v.iter()
                .map(|t| format!("{:.2}", t.guest))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(s, "\nTarget: guest time to ready < 3 s.\n");
    let _ = writeln!(
        s,
        "Where the time goes, from the kernel's `Run /init` line and init's kernel-clock log \
         of the last direct boot of each kind (guest seconds):\n"
    );
    let _ = writeln!(s, "| phase | first boot | later boot |");
    let _ = writeln!(s, "|---|---|---|");
    for (name, first) in &first_phases {
        let later = later_phases
            .iter()
            .find(|(n, _)| n == name)
            .map_or("—".to_owned(), |(_, t)| format!("{t:.2}"));
        let _ = writeln!(s, "| {name} | {first:.2} | {later} |");
    }
    let _ = writeln!(s);
    let disk = image.disk();
    let raw = std::fs::metadata(&disk)?.len();
    let _ = writeln!(s, "| artifact | size |");
    let _ = writeln!(s, "|---|---|");
    let _ = writeln!(
        s,
        "| disk image streamer.img (raw, sparse regions included) | {} |",
        mib(raw)
    );
    let _ = writeln!(
        s,
        "| streamer.img, zstd -19 | {} |",
        mib(compressed_size(&disk, "zstd -q -19 -T0 -c")?)
    );
    let _ = writeln!(
        s,
        "| streamer.img, gzip -9 | {} |",
        mib(compressed_size(&disk, "gzip -9 -c")?)
    );
    let _ = writeln!(
        s,
        "| UKI streamer.efi (kernel + initramfs + command line) | {} |",
        mib(std::fs::metadata(image.dir.join("streamer.efi"))?.len())
    );
    let _ = writeln!(
        s,
        "| initramfs.cpio (uncompressed; the UKI holds it as is) | {} |",
        mib(std::fs::metadata(image.initramfs())?.len())
    );
    let _ = writeln!(s, "\nTarget: < 64 MiB compressed.\n");
    let _ = writeln!(
        s,
        "Idle resident memory (VmRSS) 15 s after ready, first boot, direct boot:\n"
    );
    let _ = writeln!(s, "| process | RSS |");
    let _ = writeln!(s, "|---|---|");
    let mut daemons = 0;
    let mut all = 0;
    let mut rows = rss.clone();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (cmd, kib) in &rows {
        if cmd.is_empty() {
            continue;
        }
        all += kib;
        if ["storaged", "deployd", "clusterd", "/init", "udhcpc"]
            .iter()
            .any(|d| cmd.contains(d))
        {
            daemons += kib;
            let _ = writeln!(s, "| `{cmd}` | {:.1} MiB |", *kib as f64 / 1024.0);
        }
    }
    let _ = writeln!(
        s,
        "| **init + daemons together** | **{:.1} MiB** |\n| every user-space process (with the \
         console and the shell that measured) | {:.1} MiB |",
        daemons as f64 / 1024.0,
        all as f64 / 1024.0
    );
    let _ = writeln!(s, "\nTarget: idle RSS of all daemons together < 64 MiB.");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_log_splits_into_phases() {
        // The shape of `dmesg | grep 'Run /init'; cat /run/log/init.log` on the appliance.
        let log = "[    1.847580] Run /init as init process\n\
                   [    2.218] data partition mounted (/dev/vda3)\n\
                   [    2.289] modules loaded: 33 of 33\n\
                   [    2.365] started storaged (pid 116)\n\
                   [    2.380] started deployd (pid 121)\n\
                   [    2.505] storaged is ready\n\
                   [    2.634] deployd is ready\n\
                   [    2.651] ready after 2.651 s (kernel clock)\n";
        let p = boot_phases(log);
        let names: Vec<&str> = p.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), 7, "{names:?}");
        let t: Vec<f64> = p.iter().map(|(_, t)| *t).collect();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(t[0], 1.84758));
        assert!(close(t[1], 2.218 - 1.84758));
        assert!(close(t[3], 0.14));
        assert!(close(t[4], 0.129));
        assert!(close(t[5], 0.017));
        assert!(close(t[6], 2.651));
        // The phases before the total add up to it.
        assert!(close(t[..6].iter().sum::<f64>(), t[6]));
        // A boot that never reached deployd has no deployd rows, nothing invented.
        let partial = boot_phases(
            "[    1.9] Run /init as init process\n[ 2.2] data partition created (ext4, 9 MiB) on /dev/vda3\n",
        );
        assert_eq!(partial.len(), 2);
    }
}
