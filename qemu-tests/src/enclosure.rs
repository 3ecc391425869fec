//! An isolated enclosure network for a test: a network namespace holding a bridge (the
//! enclosure's deployment network), taps on that bridge opened for QEMU (passed to it as
//! file descriptors, so QEMU itself stays in the host namespace with its API forwarding),
//! and one namespace per compute module whose veth is on the bridge with the module's
//! deployment address: the module's QEMU runs there, so its NBD connection to the appliance
//! comes from the address the appliance exported the OS volume to. Everything is removed
//! when the [`Enclosure`] is dropped, also when a test fails.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// The deployment network's prefix length.
pub const PREFIX: u8 = 24;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A bridge in its own namespace, plus the namespaces and taps made on it.
#[derive(Debug)]
pub struct Enclosure {
    /// The namespace of the bridge (`br0`).
    pub netns: String,
    /// Namespaces made for modules (removed on drop).
    module_ns: Vec<String>,
    tag: String,
}

impl Enclosure {
    pub fn new() -> Result<Enclosure> {
        if unsafe_geteuid() != 0 {
            bail!("the enclosure network needs root (network namespaces, bridges, taps)");
        }
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let netns = format!("stenc{tag}");
        ip(&["netns", "add", &netns])?;
        let e = Enclosure {
            netns,
            module_ns: Vec::new(),
            tag,
        };
        e.exec(&["link", "add", "br0", "type", "bridge"])?;
        e.exec(&["link", "set", "br0", "up"])?;
        e.exec(&["link", "set", "lo", "up"])?;
        Ok(e)
    }

    /// `ip -n <enclosure> ARGS`.
    pub fn exec(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", self.netns.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Gives the enclosure namespace an address on the bridge (the harness's own view of
    /// the network, e.g. to ping modules).
    pub fn host_address(&self, cidr: &str) -> Result<()> {
        self.exec(&["addr", "add", cidr, "dev", "br0"])
    }

    /// Links this host (the test process's namespace) to the bridge with address `cidr`, so
    /// that the harness reaches the enclosure network directly (a pair's virtual IP, its
    /// storage addresses) and the VMs reach the harness's Redfish doubles. The link goes
    /// with the enclosure namespace.
    pub fn host_link(&self, cidr: &str) -> Result<()> {
        let (host, inside) = (format!("sth{}", self.tag), format!("sthb{}", self.tag));
        ip(&[
            "link",
            "add",
            &host,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
            "netns",
            &self.netns,
        ])?;
        self.exec(&["link", "set", &inside, "master", "br0"])?;
        self.exec(&["link", "set", &inside, "up"])?;
        ip(&["addr", "add", cidr, "dev", &host])?;
        ip(&["link", "set", &host, "up"])
    }

    /// A tap on the bridge, opened for a VM: pass the fd to QEMU as `-netdev tap,fd=N`.
    pub fn tap(&self, name: &str) -> Result<OwnedFd> {
        bridge_tap(&self.netns, name)
    }

    /// A namespace for compute module `n` whose veth is on the bridge with `cidr` (its
    /// deployment address); returns the namespace's name.
    pub fn module_namespace(&mut self, n: u32, cidr: &str) -> Result<String> {
        let ns = format!("stmod{}m{n}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.module_ns.push(ns.clone());
        let (inside, outside) = (format!("m{n}"), format!("m{}v{n}", self.tag));
        ip(&[
            "-n",
            &self.netns,
            "link",
            "add",
            &outside,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
            "netns",
            &ns,
        ])?;
        self.exec(&["link", "set", &outside, "master", "br0"])?;
        self.exec(&["link", "set", &outside, "up"])?;
        ip(&["-n", &ns, "addr", "add", cidr, "dev", &inside])?;
        ip(&["-n", &ns, "link", "set", &inside, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `f` on a thread inside the enclosure namespace (clients of addresses that only
    /// exist on the enclosure network, such as a pair's virtual IP).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let ns = File::open(format!("/run/netns/{}", self.netns))
            .with_context(|| format!("namespace {}", self.netns))?;
        std::thread::spawn(move || {
            // SAFETY: a valid namespace fd; setns changes only this thread's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in the enclosure namespace panicked"))?
    }

    /// Pings `address` from the enclosure namespace; true when it answers within `secs`.
    pub fn ping(&self, address: &str, secs: u32) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "ping", "-c", "1", "-W"])
            .arg(secs.to_string())
            .arg(address)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Enclosure {
    fn drop(&mut self) {
        for ns in self.module_ns.iter().chain(std::iter::once(&self.netns)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// A tap `name` on bridge `br0` of namespace `netns`, opened: it exists while the fd is open.
pub fn bridge_tap(netns: &str, name: &str) -> Result<OwnedFd> {
    let fd = open_tap_in(netns, name)?;
    ip(&["-n", netns, "link", "set", name, "master", "br0"])?;
    ip(&["-n", netns, "link", "set", name, "up"])?;
    Ok(fd)
}

/// Opens (creating) tap `name` inside namespace `netns`, from a thread that enters the
/// namespace, so the device lives there while the fd is usable anywhere.
fn open_tap_in(netns: &str, name: &str) -> Result<OwnedFd> {
    if name.len() >= libc::IFNAMSIZ {
        bail!("interface name {name:?} is too long");
    }
    let ns =
        File::open(format!("/run/netns/{netns}")).with_context(|| format!("namespace {netns}"))?;
    let name = name.to_owned();
    std::thread::spawn(move || -> Result<OwnedFd> {
        // SAFETY: a valid namespace fd; setns changes only this thread's namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("/dev/net/tun")?;
        // struct ifreq: the name, then the flags (a short) in the union.
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq-sized buffer we own.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            bail!("TUNSETIFF {name}: {}", std::io::Error::last_os_error());
        }
        Ok(tun.into())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the tap thread panicked"))?
}
