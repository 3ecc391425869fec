//! Builds the Streamer appliance image from inputs: Debian's kernel package, our static
//! binaries and busybox-static become an initramfs, a UKI and a GPT disk image with A/B
//! system slots. The same inputs give the same bytes: every timestamp comes from
//! SOURCE_DATE_EPOCH (default 0), ids from a seed. What varies is only the inputs — notably
//! which kernel `linux-image-amd64` resolves to on the day (pass `--kernel-deb` to pin it).
//! It must never touch the host's block devices or need root.

pub mod cpio;
pub mod disk;
pub mod initramfs;
pub mod kernel;
pub mod layout;
pub mod uki;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("kernel")]
    Kernel(#[from] kernel::KernelError),
    #[error("initramfs")]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error("UKI")]
    Uki(#[from] uki::UkiError),
    #[error("disk image")]
    Disk(#[from] disk::DiskError),
    #[error("{0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("etcd: {0}")]
    Etcd(String),
}

/// Everything the builder takes.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub init: PathBuf,
    pub binaries: Vec<PathBuf>,
    /// Multi-call binaries (a link in /usr/bin for each name `BINARY --list` prints).
    pub multicall: Vec<PathBuf>,
    pub busybox: PathBuf,
    /// Dynamically linked host programs shipped with their libraries (e2fsprogs).
    pub host_programs: Vec<PathBuf>,
    /// A kernel .deb to use instead of fetching Debian's current one.
    pub kernel_deb: Option<PathBuf>,
    pub cache: PathBuf,
    pub stub: PathBuf,
    pub out: PathBuf,
    pub cmdline: String,
    pub modules: Vec<String>,
    pub seed: String,
    pub source_date_epoch: u32,
    pub sizes_mib: [u64; 3],
    pub version: String,
    /// etcd, for pair members: gzip-compressed onto the ESP (not in the initramfs: a single
    /// appliance's boot does not unpack it). Its shared libraries must be among the host
    /// programs' (the initramfs has those).
    pub etcd: Option<PathBuf>,
}

/// What the builder made.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub kernel: kernel::Kernel,
    pub initramfs: PathBuf,
    pub uki: PathBuf,
    pub image: PathBuf,
    pub initramfs_info: initramfs::Initramfs,
    pub disk: disk::DiskInfo,
}

/// The steps, reported to the progress callback as they start.
/// The appliance's kernel command line: the console on the serial port (and the screen),
/// quiet, reboot 10 s after a panic, and no boot-time crypto self-tests (see `--cmdline`):
/// `cryptomgr.notests` for the algorithms, and `initcall_blacklist=crypto_kdf108_init` for
/// the SP800-108 KDF's, which asks for `hmac(sha256)` and so waits for a module helper
/// until the whole initramfs is unpacked, holding up every later initcall (0.4–0.6 s under
/// TCG); the KDF itself stays usable.
pub const DEFAULT_CMDLINE: &str = "console=tty0 console=ttyS0,115200 quiet panic=10 \
     cryptomgr.notests initcall_blacklist=crypto_kdf108_init";

pub const STEPS: [&str; 4] = ["kernel", "initramfs", "UKI", "disk image"];

/// /etc/os-release and the UKI's .osrel.
pub fn os_release(version: &str) -> String {
    format!(
        "NAME=\"Streamer\"\nID=streamer\nVERSION_ID={version}\nPRETTY_NAME=\"Streamer {version}\"\n"
    )
}

/// The default appliance configuration on the config partition.
pub const DEFAULT_CONFIG: &str = "\
# Streamer appliance configuration: `key = value`; the kernel command line's streamer.KEY=VALUE
# overrides it. Keys: hostname, mgmt (dhcp | static:ADDR/PREFIX[,gw=IP][,dns=IP]...),
# mgmt_if, deploy (static:ADDR/PREFIX), deploy_if, data, console, debug, aslr (auto | on | off;
# auto: off only under QEMU's software emulation).
# The serial console's maintenance menu edits this file.
hostname = streamer
mgmt = dhcp
";

