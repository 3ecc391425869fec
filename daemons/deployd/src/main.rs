//! `deployd`: the REST API daemon (see `deployd::daemon`).
//!
//! Exit status: 0 after a clean shutdown; 1 if it cannot start (state directory, certificate,
//! address in use) or the server fails.

fn main() -> std::process::ExitCode {
    deployd::daemon::main(std::env::args_os())
}
