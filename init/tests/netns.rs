//! Network configuration against the real kernel, inside network namespaces this test
//! creates: loopback and a static address set through rtnetlink, and a DHCP lease from
//! busybox `udhcpd` applied by our `dhcp-event` hook under busybox `udhcpc`.
//! Needs root, iproute2 and busybox; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use streamer_init::net::{self, StaticIp};

/// Namespaces removed (and daemons killed) even when an assertion fails.
struct Netns {
    names: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    let bb = Path::new("/bin/busybox").exists();
    if !(root && ip && bb) {
        eprintln!("skipped: needs root ({root}), iproute2 ({ip}) and busybox-static ({bb})");
    }
    root && ip && bb
}

/// Runs `f` on a thread that has entered the namespace `name`.
fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let fd = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: a valid namespace fd; setns changes only this thread's namespace.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn loopback_and_static_address_through_rtnetlink() {
    if !usable() {
        return;
    }
    let ns = format!("strm-init-st-{}", std::process::id());
    let _guard = Netns {
        names: vec![ns.clone()],
        children: vec![],
    };
    ip(&["netns", "add", &ns]);
    // No dummy driver on every host: one end of a veth pair serves as well.
    ip(&[
        "-n", &ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]);
    assert!(!ip_out(&["-n", &ns, "link", "show", "lo"]).contains("UP,"));
    in_netns(&ns, || net::loopback_up().unwrap());
    assert!(ip_out(&["-n", &ns, "link", "show", "lo"]).contains("UP,"));

    let cfg = StaticIp {
        address: "10.98.0.5".parse().unwrap(),
        prefix_len: 24,
        gateway: Some("10.98.0.1".parse().unwrap()),
    };
    in_netns(&ns, move || net::apply_static("d0", &cfg).unwrap());
    assert!(ip_out(&["-n", &ns, "addr", "show", "d0"]).contains("inet 10.98.0.5/24"));
    let routes = ip_out(&["-n", &ns, "route"]);
    assert!(routes.contains("default via 10.98.0.1 dev d0"), "{routes}");

    // Applying another address replaces the first one, and the default route with it.
    let cfg = StaticIp {
        address: "10.97.0.6".parse().unwrap(),
        prefix_len: 16,
        gateway: Some("10.97.0.1".parse().unwrap()),
    };
    in_netns(&ns, move || net::apply_static("d0", &cfg).unwrap());
    let addrs = ip_out(&["-n", &ns, "addr", "show", "d0"]);
    assert!(addrs.contains("inet 10.97.0.6/16"), "{addrs}");
    assert!(!addrs.contains("10.98.0.5"), "{addrs}");
    assert!(ip_out(&["-n", &ns, "route"]).contains("default via 10.97.0.1 dev d0"));

    let e = in_netns(&ns, || net::link_up("nosuch0").unwrap_err());
    assert!(
        e.to_string().contains("no network interface named nosuch0"),
        "{e}"
    );
}

/// A DHCP server (busybox udhcpd on 10.99.0.1) in one namespace, and a client namespace
/// whose `vcli` is cabled to it; `tag` keeps the names of concurrent tests apart.
struct DhcpLab {
    _guard: Netns,
    cli: String,
    dir: tempfile::TempDir,
}