/// Fetches or unpacks the kernel.
pub fn get_kernel(opts: &BuildOptions) -> Result<kernel::Kernel, BuildError> {
    Ok(match &opts.kernel_deb {
        Some(deb) => {
            let name = deb
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut k =
                kernel::unpack(deb, &opts.cache.join(format!("{name}.local")).join("root"))?;
            k.package = name;
            k
        }
        None => kernel::fetch(&opts.cache)?,
    })
}

fn write(p: &Path, data: &[u8]) -> Result<(), BuildError> {
    std::fs::write(p, data).map_err(|e| BuildError::Io(p.into(), e))
}

/// Runs every step; `step(i)` is called as step `i` of [`STEPS`] starts.
/// etcd gzip-compressed (fixed header: the same input gives the same bytes), after checking
/// that it needs no shared library the initramfs lacks.
fn etcd_blob(etcd: &Path, host_programs: &[PathBuf]) -> Result<Vec<u8>, BuildError> {
    let mut present = std::collections::BTreeSet::new();
    for p in host_programs {
        present.extend(initramfs::shared_libraries(p)?);
    }
    for lib in initramfs::shared_libraries(etcd)? {
        if !present.contains(&lib) {
            return Err(BuildError::Etcd(format!(
                "{} needs {}, which the image does not carry",
                etcd.display(),
                lib.display()
            )));
        }
    }
    let bytes = std::fs::read(etcd).map_err(|e| BuildError::Io(etcd.to_path_buf(), e))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &bytes)
        .map_err(|e| BuildError::Io(etcd.to_path_buf(), e))?;
    gz.finish()
        .map_err(|e| BuildError::Io(etcd.to_path_buf(), e))
}

pub fn build(opts: &BuildOptions, step: &dyn Fn(usize)) -> Result<BuildOutput, BuildError> {
    std::fs::create_dir_all(&opts.out).map_err(|e| BuildError::Io(opts.out.clone(), e))?;
    step(0);
    let kernel = get_kernel(opts)?;
    step(1);
    let osrel = os_release(&opts.version);
    let info = initramfs::build(&initramfs::InitramfsSpec {
        init: opts.init.clone(),
        binaries: opts.binaries.clone(),
        multicall: opts.multicall.clone(),
        busybox: opts.busybox.clone(),
        host_programs: opts.host_programs.clone(),
        modules: Some(initramfs::Modules {
            dir: kernel.modules_dir.clone(),
            release: kernel.release.clone(),
            names: opts.modules.clone(),
        }),
        os_release: osrel.clone(),
        mtime: opts.source_date_epoch,
    })?;
    let initrd = opts.out.join("initramfs.cpio");
    write(&initrd, &info.cpio)?;
    // For direct kernel boot (QEMU -kernel/-initrd/-append), beside the UKI that holds them.
    let vmlinuz = opts.out.join("vmlinuz");
    std::fs::copy(&kernel.vmlinuz, &vmlinuz).map_err(|e| BuildError::Io(vmlinuz.clone(), e))?;
    write(&opts.out.join("cmdline"), opts.cmdline.as_bytes())?;
    step(2);
    let uki = opts.out.join("streamer.efi");
    uki::build(
        &uki::UkiSpec {
            stub: opts.stub.clone(),
            kernel: kernel.vmlinuz.clone(),
            initrd: initrd.clone(),
            cmdline: opts.cmdline.clone(),
            os_release: osrel,
            timestamp: opts.source_date_epoch,
        },
        &uki,
    )?;
    step(3);
    let image = opts.out.join("streamer.img");
    let mut esp_files = Vec::new();
    if let Some(etcd) = &opts.etcd {
        esp_files.push((
            appliance_layout::ESP_ETCD_PATH.to_string(),
            etcd_blob(etcd, &opts.host_programs)?,
        ));
    }
    let disk = disk::build(
        &disk::DiskSpec {
            uki_a: uki.clone(),
            uki_b: uki.clone(),
            config: DEFAULT_CONFIG.into(),
            seed: opts.seed.clone(),
            sizes_mib: opts.sizes_mib,
            esp_files,
        },
        &image,
    )?;
    Ok(BuildOutput {
        kernel,
        initramfs: initrd,
        uki,
        image,
        initramfs_info: info,
        disk,
    })
}
