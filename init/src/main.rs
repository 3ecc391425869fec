//! `streamer-init`: PID 1 of the appliance, or `--dry-run` to print the boot plan;
//! `console` runs the serial-console maintenance menu, `dhcp-event` is udhcpc's hook.
//!
//! Exit status (only outside PID 1): 0 plan printed; 1 the plan could not be built;
//! 2 bad usage or not PID 1.

use std::path::Path;
use std::process::ExitCode;

use streamer_init::{dry_run, pid1, sys};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if sys::is_pid1() {
        // The kernel passes unknown command-line words as arguments: ignore them.
        pid1::run();
    }
    match args.first().map(String::as_str) {
        Some("dhcp-event") => return dhcp_event(&args[1..]),
        Some("console") => {
            return match streamer_init::console::system::main() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("streamer-init console: {e}");
                    ExitCode::from(1)
                }
            };
        }
        _ => {}
    }
    match dry_run::parse_args(&args) {
        Ok(Some(a)) => match dry_run::plan(&a) {
            Ok(plan) => {
                print!("{plan}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_chain(&e);
                ExitCode::from(1)
            }
        },
        Ok(None) => {
            eprintln!("streamer-init: not PID 1; use --dry-run to print the boot plan");
            eprintln!("{}", dry_run::USAGE);
            ExitCode::from(2)
        }
        Err(e) => {
            print_chain(&e);
            ExitCode::from(2)
        }
    }
}

/// `streamer-init dhcp-event [--resolv PATH] [--address-file PATH] ACTION`: called by
/// udhcpc (through its script) with the lease in the environment.
fn dhcp_event(args: &[String]) -> ExitCode {
    use std::path::PathBuf;
    use streamer_init::net;
    let mut resolv = PathBuf::from(net::RESOLV_CONF);
    let mut address_file = PathBuf::from(net::MGMT_ADDRESS_FILE);
    let mut action = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--resolv", Some(p)) => {
                resolv = p.into();
                it.next();
            }
            ("--address-file", Some(p)) => {
                address_file = p.into();
                it.next();
            }
            (x, _) if !x.starts_with("--") && action.is_none() => action = Some(x.to_owned()),
            _ => {
                eprintln!(
                    "usage: streamer-init dhcp-event [--resolv PATH] [--address-file PATH] ACTION"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(action) = action else {
        eprintln!(
            "streamer-init dhcp-event: no action (udhcpc passes deconfig, bound, renew, ...)"
        );
        return ExitCode::from(2);
    };
    let env = std::env::vars().collect();
    match net::dhcp_event(&action, &env, &resolv, &address_file) {
        Ok(msg) => {
            eprintln!("dhcp: {msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_chain(&e);
            // udhcpc ignores its script's status: after a lease it could not apply it
            // would sit "bound" without an address until the renewal, hours away. Ended,
            // it is started again by init, deconfigures and asks anew.
            if matches!(action.as_str(), "bound" | "renew")
                && let Some(pid) =
                    net::dhcp_client(Path::new("/proc"), std::os::unix::process::parent_id())
            {
                eprintln!("dhcp: the lease is not applied: restarting the DHCP client");
                if let Err(e) = sys::kill(pid as i32, libc::SIGTERM) {
                    eprintln!("dhcp: cannot end udhcpc (pid {pid}): {e}");
                }
            }
            ExitCode::from(1)
        }
    }
}

fn print_chain(e: &dyn std::error::Error) {
    let mut msg = format!("streamer-init: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}
