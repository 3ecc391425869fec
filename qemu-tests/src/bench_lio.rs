//! `streamer-vm bench-lio`: storaged's iSCSI target beside the Linux kernel's own target (LIO)
//! inside the appliance VM: the same kernel, the same virtual NIC, the same bytes. The
//! appliance boots on the enclosure network as in the scenarios; LIO's modules come from the
//! image's own kernel package on a read-only extra disk (the image does not carry them), are
//! loaded from the console's root shell and set up through configfs (no targetcli needed):
//! a `fileio` backstore, buffered (write-back, a SCSI flush is an fsync: storaged's own
//! semantics), on the data partition beside storaged's volume, on port 3261. The clients run
//! on the host in the enclosure's namespace and reach both targets over the appliance's tap
//! NIC: `qemu-img bench` for sequential MB/s, libiscsi's `iscsi-perf` for 4 KiB random-read
//! IOPS, interleaved run by run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use streamer_image::initramfs::module_name;

use crate::appliance::ImageFiles;
use crate::rig::{APPLIANCE_IP, Rig};

/// The kernel modules LIO needs for an iSCSI target on a file.
const LIO_MODULES: &[&str] = &["target_core_mod", "target_core_file", "iscsi_target_mod"];
/// LIO's target name and port inside the appliance (storaged's target is on 3260).
const LIO_IQN: &str = "iqn.2026-12.org.streamer.bench:lio";
const LIO_PORT: u16 = 3261;
const INITIATOR: &str = "iqn.2026-12.org.streamer.bench:client";

/// What to measure and where.
#[derive(Debug)]
pub struct Options {
    pub runs: usize,
    pub size_mib: u64,
    /// The image builder's cache (the kernel package it unpacked).
    pub kernel_cache: PathBuf,
    pub dir: PathBuf,
    pub commit: String,
}

/// The default kernel cache: the one `make image` fills.
pub fn default_kernel_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/streamer-image/cache")
}

/// Runs the benchmark; returns the BENCHMARKS.md section.
pub fn report(opts: &Options) -> Result<String> {
    let image = ImageFiles::locate()?;
    std::fs::create_dir_all(&opts.dir)?;
    let modules_dir = modules_of(&image, &opts.kernel_cache)?;
    let tar = opts.dir.join("lio-modules.tar");
    pack_modules(
        &modules_dir,
        LIO_MODULES,
        &opts.dir.join("lio-modules"),
        &tar,
    )?;

    let mut rig = Rig::start_with(&opts.dir, &[], |spec| spec.extra_disks.push(tar.clone()))?;
    let t = Duration::from_secs(600);
    let a = &mut rig.appliance;
    a.open_shell()?;
    a.shell(
        "mkdir -p /run/lio && tar -xf /dev/vdb -C /run/lio && sh /run/lio/load.sh && \
         (grep -q ' /sys/kernel/config ' /proc/mounts || \
          mount -t configfs configfs /sys/kernel/config)",
        t,
    )
    .context("loading LIO's modules")?;
    // The same bytes for both: incompressible, made once, copied into storaged's store.
    let mib = opts.size_mib;
    a.shell(
        &format!(
            "dd if=/dev/urandom of=/data/lio.raw bs=1M count={mib} 2>/dev/null && \
             storaged volume import --name bench --writable /data/lio.raw >/dev/null && \
             storaged export add bench --allow {net}.1 >/dev/null && sync",
            net = crate::rig::NET
        ),
        t,
    )
    .context("making the volume")?;
    let id = a.shell("storaged volume info bench | sed -n 's/^id: *//p'", t)?;
    let id = id.trim().to_owned();
    if id.is_empty() {
        bail!("storaged did not report the volume's id");
    }
    for line in lio_setup(mib) {
        a.shell(&line, t)
            .with_context(|| format!("setting up LIO: {line}"))?;
    }
    a.close_shell()?;

    let ns = rig.enclosure.netns.clone();
    let ours = format!("iscsi://{APPLIANCE_IP}:3260/iqn.2026-12.org.streamer:{id}/0");
    let lio = format!("iscsi://{APPLIANCE_IP}:{LIO_PORT}/{LIO_IQN}/0");
    let mut results: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for run in 1..=opts.runs {
        eprintln!("bench-lio: run {run} of {}", opts.runs);
        for (which, url) in [("ours", &ours), ("lio", &lio)] {
            for (kind, write) in [("read", false), ("write", true)] {
                let v = seq_mbs(&ns, url, mib, write)?;
                results.entry((kind, which)).or_default().push(v);
            }
            let v = iops(&ns, url)?;
            results.entry(("iops", which)).or_default().push(v);
        }
    }
    drop(rig);
    Ok(section(opts, &results))
}

