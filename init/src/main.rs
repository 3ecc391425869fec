//! `streamer-init`: PID 1 of the appliance, or `--dry-run` to print the boot plan.
//!
//! Exit status (only outside PID 1): 0 plan printed; 1 the plan could not be built;
//! 2 bad usage or not PID 1.

use std::process::ExitCode;

use streamer_init::{dry_run, pid1, sys};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if sys::is_pid1() {
        // The kernel passes unknown command-line words as arguments: ignore them.
        pid1::run();
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

fn print_chain(e: &dyn std::error::Error) {
    let mut msg = format!("streamer-init: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}
