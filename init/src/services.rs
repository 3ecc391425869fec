//! The appliance's services: what init starts, with which command line, after what, and
//! how it knows each one is ready. Pure data and a dependency sort; the runtime that
//! spawns them is `supervisor::runtime`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use appliance_layout::{
    ADMIN_PASSWORD_RESET, DEPLOYD_STATE, MIN_PASSWORD_LEN, RUN_DIR, STORAGED_SOCKET,
};
use appliance_layout::{
    API_PORT, CLUSTER_SUMMARY, CLUSTERD_DATA, CLUSTERD_SOCKET, ISCSI_PORT, LOCAL_NBD_ADDRESS,
    NBD_PORT, STORAGED_DATA,
};

/// How init learns that a started service is ready for its dependents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready as soon as it has been started.
    Started,
    /// Ready once this Unix socket exists.
    Socket(PathBuf),
    /// Ready once a TCP connection to this address succeeds.
    Tcp(SocketAddr),
}

impl Readiness {
    /// Probes once; cheap enough for the main loop.
    pub fn probe(&self) -> bool {
        match self {
            Readiness::Started => true,
            Readiness::Socket(p) => p.exists(),
            Readiness::Tcp(addr) => {
                std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_millis(200))
                    .is_ok()
            }
        }
    }
}

/// PID 1 writes the services' state here whenever it changes (the console shows it).
pub const STATUS_FILE: &str = "/run/streamer/services";
/// Where the daemons' output goes: one file per service, readable from the console menu.
pub const LOG_DIR: &str = "/run/log";

/// Where a service's standard streams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// init's own (the console); stdin is /dev/null.
    Inherit,
    /// stdout and stderr appended to this file (rotated once at start when large); stdin is
    /// /dev/null.
    Log(PathBuf),
    /// stdin, stdout and stderr on this terminal, which becomes the controlling terminal of
    /// a new session (the console menu on the serial port).
    Terminal(PathBuf),
}

impl Output {
    /// The log file of the daemon `name`.
    pub fn log(name: &str) -> Self {
        Output::Log(Path::new(LOG_DIR).join(format!("{name}.log")))
    }
}

/// One supervised service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// Program and arguments; `argv[0]` is an absolute path.
    pub argv: Vec<String>,
    /// Services that must be ready before this one starts.
    pub after: Vec<String>,
    /// Services that must have been started before this one starts, but need not be ready:
    /// this one waits for them itself, so its own start-up runs beside theirs.
    pub after_started: Vec<String>,
    pub readiness: Readiness,
    pub output: Output,
}