/// configfs writes that serve `/data/lio.raw` on port 3261, one shell line each.
fn lio_setup(size_mib: u64) -> Vec<String> {
    let core = "/sys/kernel/config/target/core/fileio_0/bench";
    let tpg = format!("/sys/kernel/config/target/iscsi/{LIO_IQN}/tpgt_1");
    vec![
        format!("mkdir -p {core}"),
        format!(
            "echo fd_dev_name=/data/lio.raw,fd_dev_size={},fd_buffered_io=1 > {core}/control",
            size_mib << 20
        ),
        format!("echo 1 > {core}/enable"),
        format!("mkdir -p {tpg}/lun/lun_0 {tpg}/np/{APPLIANCE_IP}:{LIO_PORT}"),
        format!("ln -s {core} {tpg}/lun/lun_0/bench"),
        // No ACLs and no CHAP: the same as storaged's export here (any initiator on the
        // allowed network).
        format!(
            "echo 0 > {tpg}/attrib/authentication && echo 1 > {tpg}/attrib/generate_node_acls && \
             echo 0 > {tpg}/attrib/demo_mode_write_protect && echo 1 > {tpg}/enable"
        ),
    ]
}

/// The image's kernel's modules directory in the image builder's cache: the unpacked
/// package whose vmlinuz is the image's.
fn modules_of(image: &ImageFiles, cache: &Path) -> Result<PathBuf> {
    let ours = std::fs::read(image.kernel())?;
    let entries = std::fs::read_dir(cache)
        .with_context(|| format!("{} (run `make image`)", cache.display()))?;
    for e in entries.filter_map(Result::ok) {
        let root = e.path().join("root");
        if let Ok((_, vmlinuz, modules)) = streamer_image::kernel::locate(&root)
            && std::fs::read(&vmlinuz).is_ok_and(|k| k == ours)
        {
            return Ok(modules);
        }
    }
    bail!(
        "no kernel package in {} matches the image's kernel: rebuild the image (`make image`)",
        cache.display()
    )
}

/// Copies `names` and their dependencies out of `modules_dir` into `stage` with a `load.sh`
/// that insmods them in dependency order, and packs it as the tar file `out` (a tar is a
/// whole number of 512-byte blocks: a disk QEMU can attach, busybox tar reads the device).
fn pack_modules(modules_dir: &Path, names: &[&str], stage: &Path, out: &Path) -> Result<()> {
    let dep_text = std::fs::read_to_string(modules_dir.join("modules.dep"))?;
    let dep = streamer_image::initramfs::parse_modules_dep(&dep_text);
    let builtin_text =
        std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin_text.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for n in names {
        load_order(&dep, &builtin, n, &mut seen, &mut order)?;
    }
    let _ = std::fs::remove_dir_all(stage);
    std::fs::create_dir_all(stage)?;
    let mut script = String::from("set -e\n");
    for path in &order {
        let file = Path::new(path)
            .file_name()
            .context("module path")?
            .to_string_lossy()
            .into_owned();
        if file.ends_with(".ko.xz") || file.ends_with(".ko.zst") || file.ends_with(".ko.gz") {
            bail!("{file}: compressed modules are not supported (busybox insmod)");
        }
        std::fs::copy(modules_dir.join(path), stage.join(&file))
            .with_context(|| format!("copying {path}"))?;
        let _ = writeln!(
            script,
            "grep -q '^{} ' /proc/modules || insmod /run/lio/{file}",
            module_name(path)
        );
    }
    std::fs::write(stage.join("load.sh"), script)?;
    let st = Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(stage)
        .arg(".")
        .status()?;
    if !st.success() {
        bail!("tar failed");
    }
    Ok(())
}