impl DhcpLab {
    fn new(tag: &str) -> DhcpLab {
        let pid = std::process::id();
        let (srv, cli) = (format!("strm-{tag}-s-{pid}"), format!("strm-{tag}-c-{pid}"));
        let mut guard = Netns {
            names: vec![srv.clone(), cli.clone()],
            children: vec![],
        };
        ip(&["netns", "add", &srv]);
        ip(&["netns", "add", &cli]);
        ip(&[
            "-n", &srv, "link", "add", "vsrv", "type", "veth", "peer", "name", "vcli", "netns",
            &cli,
        ]);
        ip(&["-n", &srv, "addr", "add", "10.99.0.1/24", "dev", "vsrv"]);
        ip(&["-n", &srv, "link", "set", "vsrv", "up"]);
        ip(&["-n", &cli, "link", "set", "vcli", "up"]);

        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("udhcpd.conf");
        std::fs::write(
            &conf,
            format!(
                "start 10.99.0.100\nend 10.99.0.110\ninterface vsrv\nlease_file {}\n\
                 pidfile {}\noption subnet 255.255.255.0\noption router 10.99.0.1\n\
                 option dns 10.99.0.53\noption domain lab.example\n",
                dir.path().join("leases").display(),
                dir.path().join("udhcpd.pid").display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("leases"), "").unwrap();
        guard.children.push(
            Command::new("ip")
                .args(["netns", "exec", &srv, "/bin/busybox", "udhcpd", "-f"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        DhcpLab {
            _guard: guard,
            cli,
            dir,
        }
    }

    /// The udhcpc script: our hook, writing resolv.conf and the address file at the paths
    /// given. Returns the script's path.
    fn hook(&self, resolv: &Path, address_file: &Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = self.dir.path().join("hook");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec {} dhcp-event --resolv {} --address-file {} \"$@\"\n",
                env!("CARGO_BIN_EXE_streamer-init"),
                resolv.display(),
                address_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    /// busybox udhcpc by the name the appliance runs it under (`/sbin/udhcpc`, a link to
    /// busybox: the hook knows its client by that name), in the client namespace.
    fn udhcpc(&self) -> Command {
        let link = self.dir.path().join("udhcpc");
        if !link.exists() {
            std::os::unix::fs::symlink("/bin/busybox", &link).unwrap();
        }
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.cli]).arg(link);
        c
    }
}

#[test]
fn dhcp_lease_from_udhcpd_is_applied_by_the_hook() {
    if !usable() {
        return;
    }
    let lab = DhcpLab::new("dh");
    let resolv = lab.dir.path().join("resolv.conf");
    let addr = lab.dir.path().join("mgmt-address");
    let script = lab.hook(&resolv, &addr);
    // -q: quit once bound; -n: fail instead of retrying for ever; -T 1 -t 10: 1 s apart.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = lab
        .udhcpc()
        .args(["-f", "-q", "-n", "-T", "1", "-t", "10", "-i", "vcli", "-s"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(Instant::now() < deadline, "udhcpc took too long");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "udhcpc failed:\n{log}");
    assert!(log.contains("dhcp: vcli: 10.99.0.1"), "{log}");

    let leased = std::fs::read_to_string(&addr).unwrap();
    let leased = leased.trim();
    assert!(leased.starts_with("10.99.0.1"), "{leased}");
    let cli = &lab.cli;
    let shown = ip_out(&["-n", cli, "addr", "show", "vcli"]);
    assert!(shown.contains(&format!("inet {leased}/24")), "{shown}");
    assert!(ip_out(&["-n", cli, "route"]).contains("default via 10.99.0.1 dev vcli"));
    let resolv = std::fs::read_to_string(&resolv).unwrap();
    assert!(resolv.contains("nameserver 10.99.0.53"), "{resolv}");
    assert!(resolv.contains("search lab.example"), "{resolv}");
}

#[test]
fn a_lease_the_hook_cannot_apply_ends_udhcpc_so_init_starts_it_anew() {
    if !usable() {
        return;
    }
    let lab = DhcpLab::new("df");
    // The address file cannot be written: `bound` fails after the address is set.
    let addr = lab.dir.path().join("missing-dir").join("mgmt-address");
    let script = lab.hook(&lab.dir.path().join("resolv.conf"), &addr);
    // As the appliance runs it: in the foreground, retrying for ever. Only the hook can
    // end it here; the test gives up on it after 60 s.
    let mut child = lab
        .udhcpc()
        .args(["-f", "-T", "1", "-t", "10", "-i", "vcli", "-s"])
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ended.is_some(),
        "udhcpc still ran, bound without its address file:\n{log}"
    );
    assert!(log.contains("writing"), "the hook says what failed:\n{log}");
    assert!(
        log.contains("the lease is not applied: restarting the DHCP client"),
        "{log}"
    );
    assert!(!addr.exists());
}
