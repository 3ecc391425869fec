//! Network configuration: loopback, the management interface (static, or DHCP through
//! busybox `udhcpc` whose events come back to us as `streamer-init dhcp-event`), and the
//! deployment (enclosure) interface, always static.
//!
//! Addresses, links and routes are set with rtnetlink (the `rtnetlink` crate, on a
//! current-thread tokio runtime that lives only for the call): no `ip` binary, no ioctls.
//! The choice of interfaces and the text of resolv.conf are pure functions, tested apart.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::config::{Config, Mgmt};

/// Where the DHCP hook records the management address for the ready line and the console.
pub const MGMT_ADDRESS_FILE: &str = "/run/streamer/mgmt-address";
/// The script udhcpc runs; it hands every event back to `/init dhcp-event`.
pub const UDHCPC_SCRIPT: &str = "/run/streamer/udhcpc.script";
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// How long one configuration step (a handful of netlink requests) may take. The kernel
/// answers in microseconds; a step that takes this long is stuck, and failing it lets the
/// caller (boot, or udhcpc through its hook) go on or try again instead of hanging.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("no network interface named {0}")]
    NoSuchLink(String),
    #[error("cannot start the netlink runtime")]
    Runtime(#[source] std::io::Error),
    #[error("writing {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("DHCP event {action:?}: {reason}")]
    DhcpEvent { action: String, reason: String },
    #[error("netlink: no answer from the kernel within {} s", NETLINK_TIMEOUT.as_secs())]
    Timeout,
}

fn nl(e: rtnetlink::Error) -> NetError {
    NetError::Netlink(e.to_string())
}

/// One interface's static IP configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
}

/// Ethernet devices (ARPHRD_ETHER = 1) backed by hardware (`device` link), in the order of
/// their place on the bus (the resolved `device` path: PCI domain, bus, slot, function),
/// not of their names. The kernel names NICs in the order their drivers probe them, and
/// init loads drivers side by side: on a server with an igb and an ixgbe port, or two
/// virtio NICs, `eth0` can be either from one boot to the next, while the bus order stays
/// that of the hardware (the first port is the management port on every boot).
pub fn ethernet_interfaces(sys_class_net: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, String)> = dir
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "1"))
        .filter_map(|e| {
            let device = std::fs::canonicalize(e.path().join("device")).ok()?;
            Some((device, e.file_name().to_string_lossy().into_owned()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name).collect()
}

/// The management and deployment interfaces: the configured names, or the first and
/// second Ethernet devices.
pub fn choose_interfaces(config: &Config, ethernet: &[String]) -> (Option<String>, Option<String>) {
    let mgmt = config.mgmt_if.clone().or_else(|| ethernet.first().cloned());
    let deploy = config.deploy.as_ref().and_then(|_| {
        config
            .deploy_if
            .clone()
            .or_else(|| ethernet.iter().find(|n| Some(*n) != mgmt.as_ref()).cloned())
    });
    (mgmt, deploy)
}

/// resolv.conf for these servers (empty list: an explanatory comment only).
pub fn resolv_conf(dns: &[IpAddr], domain: Option<&str>) -> String {
    let mut s = String::from("# written by streamer-init\n");
    if let Some(d) = domain {
        s.push_str(&format!("search {d}\n"));
    }
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

/// Writes a file through a temporary and a rename, so readers never see half of it.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), NetError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| NetError::Write(path.to_owned(), e))
}

/// Runs `f` with a netlink handle on a runtime that lives for this call only, for at most
/// NETLINK_TIMEOUT.
fn with_handle<T>(f: impl AsyncFnOnce(Handle) -> Result<T, NetError>) -> Result<T, NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(NetError::Runtime)?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Runtime)?;
        let task = tokio::spawn(conn);
        let r = tokio::time::timeout(NETLINK_TIMEOUT, f(handle)).await;
        task.abort();
        r.unwrap_or(Err(NetError::Timeout))
    })
}

async fn link_index(h: &Handle, name: &str) -> Result<u32, NetError> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(NetError::NoSuchLink(name.to_owned())),
        // The kernel answers ENODEV for an unknown name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
            Err(NetError::NoSuchLink(name.to_owned()))
        }
        Err(e) => Err(nl(e)),
    }
}

async fn set_up(h: &Handle, index: u32) -> Result<(), NetError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl)
}

async fn flush_ipv4(h: &Handle, index: u32) -> Result<(), NetError> {
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl)?;
    for a in addrs {
        if a.header.family == rtnetlink::packet_route::AddressFamily::Inet {
            h.address().del(a).execute().await.map_err(nl)?;
        }
    }
    Ok(())
}

