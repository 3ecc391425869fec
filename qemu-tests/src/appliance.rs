//! The Streamer appliance as a VM: booted from the built image (`make image`) either by
//! direct kernel boot (the image's kernel, initramfs and command line) or from its GPT disk
//! under OVMF, with a copy-on-write disk over the image, the API forwarded to a port on
//! 127.0.0.1, a virtio RNG, and an i6300esb watchdog.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::qemu::{Vm, VmSpec, free_port};

/// How the firmware finds the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads vmlinuz and the initramfs itself (fast; no firmware).
    Direct,
    /// OVMF boots the UKI from the disk's EFI system partition, as hardware does.
    Uefi,
}

/// The files `make image` writes.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    pub dir: PathBuf,
}

impl ImageFiles {
    /// `$STREAMER_IMAGE_DIR`, else the workspace's `target/streamer-image/out`.
    pub fn locate() -> Result<ImageFiles> {
        let dir = match std::env::var_os("STREAMER_IMAGE_DIR") {
            Some(d) => PathBuf::from(d),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/streamer-image/out"),
        };
        let files = ImageFiles { dir };
        for f in [
            files.disk(),
            files.kernel(),
            files.initramfs(),
            files.cmdline_file(),
        ] {
            if !f.exists() {
                bail!(
                    "{} is missing: build the appliance image first (`make image`), or set \
                     STREAMER_IMAGE_DIR to where it is",
                    f.display()
                );
            }
        }
        Ok(files)
    }

    pub fn disk(&self) -> PathBuf {
        self.dir.join("streamer.img")
    }
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio")
    }
    fn cmdline_file(&self) -> PathBuf {
        self.dir.join("cmdline")
    }
    pub fn cmdline(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.cmdline_file())?
            .trim()
            .to_owned())
    }
}

