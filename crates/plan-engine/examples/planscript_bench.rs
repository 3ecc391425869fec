//! Benchmark of one plan-script run (attach → mount → run → unmount → detach), for
//! `scripts/bench-planscript.sh`: the HPE Developer 2017 deploy plan on its own golden image,
//! and a hostname + network + user plan on a 4 GiB ext4 Linux image, each both on a raw file
//! (loop devices) and over NBD from an in-process storaged (FUSE + loop devices).
//!
//! Usage: planscript_bench WORK_DIR DEVELOPER_BUNDLE RUNS
//! Prints one line per case: `case runs=N min_ms=.. median_ms=.. max_ms=..`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use plan_engine::exec::Source;
use plan_engine::run::{CancelFlag, RunConfig, run_on_file, run_on_nbd};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("planscript_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn developer(bundle: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle)?)?;
    let mut image = Vec::new();
    let mut script = String::new();
    for i in 0..zip.len() {
        let mut e = zip.by_index(i)?;
        let name = e.name().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        if name.starts_with("HPE - Developer 1.0 - UEFI Test Image") {
            zip::ZipArchive::new(std::io::Cursor::new(data))?
                .by_index(0)?
                .read_to_end(&mut image)?;
        } else if name.ends_with("_planscript.json") {
            let v: serde_json::Value = serde_json::from_slice(&data)?;
            if v["name"] == "HPE - Developer 1.0 - example UEFI personalization script - 2017-03-24"
            {
                script = v["content"].as_str().unwrap_or_default().to_string();
            }
        }
    }
    anyhow::ensure!(
        !image.is_empty() && !script.is_empty(),
        "developer bundle incomplete"
    );
    let values = [
        ("ExampleString1", "bench"),
        ("ExampleNumber1", "1"),
        ("ExampleIPv4Address", "10.0.0.1"),
        ("ExampleFQDN", "a.example.com"),
        ("ExamplePassword", "Passw0rd"),
        ("ExampleOption", "Option1"),
        ("ExampleString2", "x"),
    ];
    let mut text = script;
    for (k, v) in values {
        text = text.replace(&format!("@{k}@"), v);
    }
    let text = planscript::attributes::substitute(&text, |t| t.default.clone().unwrap_or_default());
    Ok((image, text))
}

/// A 4 GiB GPT disk: ESP (FAT32, 256 MiB) + ext4 root with a small Linux /etc.
fn linux(dir: &Path) -> anyhow::Result<PathBuf> {
    let tree = dir.join("tree");
    for d in ["etc/network", "etc/ssh", "root", "home"] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    std::fs::write(tree.join("etc/hostname"), "golden\n")?;
    std::fs::write(tree.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    std::fs::write(tree.join("etc/os-release"), "ID=debian\n")?;
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n")?;
    std::fs::write(tree.join("etc/shadow"), "root:*:19000:0:99999:7:::\n")?;
    std::fs::write(tree.join("etc/group"), "root:x:0:\n")?;
    let img = dir.join("linux.raw");
    std::fs::File::create(&img)?.set_len(4 << 30)?;
    let mut sf = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    sf.stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("sfdisk stdin"))?
        .write_all(b"label: gpt\nstart=2048, size=524288, type=U\nstart=526336, type=L\n")?;
    anyhow::ensure!(sf.wait()?.success(), "sfdisk failed");
    let ok = |c: &mut Command| -> anyhow::Result<()> {
        let o = c.output()?;
        anyhow::ensure!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(())
    };
    ok(Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "--offset=2048"])
        .arg(&img)
        .arg("262144"))?;
    let root_bytes = (4u64 << 30) - 526336 * 512 - (1 << 20);
    ok(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", &format!("offset={}", 526336 * 512), "-d"])
        .arg(&tree)
        .arg(&img)
        .arg(format!("{}k", root_bytes / 1024)))?;
    Ok(img)
}

const LINUX_PLAN: &str = r#"mount /dev/sda2 /
write /etc/hostname "node042\n"
write-append /etc/hosts "10.20.0.42 node042.example.com node042\n"
upload -<<END /etc/network/interfaces
auto eth0
iface eth0 inet static
    address 10.20.0.42/24
    gateway 10.20.0.1
END
write-append /etc/passwd "ops:x:1000:1000:Ops:/home/ops:/bin/bash\n"
write-append /etc/shadow "ops:$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij:19000:0:99999:7:::\n"
write-append /etc/group "ops:x:1000:\n"
mkdir-p /home/ops
chmod 0700 /home/ops
umount /
"#;

fn time_runs(
    label: &str,
    runs: usize,
    mut once: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<()> {
    let mut ms: Vec<f64> = Vec::new();
    for _ in 0..runs {
        ms.push(once()?.as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{label} runs={runs} min_ms={:.1} median_ms={:.1} max_ms={:.1}",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
    Ok(())
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: planscript_bench WORK_DIR DEVELOPER_BUNDLE RUNS";
    let work = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let bundle = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let runs: usize = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    std::fs::create_dir_all(&work)?;
    let cfg = RunConfig::new(work.join("runs"));
    let (dev_image, dev_script) = developer(&bundle)?;
    let dev_path = work.join("developer.raw");
    std::fs::write(&dev_path, &dev_image)?;
    let linux_path = linux(&work)?;
    let dev_src = [Source {
        name: "developer".into(),
        text: dev_script,
    }];
    let linux_src = [Source {
        name: "linux".into(),
        text: LINUX_PLAN.into(),
    }];
    let check = |o: plan_engine::run::Outcome| -> anyhow::Result<Duration> {
        if let Err(f) = &o.result {
            anyhow::bail!("{f}\n{}", o.log);
        }
        Ok(o.elapsed)
    };
    time_runs("developer-file", runs, || {
        check(run_on_file(
            &cfg,
            &dev_path,
            &dev_src,
            vec![],
            &CancelFlag::new(),
        )?)
    })?;
    time_runs("linux4g-file", runs, || {
        check(run_on_file(
            &cfg,
            &linux_path,
            &linux_src,
            vec![],
            &CancelFlag::new(),
        )?)
    })?;

    // Over NBD from storaged, as a deployment does: clones of imported golden images.
    let store = Arc::new(storaged::store::Store::open(&work.join("storaged"))?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr: SocketAddr = listener.local_addr()?;
    let catalog: Arc<dyn storaged::export::ExportCatalog> = store.clone();
    rt.spawn(storaged::nbd::serve(listener, catalog));
    for (name, path, src) in [
        ("developer", &dev_path, &dev_src),
        ("linux4g", &linux_path, &linux_src),
    ] {
        store.import(
            Some(name),
            std::fs::File::open(path)?,
            None,
            false,
            None,
            &mut |_, _| {},
        )?;
        time_runs(&format!("{name}-nbd"), runs, || {
            let clone = store.clone_volume(name, None)?;
            let id = clone.record.id.clone();
            store.export_add(&id, vec!["127.0.0.1/32".parse()?], false)?;
            let elapsed = check(run_on_nbd(
                &cfg,
                addr,
                &id,
                src,
                vec![],
                &CancelFlag::new(),
            )?)?;
            store.export_remove(&id)?;
            Ok(elapsed)
        })?;
    }
    Ok(())
}