async fn default_route(h: &Handle, index: u32, gw: IpAddr) -> Result<(), NetError> {
    let msg = match gw {
        IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(index)
            .gateway(g)
            .build(),
        IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
            .output_interface(index)
            .gateway(g)
            .build(),
    };
    h.route().add(msg).replace().execute().await.map_err(nl)
}

/// Brings `lo` up (the kernel gives it 127.0.0.1/8 and ::1 itself).
pub fn loopback_up() -> Result<(), NetError> {
    with_handle(async |h| {
        let i = link_index(&h, "lo").await?;
        set_up(&h, i).await
    })
}

/// Brings a link up without addresses (DHCP is about to run on it).
pub fn link_up(name: &str) -> Result<(), NetError> {
    with_handle(async |h| {
        let i = link_index(&h, name).await?;
        set_up(&h, i).await
    })
}

/// Replaces the interface's IPv4 addresses with `ip`, brings it up and, with a gateway,
/// replaces the default route.
pub fn apply_static(name: &str, ip: &StaticIp) -> Result<(), NetError> {
    with_handle(async |h| {
        let i = link_index(&h, name).await?;
        flush_ipv4(&h, i).await?;
        h.address()
            .add(i, ip.address, ip.prefix_len)
            .replace()
            .execute()
            .await
            .map_err(nl)?;
        set_up(&h, i).await?;
        if let Some(gw) = ip.gateway {
            default_route(&h, i, gw).await?;
        }
        Ok(())
    })
}

/// Removes every IPv4 address of the interface (DHCP `deconfig`), keeping it up.
pub fn deconfigure(name: &str) -> Result<(), NetError> {
    with_handle(async |h| {
        let i = link_index(&h, name).await?;
        flush_ipv4(&h, i).await?;
        set_up(&h, i).await
    })
}

/// What the network looks like after boot-time configuration, for the ready line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPlan {
    pub mgmt_if: Option<String>,
    pub deploy_if: Option<String>,
    /// Start the `dhcp` service on the management interface.
    pub dhcp: bool,
}

/// Boot-time configuration: waits up to `wait` for the interfaces to appear, then sets
/// loopback, a static management address (or prepares DHCP) and the deployment address.
/// Problems are reported through `say` and never stop the boot: the console must stay
/// usable to fix them.
pub fn configure(config: &Config, wait: Duration, say: &dyn Fn(&str)) -> NetPlan {
    if let Err(e) = loopback_up() {
        say(&format!("network: loopback: {e}"));
    }
    let wanted = 1 + usize::from(config.deploy.is_some());
    let deadline = Instant::now() + wait;
    let mut eth = ethernet_interfaces(Path::new("/sys/class/net"));
    while eth.len() < wanted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        eth = ethernet_interfaces(Path::new("/sys/class/net"));
    }
    let (mgmt_if, deploy_if) = choose_interfaces(config, &eth);
    let mut plan = NetPlan {
        mgmt_if: mgmt_if.clone(),
        deploy_if: deploy_if.clone(),
        dhcp: false,
    };
    match (&mgmt_if, &config.mgmt) {
        (None, _) => say("network: no Ethernet interface found; management network not configured"),
        (Some(name), Mgmt::Dhcp) => {
            if let Err(e) = link_up(name) {
                say(&format!("network: {name}: {e}"));
            }
            plan.dhcp = true;
            say(&format!("network: {name}: DHCP"));
        }
        (
            Some(name),
            Mgmt::Static {
                address,
                prefix_len,
                gateway,
                dns,
            },
        ) => {
            let ip = StaticIp {
                address: *address,
                prefix_len: *prefix_len,
                gateway: *gateway,
            };
            match apply_static(name, &ip) {
                Ok(()) => say(&format!("network: {name}: {address}/{prefix_len}")),
                Err(e) => say(&format!("network: {name}: {e}")),
            }
            if let Err(e) = write_atomic(Path::new(RESOLV_CONF), &resolv_conf(dns, None)) {
                say(&format!("network: {e}"));
            }
            let _ = write_atomic(Path::new(MGMT_ADDRESS_FILE), &format!("{address}\n"));
        }
    }
    if let Some(Mgmt::Static {
        address,
        prefix_len,
        gateway,
        ..
    }) = &config.deploy
    {
        match &deploy_if {
            None => say("network: deployment network configured but no second interface"),
            Some(name) => {
                let ip = StaticIp {
                    address: *address,
                    prefix_len: *prefix_len,
                    gateway: *gateway,
                };
                match apply_static(name, &ip) {
                    Ok(()) => say(&format!(
                        "network: {name}: {address}/{prefix_len} (deployment)"
                    )),
                    Err(e) => say(&format!("network: {name}: {e}")),
                }
            }
        }
    }
    plan
}