/// Creates `disk` as a qcow2 overlay of the image, `size` large (the appliance grows its
/// data partition into the rest). An existing disk is kept: it is the appliance's state.
pub fn create_disk(image: &ImageFiles, disk: &Path, size: &str) -> Result<bool> {
    if disk.exists() {
        return Ok(false);
    }
    if let Some(dir) = disk.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let backing = std::fs::canonicalize(image.disk())?;
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&backing)
        .arg(disk)
        .arg(size)
        .output()
        .context("cannot run qemu-img (apt-get install qemu-utils)")?;
    if !out.status.success() {
        bail!("qemu-img create: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(true)
}

/// How to start the appliance VM.
#[derive(Debug)]
pub struct ApplianceSpec {
    pub name: String,
    pub boot: Boot,
    pub disk: PathBuf,
    /// Host port forwarded to the API (443 in the guest).
    pub api_port: u16,
    /// Extra kernel command-line words (direct boot only).
    pub append: String,
    pub dir: PathBuf,
    pub echo: bool,
    pub memory_mib: u32,
    /// Virtual CPUs (2 unless a scenario that runs several appliance VMs on the host's two
    /// cores asks for fewer).
    pub cpus: u32,
    /// A tap on the enclosure network for the second NIC (the deployment network).
    pub deploy_tap: Option<std::os::fd::OwnedFd>,
    /// The disk on the machine's SATA (AHCI) controller and an Intel e1000e management NIC,
    /// as on a server, instead of virtio ones.
    pub server_hardware: bool,
    /// A tap on the enclosure network for the management NIC instead of user-mode
    /// networking (a pair's virtual IP needs a real L2 segment); the API is then reached on
    /// the enclosure network, not through `api_port`.
    pub mgmt_tap: Option<std::os::fd::OwnedFd>,
    /// The management NIC's MAC address (VMs on one bridge need distinct ones).
    pub mgmt_mac: Option<String>,
    /// Raw files attached read-only as further virtio disks, after the appliance's own
    /// (init looks for its partitions by name, so it leaves them alone).
    pub extra_disks: Vec<PathBuf>,
}

impl ApplianceSpec {
    /// A spec with a free API port, working in `dir`, with its disk there.
    pub fn new(name: &str, boot: Boot, dir: &Path) -> Result<ApplianceSpec> {
        Ok(ApplianceSpec {
            name: name.to_owned(),
            boot,
            disk: dir.join(format!("{name}.qcow2")),
            api_port: free_port()?,
            append: String::new(),
            dir: dir.to_owned(),
            echo: false,
            memory_mib: 2048,
            cpus: 2,
            deploy_tap: None,
            server_hardware: false,
            mgmt_tap: None,
            mgmt_mac: None,
            extra_disks: Vec::new(),
        })
    }

    /// Starts the VM; a deployment tap is handed to QEMU (so a spec starts one VM with it).
    pub fn start(&mut self, image: &ImageFiles) -> Result<Appliance> {
        let mut spec = VmSpec::new(&self.name, &self.dir);
        spec.memory_mib = self.memory_mib;
        spec.cpus = self.cpus;
        spec.echo = self.echo;
        spec.arg("-drive")
            .arg(format!(
                "if=none,id=disk0,format=qcow2,file={}",
                self.disk.display()
            ))
            .arg("-device")
            .arg(if self.server_hardware {
                // q35's ICH9 SATA controller is bus `ide`.
                "ide-hd,drive=disk0,bus=ide.0,bootindex=1"
            } else {
                "virtio-blk-pci,drive=disk0,bootindex=1"
            })
            .arg("-device")
            .arg("virtio-rng-pci")
            .arg("-device")
            .arg("i6300esb")
            .arg("-action")
            .arg("watchdog=reset");
        for (i, disk) in self.extra_disks.iter().enumerate() {
            spec.arg("-drive").arg(format!(
                "if=virtio,id=extra{i},format=raw,readonly=on,file={}",
                disk.display()
            ));
        }
        let netdev = match self.mgmt_tap.take() {
            Some(tap) => format!("tap,id=mgmt,fd={}", spec.pass_fd(tap)),
            None => format!("user,id=mgmt,hostfwd=tcp:127.0.0.1:{}-:443", self.api_port),
        };
        let nic = if self.server_hardware {
            "e1000e"
        } else {
            "virtio-net-pci"
        };
        let mac = self
            .mgmt_mac
            .as_ref()
            .map(|m| format!(",mac={m}"))
            .unwrap_or_default();
        spec.arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg(format!("{nic},netdev=mgmt{mac}"));
        // The deployment NIC after the management one: the appliance takes its first
        // Ethernet device for management, the second for deployment.
        if let Some(tap) = self.deploy_tap.take() {
            let fd = spec.pass_fd(tap);
            spec.arg("-netdev")
                .arg(format!("tap,id=deploy,fd={fd}"))
                .arg("-device")
                .arg("virtio-net-pci,netdev=deploy");
        }

        match self.boot {
            Boot::Direct => {
                let cmdline = format!("{} {}", image.cmdline()?, self.append);
                spec.arg("-kernel")
                    .arg(image.kernel().display().to_string())
                    .arg("-initrd")
                    .arg(image.initramfs().display().to_string())
                    .arg("-append")
                    .arg(cmdline.trim().to_owned());
            }
            Boot::Uefi => {
                spec.uefi()?;
            }
        }
        Ok(Appliance {
            vm: spec.start()?,
            api_port: self.api_port,
        })
    }
}

/// What the console said when the appliance became ready.
#[derive(Debug, Clone)]
pub struct Ready {
    pub hostname: String,
    pub address: String,
    /// The guest kernel's clock at the ready line.
    pub guest_seconds: f64,
    /// QEMU start → ready line, on this machine's clock.
    pub host_seconds: f64,
    /// The first-start Administrator password, when the console showed one.
    pub password: Option<String>,
}

/// A running appliance VM.
#[derive(Debug)]
pub struct Appliance {
    pub vm: Vm,
    pub api_port: u16,
}

impl Appliance {
    /// Waits for `streamer: HOST ADDRESS ready` and init's timing line.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Ready> {
        let c = self
            .vm
            .console
            .expect(r"streamer: (\S+) (\S+) ready\r?\n", timeout)?;
        let host_seconds = self.vm.started.elapsed().as_secs_f64();
        let t = self
            .vm
            .console
            .expect(r"ready after ([0-9.]+) s", Duration::from_secs(10))?;
        let password = self
            .vm
            .console
            .text()
            .lines()
            .find_map(|l| l.split("first login: Administrator / ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned);
        Ok(Ready {
            hostname: c[1].clone(),
            address: c[2].clone(),
            guest_seconds: t[1].parse()?,
            host_seconds,
            password,
        })
    }

    /// After a `no-address` ready line: waits for the line init prints when the lease
    /// comes. When none comes, the error holds the DHCP client's log and the links.
    pub fn wait_for_address(&mut self, timeout: Duration) -> Result<String> {
        let c = &mut self.vm.console;
        if let Ok(m) = c.expect(r"streamer: \S+ (\d+\.\d+\.\d+\.\d+) ready\r?\n", timeout) {
            return Ok(m[1].clone());
        }
        let diagnosis = self.open_shell().and_then(|()| {
            self.shell(
                "tail -n 40 /run/log/dhcp.log; ip addr; ip route; ps",
                Duration::from_secs(60),
            )
        });
        match diagnosis {
            Ok(d) => bail!("no DHCP lease within {timeout:?} of the ready line:\n{d}"),
            Err(e) => bail!("no DHCP lease within {timeout:?}, and no shell to see why: {e:#}"),
        }
    }

    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// Opens the console's root shell (from the maintenance menu) and waits for its prompt.
    pub fn open_shell(&mut self) -> Result<()> {
        let c = &mut self.vm.console;
        c.send("\n")?;
        c.expect(r"choice> ", Duration::from_secs(30))?;
        c.send("9\n")?;
        c.expect(r"streamer# ", Duration::from_secs(30))?;
        Ok(())
    }

    /// Runs a command in the open root shell; returns its output (between the command and
    /// the next prompt, without the echo).
    pub fn shell(&mut self, command: &str, timeout: Duration) -> Result<String> {
        self.vm.console.shell(command, r"streamer# ", timeout)
    }

    /// Leaves the shell and the menu.
    pub fn close_shell(&mut self) -> Result<()> {
        let c = &mut self.vm.console;
        c.send("exit\n")?;
        c.expect(r"choice> ", Duration::from_secs(10))?;
        c.send("0\n")?;
        c.expect(r"Press Enter", Duration::from_secs(10))?;
        Ok(())
    }
}

/// GET over HTTPS (the appliance's certificate is self-signed): status and body.
pub fn https_get(url: &str) -> Result<(u16, String)> {
    let client = crate::api::insecure_client(Duration::from_secs(20))?;
    let r = client
        .get(url)
        .header("X-API-Version", "2020")
        .send()
        .with_context(|| format!("GET {url}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text()?))
}

/// Logs in to the API (`POST /rest/login-sessions`); the HTTP status.
pub fn login_status(base: &str, user: &str, password: &str) -> Result<u16> {
    let client = crate::api::insecure_client(Duration::from_secs(30))?;
    let body = serde_json::json!({ "userName": user, "password": password });
    let r = client
        .post(format!("{base}/rest/login-sessions"))
        .header("X-API-Version", "2020")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .with_context(|| format!("POST {base}/rest/login-sessions"))?;
    Ok(r.status().as_u16())
}