impl ServiceSpec {
    pub fn command_line(&self) -> String {
        self.argv.join(" ")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("service `{service}` needs `{missing}`, which is not defined")]
    Missing { service: String, missing: String },
    #[error("service dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The appliance's services, in start order. `bin_dir` holds the daemons; clusterd is
/// included only when its binary is there, and etcd (`clusterd etcd`) only on a `paired`
/// appliance (its data partition holds the pair's description), where deployd also waits for
/// clusterd; a single appliance's deployd starts beside storaged, as fast as before. `deploy_ip` is the appliance's address on the deployment network, given
/// to compute modules as the address of their boot volumes; `plan_run_minutes` the
/// wall-clock limit of a plan run, if set.
pub fn appliance_services(
    bin_dir: &Path,
    deploy_ip: Option<std::net::IpAddr>,
    plan_run_minutes: Option<u32>,
    paired: bool,
) -> Vec<ServiceSpec> {
    let bin = |name: &str| bin_dir.join(name).to_string_lossy().into_owned();
    let clusterd_present = Path::new(&bin("clusterd")).exists();
    let nbd_listen = SocketAddr::from(([0, 0, 0, 0], NBD_PORT)).to_string();
    let iscsi_listen = SocketAddr::from(([0, 0, 0, 0], ISCSI_PORT)).to_string();
    let api_listen = SocketAddr::from(([0, 0, 0, 0], API_PORT)).to_string();
    let mut storaged_args = args(&[
        "serve",
        "--data-dir",
        STORAGED_DATA,
        "--nbd-listen",
        &nbd_listen,
        "--iscsi-listen",
        &iscsi_listen,
        "--control",
        STORAGED_SOCKET,
    ]);
    if clusterd_present && paired {
        // Every write to an OS volume is replicated to the other node, as the pair's
        // description (written by pairing beside it) says.
        storaged_args.extend(args(&["--pair-dir", CLUSTERD_DATA]));
    }
    let mut services = vec![ServiceSpec {
        name: "storaged".into(),
        argv: [bin("storaged")].into_iter().chain(storaged_args).collect(),
        after: vec![],
        after_started: vec![],
        readiness: Readiness::Socket(PathBuf::from(STORAGED_SOCKET)),
        output: Output::log("storaged"),
    }];
    // deployd opens its state, loads its certificate and starts its runtime while storaged
    // starts; it waits for storaged's control socket itself before it listens.
    let mut deployd_after = vec![];
    if clusterd_present && paired {
        // The pair's etcd member, its data on the data partition.
        services.push(ServiceSpec {
            name: "etcd".into(),
            argv: [bin("clusterd")]
                .into_iter()
                .chain(args(&["etcd", "--state-dir", CLUSTERD_DATA]))
                .collect(),
            after: vec![],
            after_started: vec![],
            readiness: Readiness::Started,
            output: Output::log("etcd"),
        });
    }
    if clusterd_present {
        let mut clusterd_args = args(&[
            "--state-dir",
            CLUSTERD_DATA,
            "--control",
            CLUSTERD_SOCKET,
            "--summary",
            CLUSTER_SUMMARY,
        ]);
        if paired {
            // clusterd decides which node serves each group of OS volumes; storaged obeys.
            clusterd_args.extend(args(&["--storaged", STORAGED_SOCKET]));
        }
        services.push(ServiceSpec {
            name: "clusterd".into(),
            argv: [bin("clusterd")].into_iter().chain(clusterd_args).collect(),
            after: vec![],
            after_started: vec![],
            readiness: Readiness::Socket(PathBuf::from(CLUSTERD_SOCKET)),
            output: Output::log("clusterd"),
        });
        // Only a pair member's deployd depends on clusterd (its store, its role): a single
        // appliance's starts beside storaged, as before there was a clusterd.
        if paired {
            deployd_after.push("clusterd".into());
        }
    }
    let mut deployd_args = args(&[
        "--state-dir",
        DEPLOYD_STATE,
        "--listen",
        &api_listen,
        "--storaged",
        STORAGED_SOCKET,
        "--nbd",
        LOCAL_NBD_ADDRESS,
        "--admin-password-reset",
        ADMIN_PASSWORD_RESET,
        "--power-control-pid",
        "1",
    ]);
    if clusterd_present && paired {
        deployd_args.push("--clusterd".into());
        deployd_args.push(CLUSTERD_SOCKET.into());
    }
    if let Some(ip) = deploy_ip {
        deployd_args.push("--boot-nbd".into());
        deployd_args.push(SocketAddr::new(ip, NBD_PORT).to_string());
    }
    if let Some(minutes) = plan_run_minutes {
        deployd_args.push("--plan-run-minutes".into());
        deployd_args.push(minutes.to_string());
    }
    services.push(ServiceSpec {
        name: "deployd".into(),
        argv: [bin("deployd")].into_iter().chain(deployd_args).collect(),
        after: deployd_after,
        after_started: vec!["storaged".into()],
        readiness: Readiness::Tcp(SocketAddr::from(([127, 0, 0, 1], API_PORT))),
        output: Output::log("deployd"),
    });
    services
}

/// The DHCP client of the management interface: busybox `udhcpc` in the foreground,
/// retrying for ever, handing each event to `script` (which calls `streamer-init
/// dhcp-event`). Nothing waits for it: the API listens on every address. It asks four
/// times, 2 s apart, then pauses 5 s (udhcpc's own default pause is 20 s): an appliance
/// whose rack switch or DHCP server comes up after it gets its address within seconds.
pub fn dhcp_service(interface: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        name: "dhcp".into(),
        argv: args(&[
            "/sbin/udhcpc",
            "-f",
            "-i",
            interface,
            "-s",
            script,
            "-t",
            "4",
            "-T",
            "2",
            "-A",
            "5",
            "-x",
            "hostname:streamer",
        ]),
        after: vec![],
        after_started: vec![],
        readiness: Readiness::Started,
        output: Output::log("dhcp"),
    }
}

