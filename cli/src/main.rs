//! `streamerctl`: the command-line client of the Streamer REST API (see the library's
//! documentation for what it does and its exit status).

fn main() -> std::process::ExitCode {
    streamerctl::main(std::env::args_os())
}
