//! `streamer-vm run`: boots the built appliance image in QEMU (OVMF, TCG) with its API on
//! https://127.0.0.1:PORT, shows its serial console here (lines typed here go to it),
//! prints how to log in once it is ready, and powers it off cleanly on Ctrl-C.
//!
//! Exit status: 0 after a clean power-off; 1 when it cannot start or the VM fails.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use streamer_vm::appliance::{ApplianceSpec, Boot, ImageFiles, create_disk};

#[derive(Debug, Parser)]
#[command(
    name = "streamer-vm",
    version,
    about = "Runs the Streamer appliance image in QEMU"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Boot the appliance and keep it running until Ctrl-C.
    Run(RunArgs),
    /// Measure boot time (direct, UEFI, and the kernel's floor), image size and idle RSS;
    /// print the BENCHMARKS.md section.
    BenchBoot {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value = "target/bench/boot-vms")]
        dir: PathBuf,
        /// Written with the section (default: stdout only).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "unknown")]
        commit: String,
    },
    /// Measure storaged's iSCSI target beside the kernel's (LIO) inside the appliance VM;
    /// print the BENCHMARKS.md section. Needs root (the enclosure's namespace).
    BenchLio {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The volume's size in MiB.
        #[arg(long, default_value_t = 512)]
        size_mib: u64,
        #[arg(long, default_value = "target/bench/lio-vm")]
        dir: PathBuf,
        /// The image builder's cache holding the image's kernel package (default: the one
        /// `make image` fills).
        #[arg(long)]
        kernel_cache: Option<PathBuf>,
        /// Written with the section (default: stdout only).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "unknown")]
        commit: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The appliance's disk (a qcow2 over the image); kept between runs: delete it for a
    /// factory-fresh appliance.
    #[arg(long, default_value = "var/run/streamer.qcow2")]
    disk: PathBuf,
    /// Disk size for a new disk (the data partition grows into it).
    #[arg(long, default_value = "8G")]
    size: String,
    /// Host port for the API (guest port 443).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Boot the kernel directly instead of through OVMF and the disk's UKI.
    #[arg(long)]
    direct: bool,
    #[arg(long, default_value_t = 4096)]
    memory_mib: u32,
    /// The streamerctl binary to suggest once the appliance is ready.
    #[arg(long, default_value = "streamerctl")]
    cli: PathBuf,
    /// Give up if the API is not ready in this many seconds.
    #[arg(long, default_value_t = 600)]
    ready_timeout: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Run(args) => run(args),
        Cmd::BenchBoot {
            runs,
            dir,
            out,
            commit,
        } => bench(runs, &dir, out.as_deref(), &commit),
        Cmd::BenchLio {
            runs,
            size_mib,
            dir,
            kernel_cache,
            out,
            commit,
        } => bench_lio(
            streamer_vm::bench_lio::Options {
                runs,
                size_mib,
                kernel_cache: kernel_cache
                    .unwrap_or_else(streamer_vm::bench_lio::default_kernel_cache),
                dir,
                commit,
            },
            out.as_deref(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamer-vm: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn bench(
    runs: usize,
    dir: &std::path::Path,
    out: Option<&std::path::Path>,
    commit: &str,
) -> Result<()> {
    let image = ImageFiles::locate()?;
    let section = streamer_vm::bench::report(&image, runs, dir, commit)?;
    print!("{section}");
    if let Some(out) = out {
        std::fs::write(out, &section)?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn bench_lio(opts: streamer_vm::bench_lio::Options, out: Option<&std::path::Path>) -> Result<()> {
    let result = streamer_vm::bench_lio::report(&opts);
    let _ = std::fs::remove_dir_all(&opts.dir);
    let section = result?;
    print!("{section}");
    if let Some(out) = out {
        std::fs::write(out, &section)?;
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    let image = ImageFiles::locate()?;
    let dir = args
        .disk
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let fresh = create_disk(&image, &args.disk, &args.size)?;
    let boot = if args.direct {
        Boot::Direct
    } else {
        Boot::Uefi
    };
    let mut spec = ApplianceSpec::new("appliance", boot, &dir)?;
    spec.disk = args.disk.clone();
    spec.api_port = args.port;
    spec.echo = true;
    spec.memory_mib = args.memory_mib;
    if std::net::TcpListener::bind(("127.0.0.1", args.port)).is_err() {
        anyhow::bail!(
            "port {} is in use (another `make run`?); pass --port",
            args.port
        );
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
    }
    eprintln!(
        "streamer-vm: booting {} ({} disk {}; {:?} boot; TCG, so allow a minute)",
        image.dir.display(),
        if fresh { "new" } else { "existing" },
        args.disk.display(),
        boot
    );
    let mut appliance = spec.start(&image)?;
    // Lines typed here go to the appliance's serial console (the maintenance menu).
    if let Some(mut input) = appliance.vm.console.take_input() {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if input.write_all(format!("{line}\n").as_bytes()).is_err() {
                    break;
                }
            }
        });
    }
    let ready = {
        let deadline = std::time::Instant::now() + Duration::from_secs(args.ready_timeout);
        loop {
            if STOP.load(Ordering::SeqCst) {
                break None;
            }
            match appliance.wait_ready(Duration::from_secs(1)) {
                Ok(r) => break Some(r),
                Err(e)
                    if std::time::Instant::now() < deadline
                        && format!("{e}").contains("timed out") => {}
                Err(e) => return Err(e),
            }
        }
    };
    if let Some(r) = ready {
        let url = appliance.api_url();
        let login = match &r.password {
            Some(p) => format!("Administrator / {p}  (first-start password; change it)"),
            None => {
                "Administrator with the password you set (reset it from the console menu, item 4)"
                    .into()
            }
        };
        println!(
            "\n==> Streamer is ready at {url}  (guest: ready {:.1} s after the kernel started; \
             {:.1} s since QEMU started)\n\
             ==> Log in:  {login}\n\
             ==> Browser: {url}/  (the web console; the certificate is self-signed)\n\
             ==> Try:     curl -k {url}/rest/version\n\
             ==>          {} login --url {url} --insecure\n\
             ==> Console: press Enter here for the maintenance menu; Ctrl-C powers the appliance off.\n",
            r.guest_seconds,
            r.host_seconds,
            args.cli.display()
        );
    }
    while !STOP.load(Ordering::SeqCst) {
        if let Ok(status) = appliance.vm.wait_exit(Duration::from_millis(200)) {
            eprintln!("streamer-vm: the appliance stopped ({status})");
            return Ok(());
        }
    }
    eprintln!("\nstreamer-vm: powering the appliance off (ACPI power button)...");
    let status = appliance
        .vm
        .power_down(Duration::from_secs(90))
        .context("clean power-off")?;
    eprintln!("streamer-vm: powered off ({status})");
    Ok(())
}
