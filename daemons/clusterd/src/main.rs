//! The `clusterd` program (see `clusterd::cli`).

fn main() -> std::process::ExitCode {
    clusterd::cli::main(std::env::args_os())
}
