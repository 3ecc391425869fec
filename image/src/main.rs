//! `streamer-image`: builds the appliance image; prints the image path last.
//! Exit codes: 0 built, 1 build failed, 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamer_image::{BuildOptions, STEPS, layout};

#[derive(Debug, Parser)]
#[command(version, about = "Builds the Streamer appliance image")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Builds initramfs, UKI and disk image into --out.
    Build(Box<Args>),
    /// Only fetches and unpacks Debian's current kernel; prints its release.
    FetchKernel {
        #[arg(long, default_value = "target/streamer-image/cache")]
        cache: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct Args {
    /// The PID 1 binary (/init).
    #[arg(long)]
    init: PathBuf,
    /// Binaries for /usr/bin.
    #[arg(long = "bin")]
    binaries: Vec<PathBuf>,
    /// Multi-call binaries for /usr/bin, each with a symlink for every program name it
    /// prints with `--list` (the appliance's `streamer`: storaged, clusterd, deployd, streamerctl).
    #[arg(long)]
    multicall: Vec<PathBuf>,
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// Dynamically linked programs of this machine to ship with their libraries (default:
    /// Debian's mke2fs, resize2fs and e2fsck, which init uses for the data partition).
    #[arg(long = "host-program", default_values = layout::HOST_PROGRAMS)]
    host_programs: Vec<PathBuf>,
    /// Use this kernel .deb instead of Debian's current linux-image-amd64.
    #[arg(long)]
    kernel_deb: Option<PathBuf>,
    #[arg(long, default_value = "target/streamer-image/cache")]
    cache: PathBuf,
    #[arg(long, default_value = streamer_image::uki::DEFAULT_STUB)]
    stub: PathBuf,
    #[arg(long, default_value = "target/streamer-image/out")]
    out: PathBuf,
    /// The kernel command line. `cryptomgr.notests` and
    /// `initcall_blacklist=crypto_kdf108_init` skip the kernel's boot-time self-tests of its
    /// crypto algorithms (about a second under TCG together; they matter only for FIPS,
    /// which the appliance does not claim).
    #[arg(long, default_value = streamer_image::DEFAULT_CMDLINE)]
    cmdline: String,
    /// Kernel modules (default: the appliance's list).
    #[arg(long = "module")]
    modules: Vec<String>,
    #[arg(long, default_value = "streamer")]
    seed: String,
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    source_date_epoch: u32,
    #[arg(long, default_value_t = layout::PARTITIONS[0].size_mib)]
    esp_mib: u64,
    #[arg(long, default_value_t = layout::PARTITIONS[1].size_mib)]
    config_mib: u64,
    #[arg(long, default_value_t = layout::PARTITIONS[2].size_mib)]
    data_mib: u64,
    /// etcd for pair members (Debian's etcd-server), put on the ESP.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Build without etcd: the image cannot be paired.
    #[arg(long)]
    no_etcd: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::FetchKernel { cache } => streamer_image::kernel::fetch(&cache)
            .map(|k| println!("{} {} {}", k.package, k.package_version, k.release))
            .map_err(streamer_image::BuildError::from),
        Cmd::Build(a) => build(*a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

fn build(a: Args) -> Result<(), streamer_image::BuildError> {
    let modules = if a.modules.is_empty() {
        layout::DEFAULT_MODULES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.modules
    };
    let opts = BuildOptions {
        init: a.init,
        binaries: a.binaries,
        multicall: a.multicall,
        busybox: a.busybox,
        host_programs: a.host_programs,
        kernel_deb: a.kernel_deb,
        cache: a.cache,
        stub: a.stub,
        out: a.out,
        cmdline: a.cmdline,
        modules,
        seed: a.seed,
        source_date_epoch: a.source_date_epoch,
        sizes_mib: [a.esp_mib, a.config_mib, a.data_mib],
        version: env!("CARGO_PKG_VERSION").into(),
        etcd: (!a.no_etcd).then_some(a.etcd),
    };
    let bar = indicatif::ProgressBar::new(STEPS.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{pos}/{len}] {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let out = streamer_image::build(&opts, &|i| {
        bar.set_position(i as u64);
        bar.set_message(STEPS[i]);
    })?;
    bar.finish_and_clear();
    let i = &out.initramfs_info;
    eprintln!(
        "kernel {} ({} {}); initramfs {} entries, {} KiB (uncompressed), {} modules",
        out.kernel.release,
        out.kernel.package,
        out.kernel.package_version,
        i.entries,
        i.cpio.len() / 1024,
        i.modules.len()
    );
    if !i.missing_modules.is_empty() {
        eprintln!(
            "modules not in this kernel: {}",
            i.missing_modules.join(" ")
        );
    }
    if !i.builtin_modules.is_empty() {
        eprintln!("modules built in: {}", i.builtin_modules.join(" "));
    }
    eprintln!(
        "UKI {}; built in {:.1}s",
        out.uki.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", out.image.display());
    Ok(())
}
