//! The daemons of one appliance in one binary, for the pair harness (as the appliance's
//! `streamer` multi-call binary, which the tests cannot name from here):
//! `pair-node clusterd|deployd|storaged ARGS...`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprintln!("pair-node: name a daemon: clusterd, deployd or storaged");
        return ExitCode::from(2);
    }
    let name = args[0].clone();
    args[0] = name.clone();
    match name.to_str() {
        Some("clusterd") => clusterd::cli::main(args),
        Some("deployd") => deployd::daemon::main(args),
        Some("storaged") => storaged::cli::main(args),
        _ => {
            eprintln!("pair-node: unknown daemon {name:?}");
            ExitCode::from(2)
        }
    }
}