/// Appends `name`'s dependencies, then `name`, to `order` (each once); built-in modules need
/// no loading.
fn load_order(
    dep: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &BTreeSet<String>,
    name: &str,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<()> {
    let name = name.replace('-', "_");
    if !seen.insert(name.clone()) {
        return Ok(());
    }
    let Some((path, deps)) = dep.get(&name) else {
        if builtin.contains(&name) {
            return Ok(());
        }
        bail!("the kernel has no module {name}");
    };
    for d in deps {
        load_order(dep, builtin, &module_name(d), seen, order)?;
    }
    order.push(path.clone());
    Ok(())
}

/// A command in the enclosure's namespace; its stdout, or an error with its stderr.
fn in_ns(ns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// MB/s of `qemu-img bench` over the whole disk (1 MiB requests, 8 in flight).
fn seq_mbs(ns: &str, url: &str, size_mib: u64, write: bool) -> Result<f64> {
    let count = size_mib.to_string();
    let mut args = vec!["qemu-img", "bench", "-f", "raw", "-q", "-c", &count];
    args.extend(["-s", "1M", "-d", "8"]);
    if write {
        args.push("-w");
    }
    args.push(url);
    let t0 = Instant::now();
    in_ns(ns, &args)?;
    Ok((size_mib as f64 / t0.elapsed().as_secs_f64()).round())
}

/// 4 KiB random reads per second: iscsi-perf, 32 in flight, 10 s.
fn iops(ns: &str, url: &str) -> Result<f64> {
    let out = in_ns(
        ns,
        &[
            "iscsi-perf",
            "-r",
            "-b",
            "8",
            "-m",
            "32",
            "-t",
            "10",
            "-i",
            INITIATOR,
            url,
        ],
    )?;
    parse_iops(&out).with_context(|| format!("no IOPS in iscsi-perf's output: {out}"))
}

/// The last "iops average N" of iscsi-perf's progress lines.
fn parse_iops(out: &str) -> Option<f64> {
    out.split(['\r', '\n'])
        .filter_map(|l| l.split("iops average ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

fn section(opts: &Options, r: &BTreeMap<(&str, &str), Vec<f64>>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## iSCSI inside the appliance VM: storaged's target beside the kernel's (LIO)\n"
    );
    let _ = writeln!(
        s,
        "Measured {} at commit {} by `make bench` (`streamer-vm bench-lio`, {} runs\n\
         interleaved, each value listed): the appliance image in QEMU (TCG, 2 vCPUs, 3 GiB) on\n\
         the enclosure network. In it, a {} MiB volume of incompressible bytes served by\n\
         storaged's target (port 3260), and the same bytes as a file on the same data partition\n\
         served by the Linux kernel's LIO target (port 3261, `fileio` backstore, buffered:\n\
         write-back with flush as fsync, storaged's semantics), LIO's modules loaded from the\n\
         image's own kernel package and set up through configfs. Clients on the host in the\n\
         enclosure's namespace, over the appliance's tap NIC: `qemu-img bench` (1 MiB requests,\n\
         8 in flight, the whole disk) and libiscsi's `iscsi-perf` (4 KiB random reads, 32 in\n\
         flight, 10 s). Under TCG the guest's CPUs are the bottleneck, so this compares what\n\
         each target costs per byte, not hardware speeds.\n",
        utc_now(),
        opts.commit,
        opts.runs,
        opts.size_mib
    );
    let _ = writeln!(s, "| | storaged iSCSI | LIO | storaged / LIO (medians) |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for (key, label) in [
        ("read", "sequential read, MiB/s"),
        ("write", "sequential write, MiB/s"),
        ("iops", "4 KiB random read, IOPS"),
    ] {
        let (o, l) = (&r[&(key, "ours")], &r[&(key, "lio")]);
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {:.2}× |",
            list(o),
            list(l),
            median(o) / median(l)
        );
    }
    s
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC` (from `date`, as the scripts write it).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iscsi_perf_progress_gives_its_last_average() {
        let out = "iops average 1200 [...]\r iops average 1350 [...]\r\nDone\n";
        assert_eq!(parse_iops(out), Some(1350.0));
        assert_eq!(parse_iops("connection failed\n"), None);
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let dep = streamer_image::initramfs::parse_modules_dep(
            "kernel/drivers/target/iscsi/iscsi_target_mod.ko: kernel/drivers/target/target_core_mod.ko kernel/lib/crc-t10dif.ko\n\
             kernel/drivers/target/target_core_mod.ko: kernel/lib/crc-t10dif.ko\n\
             kernel/lib/crc-t10dif.ko:\n",
        );
        let builtin = BTreeSet::from(["configfs".to_owned()]);
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for n in ["iscsi_target_mod", "configfs", "target_core_mod"] {
            load_order(&dep, &builtin, n, &mut seen, &mut order).unwrap();
        }
        assert_eq!(
            order,
            [
                "kernel/lib/crc-t10dif.ko",
                "kernel/drivers/target/target_core_mod.ko",
                "kernel/drivers/target/iscsi/iscsi_target_mod.ko",
            ]
        );
        assert!(load_order(&dep, &builtin, "nope", &mut seen, &mut order).is_err());
    }
}