/// The udhcpc hook script: every event goes back to init's `dhcp-event` command.
pub fn udhcpc_script(init: &str) -> String {
    format!("#!/bin/sh\nexec {init} dhcp-event \"$@\"\n")
}

/// A lease as udhcpc describes it in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub interface: String,
    pub ip: StaticIp,
    pub dns: Vec<IpAddr>,
    pub domain: Option<String>,
}

fn mask_to_prefix(mask: &str) -> Option<u8> {
    if let Ok(bits) = mask.parse::<u8>() {
        return (bits <= 32).then_some(bits);
    }
    let m: Ipv4Addr = mask.parse().ok()?;
    let n = u32::from(m);
    // A netmask is ones then zeros.
    (n.leading_ones() + n.trailing_zeros() == 32).then_some(n.leading_ones() as u8)
}

/// Reads a lease from udhcpc's variables (`interface`, `ip`, `mask` or `subnet`, `router`,
/// `dns`, `domain`).
pub fn parse_lease(env: &BTreeMap<String, String>) -> Result<Lease, String> {
    let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let interface = get("interface")
        .ok_or("no `interface` variable")?
        .to_owned();
    let address: Ipv4Addr = get("ip")
        .ok_or("no `ip` variable")?
        .parse()
        .map_err(|_| "`ip` is not an IPv4 address".to_owned())?;
    let prefix_len = match (get("mask"), get("subnet")) {
        (Some(m), _) | (None, Some(m)) => {
            mask_to_prefix(m).ok_or_else(|| format!("bad netmask {m:?}"))?
        }
        (None, None) => 24,
    };
    let gateway = get("router")
        .and_then(|r| r.split_whitespace().next())
        .map(|r| r.parse::<IpAddr>().map_err(|_| format!("bad router {r:?}")))
        .transpose()?;
    let dns = get("dns")
        .map(|d| {
            d.split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(Lease {
        interface,
        ip: StaticIp {
            address: IpAddr::V4(address),
            prefix_len,
            gateway,
        },
        dns,
        domain: get("domain").map(str::to_owned),
    })
}

/// `streamer-init dhcp-event ACTION`: applies what udhcpc learnt. `files` is where
/// resolv.conf and the address file go (the real paths on the appliance).
pub fn dhcp_event(
    action: &str,
    env: &BTreeMap<String, String>,
    resolv: &Path,
    address_file: &Path,
) -> Result<String, NetError> {
    let bad = |reason: String| NetError::DhcpEvent {
        action: action.to_owned(),
        reason,
    };
    match action {
        "deconfig" => {
            let name = env
                .get("interface")
                .ok_or_else(|| bad("no `interface` variable".into()))?;
            deconfigure(name)?;
            let _ = std::fs::remove_file(address_file);
            Ok(format!("{name}: deconfigured"))
        }
        "bound" | "renew" => {
            let lease = parse_lease(env).map_err(bad)?;
            apply_static(&lease.interface, &lease.ip)?;
            write_atomic(resolv, &resolv_conf(&lease.dns, lease.domain.as_deref()))?;
            write_atomic(address_file, &format!("{}\n", lease.ip.address))?;
            Ok(format!(
                "{}: {}/{} by DHCP",
                lease.interface, lease.ip.address, lease.ip.prefix_len
            ))
        }
        "leasefail" | "nak" => Ok(format!("no lease ({action})")),
        other => Err(bad(format!("unknown event {other:?}"))),
    }
}

/// The DHCP client that ran this hook, when it is udhcpc: `ppid` is our parent process
/// and `proc` the proc filesystem. Anything else (a shell, a test) is left alone.
pub fn dhcp_client(proc: &Path, ppid: u32) -> Option<u32> {
    let comm = std::fs::read_to_string(proc.join(ppid.to_string()).join("comm")).ok()?;
    (ppid > 1 && comm.trim() == "udhcpc").then_some(ppid)
}

/// The management address, once known (static at boot, or the DHCP lease).
pub fn mgmt_address(file: &Path) -> Option<String> {
    let s = std::fs::read_to_string(file).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Settings};

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn interfaces_are_ethernet_devices_in_bus_order_whatever_their_names() {
        let d = tempfile::tempdir().unwrap();
        let (net, devices) = (d.path().join("net"), d.path().join("devices"));
        std::fs::create_dir(&net).unwrap();
        // eth0 was probed last but sits in a later slot; eth10 sorts before eth2 by name.
        for (name, ty, slot) in [
            ("lo", "772", None),
            ("eth0", "1", Some("0000:00:05.0/virtio3")),
            ("eth1", "1", Some("0000:00:02.0/virtio1")),
            ("eth10", "1", Some("0000:00:1c.0/0000:03:00.0")),
            ("eth2", "1", Some("0000:00:1c.0/0000:02:00.1")),
            ("br0", "1", None),
        ] {
            let p = net.join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("type"), format!("{ty}\n")).unwrap();
            if let Some(slot) = slot {
                let dev = devices.join("pci0000:00").join(slot);
                std::fs::create_dir_all(&dev).unwrap();
                std::os::unix::fs::symlink(&dev, p.join("device")).unwrap();
            }
        }
        assert_eq!(ethernet_interfaces(&net), ["eth1", "eth0", "eth2", "eth10"]);
        assert!(ethernet_interfaces(&d.path().join("missing")).is_empty());
    }

    #[test]
    fn management_first_deployment_second_unless_named() {
        let eth = vec!["eth0".to_owned(), "eth1".to_owned()];
        let c = config::load("", Settings::default()).unwrap();
        assert_eq!(choose_interfaces(&c, &eth), (Some("eth0".into()), None));
        let c = config::load("streamer.deploy=static:10.10.0.1/24", Settings::default()).unwrap();
        assert_eq!(
            choose_interfaces(&c, &eth),
            (Some("eth0".into()), Some("eth1".into()))
        );
        let c = config::load(
            "streamer.deploy=static:10.10.0.1/24 streamer.mgmt_if=eth1",
            Settings::default(),
        )
        .unwrap();
        assert_eq!(
            choose_interfaces(&c, &eth),
            (Some("eth1".into()), Some("eth0".into()))
        );
        assert_eq!(choose_interfaces(&c, &[]), (Some("eth1".into()), None));
    }

    #[test]
    fn leases_from_udhcpc_variables() {
        let l = parse_lease(&env(&[
            ("interface", "eth0"),
            ("ip", "10.0.2.15"),
            ("subnet", "255.255.255.0"),
            ("router", "10.0.2.2 10.0.2.1"),
            ("dns", "10.0.2.3 1.1.1.1"),
            ("domain", "lab"),
        ]))
        .unwrap();
        assert_eq!(l.ip.prefix_len, 24);
        assert_eq!(l.ip.gateway, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(l.dns.len(), 2);
        assert_eq!(
            resolv_conf(&l.dns, l.domain.as_deref()),
            "# written by streamer-init\nsearch lab\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
        let l = parse_lease(&env(&[
            ("interface", "eth0"),
            ("ip", "10.1.2.3"),
            ("mask", "16"),
        ]))
        .unwrap();
        assert_eq!((l.ip.prefix_len, l.ip.gateway), (16, None));
        let e = parse_lease(&env(&[("interface", "eth0"), ("ip", "x")])).unwrap_err();
        assert!(e.contains("not an IPv4"), "{e}");
        let e = parse_lease(&env(&[
            ("interface", "eth0"),
            ("ip", "10.0.0.2"),
            ("subnet", "255.0.255.0"),
        ]))
        .unwrap_err();
        assert!(e.contains("netmask"), "{e}");
        assert_eq!(mask_to_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_to_prefix("255.255.255.255"), Some(32));
    }

    #[test]
    fn unknown_events_are_errors_and_failures_are_not() {
        let d = tempfile::tempdir().unwrap();
        let (r, a) = (d.path().join("resolv"), d.path().join("addr"));
        assert!(dhcp_event("leasefail", &env(&[]), &r, &a).is_ok());
        let e = dhcp_event("bogus", &env(&[]), &r, &a).unwrap_err();
        assert!(e.to_string().contains("unknown event"), "{e}");
        let e = dhcp_event("bound", &env(&[("interface", "eth0")]), &r, &a).unwrap_err();
        assert!(e.to_string().contains("no `ip`"), "{e}");
        assert!(!r.exists() && !a.exists());
    }

    #[test]
    fn only_a_udhcpc_parent_is_the_dhcp_client() {
        let d = tempfile::tempdir().unwrap();
        for (pid, comm) in [("1", "init"), ("40", "udhcpc"), ("41", "sh")] {
            std::fs::create_dir(d.path().join(pid)).unwrap();
            std::fs::write(d.path().join(pid).join("comm"), format!("{comm}\n")).unwrap();
        }
        assert_eq!(dhcp_client(d.path(), 40), Some(40));
        assert_eq!(dhcp_client(d.path(), 41), None);
        assert_eq!(dhcp_client(d.path(), 1), None);
        assert_eq!(dhcp_client(d.path(), 42), None);
    }

    #[test]
    fn udhcpc_script_hands_events_to_init() {
        assert_eq!(
            udhcpc_script("/init"),
            "#!/bin/sh\nexec /init dhcp-event \"$@\"\n"
        );
    }
}
