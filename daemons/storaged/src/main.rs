//! `storaged`: the daemon (`storaged serve`) and its operator commands (`storaged volume ...`,
//! `storaged export ...`), which drive a running daemon over its control socket.
//!
//! Exit status: 0 success; 1 the daemon refused or failed the request; 2 bad usage;
//! 3 storaged could not be reached or a local file could not be used; 4 `verify` found
//! problems.

fn main() -> std::process::ExitCode {
    storaged::cli::main(std::env::args_os())
}