/// The maintenance menu on the serial console: `/init console` on `tty`, restarted when
/// the operator leaves it (or it dies), independent of the daemons.
pub fn console_service(init: &str, tty: &Path) -> ServiceSpec {
    ServiceSpec {
        name: "console".into(),
        argv: args(&[init, "console"]),
        after: vec![],
        after_started: vec![],
        readiness: Readiness::Started,
        output: Output::Terminal(tty.to_owned()),
    }
}

/// Sorts services so that each comes after everything in its `after` and `after_started`
/// lists, keeping the
/// given order where dependencies allow. Stop order is the reverse.
pub fn start_order(services: &[ServiceSpec]) -> Result<Vec<ServiceSpec>, GraphError> {
    fn visit(
        i: usize,
        services: &[ServiceSpec],
        stack: &mut Vec<usize>,
        done: &mut [bool],
        out: &mut Vec<ServiceSpec>,
    ) -> Result<(), GraphError> {
        if done[i] {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|&s| s == i) {
            let mut cycle: Vec<String> = stack[pos..]
                .iter()
                .map(|&s| services[s].name.clone())
                .collect();
            cycle.push(services[i].name.clone());
            return Err(GraphError::Cycle(cycle));
        }
        stack.push(i);
        for dep in services[i].after.iter().chain(&services[i].after_started) {
            let j = services
                .iter()
                .position(|s| &s.name == dep)
                .ok_or_else(|| GraphError::Missing {
                    service: services[i].name.clone(),
                    missing: dep.clone(),
                })?;
            visit(j, services, stack, done, out)?;
        }
        stack.pop();
        done[i] = true;
        out.push(services[i].clone());
        Ok(())
    }
    let mut done = vec![false; services.len()];
    let mut out = Vec::with_capacity(services.len());
    for i in 0..services.len() {
        visit(i, services, &mut Vec::new(), &mut done, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, after: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            argv: vec![format!("/bin/{name}")],
            after: args(after),
            after_started: vec![],
            readiness: Readiness::Started,
            output: Output::Inherit,
        }
    }

    fn names(v: &[ServiceSpec]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn storaged_before_deployd_with_the_documented_command_lines() {
        let dir = tempfile::tempdir().unwrap();
        let services = start_order(&appliance_services(
            Path::new("/usr/bin"),
            None,
            None,
            false,
        ))
        .unwrap();
        assert_eq!(names(&services), ["storaged", "deployd"]);
        assert_eq!(
            services[0].command_line(),
            "/usr/bin/storaged serve --data-dir /data/storaged --nbd-listen 0.0.0.0:10809 \
             --iscsi-listen 0.0.0.0:3260 --control /run/streamer/storaged.sock"
        );
        assert_eq!(
            services[1].command_line(),
            "/usr/bin/deployd --state-dir /data/deployd --listen 0.0.0.0:443 \
             --storaged /run/streamer/storaged.sock --nbd 127.0.0.1:10809 \
             --admin-password-reset /run/streamer/admin-password-reset --power-control-pid 1"
        );
        assert_eq!(
            services[1].output,
            Output::Log("/run/log/deployd.log".into())
        );
        assert_eq!(
            services[0].readiness,
            Readiness::Socket(STORAGED_SOCKET.into())
        );
        assert_eq!(
            services[1].readiness,
            Readiness::Tcp("127.0.0.1:443".parse().unwrap())
        );
        // No clusterd binary in an empty directory either.
        assert_eq!(
            names(&appliance_services(dir.path(), None, None, false)),
            ["storaged", "deployd"]
        );
    }

    #[test]
    fn clusterd_runs_and_only_a_pair_members_deployd_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clusterd"), "").unwrap();
        let services =
            appliance_services(dir.path(), Some("10.77.0.2".parse().unwrap()), None, false);
        let order = start_order(&services).unwrap();
        let deployd = order.iter().find(|s| s.name == "deployd").unwrap();
        // A single appliance's deployd does not wait for clusterd (the boot stays as fast).
        assert!(deployd.after.is_empty(), "{:?}", deployd.after);
        assert_eq!(deployd.after_started, ["storaged"]);
        // Compute modules are told the deployment-network address of the NBD service.
        assert!(
            deployd
                .command_line()
                .ends_with("--power-control-pid 1 --boot-nbd 10.77.0.2:10809"),
            "{}",
            deployd.command_line()
        );
        // A paired appliance runs its etcd member, and its deployd starts once clusterd
        // answers and asks it for the pair's store and its role.
        let paired = appliance_services(dir.path(), None, None, true);
        let order = start_order(&paired).unwrap();
        assert_eq!(
            names(&order).last().copied(),
            Some("deployd"),
            "{:?}",
            names(&order)
        );
        let deployd = order.iter().find(|s| s.name == "deployd").unwrap();
        assert_eq!(deployd.after, ["clusterd"]);
        assert!(
            deployd
                .command_line()
                .ends_with("--power-control-pid 1 --clusterd /run/streamer/clusterd.sock"),
            "{}",
            deployd.command_line()
        );
        // Its storaged replicates as the pair's description says, and clusterd drives it.
        let storaged = paired.iter().find(|s| s.name == "storaged").unwrap();
        assert!(
            storaged
                .command_line()
                .ends_with("--pair-dir /data/clusterd"),
            "{}",
            storaged.command_line()
        );
        let clusterd = paired.iter().find(|s| s.name == "clusterd").unwrap();
        assert!(
            clusterd
                .command_line()
                .ends_with("--storaged /run/streamer/storaged.sock"),
            "{}",
            clusterd.command_line()
        );
        let etcd = paired.iter().find(|s| s.name == "etcd").unwrap();
        assert!(
            etcd.command_line()
                .ends_with("clusterd etcd --state-dir /data/clusterd"),
            "{}",
            etcd.command_line()
        );
        // The appliance's plan-run limit reaches deployd.
        let services = appliance_services(dir.path(), None, Some(45), false);
        let deployd = services.iter().find(|s| s.name == "deployd").unwrap();
        assert!(
            deployd.command_line().ends_with("--plan-run-minutes 45"),
            "{}",
            deployd.command_line()
        );
    }

    #[test]
    fn dhcp_client_runs_udhcpc_with_our_hook() {
        let d = dhcp_service("eth0", "/run/streamer/udhcpc.script");
        assert_eq!(
            d.command_line(),
            "/sbin/udhcpc -f -i eth0 -s /run/streamer/udhcpc.script -t 4 -T 2 -A 5 -x hostname:streamer"
        );
        assert!(d.after.is_empty());
    }

    #[test]
    fn dependencies_reorder_and_errors_are_named() {
        let order = start_order(&[spec("c", &["b"]), spec("b", &["a"]), spec("a", &[])]).unwrap();
        assert_eq!(names(&order), ["a", "b", "c"]);
        assert_eq!(
            start_order(&[spec("deployd", &["storaged"])]).unwrap_err(),
            GraphError::Missing {
                service: "deployd".into(),
                missing: "storaged".into()
            }
        );
        let err = start_order(&[spec("a", &["b"]), spec("b", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "service dependency cycle: a -> b -> a");
    }

    #[test]
    fn readiness_probes_observe_sockets_and_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let r = Readiness::Socket(sock.clone());
        assert!(!r.probe());
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(r.probe());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(Readiness::Tcp(addr).probe());
        drop(listener);
        assert!(!Readiness::Tcp(addr).probe());
    }
}
