//! `streamer`: storaged, clusterd, deployd and streamerctl in one binary, for the appliance
//! image.
//!
//! The three programs share most of their code (deployd links storaged's library, streamerctl
//! deployd's), so one binary is 12 MB smaller than three, and the kernel copies every byte
//! of the initramfs before init runs (about 7 ms per MB under TCG). The image has
//! `/usr/bin/streamer` and symlinks `storaged`, `clusterd`, `deployd` and `streamerctl` to it; the
//! program is chosen by the name it is run as, as busybox does, or by its first argument
//! (`streamer deployd --state-dir ...`). `streamer --list` prints the names (the image
//! builder makes a link for each).
//!
//! Exit status: the program's own; 2 when no program is named.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::ExitCode;

type Program = fn(Vec<OsString>) -> ExitCode;

/// Every program in the binary, by the name it is run as.
const PROGRAMS: [(&str, Program); 4] = [
    ("storaged", storaged::cli::main),
    ("deployd", deployd::daemon::main),
    ("streamerctl", streamerctl::main),
    ("clusterd", clusterd::cli::main),
];

/// What a command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Choice {
    /// Run `PROGRAMS[index]` with these arguments (the first is the program's name).
    Run(usize, Vec<OsString>),
    List,
    Usage,
}

fn program(name: &OsStr) -> Option<usize> {
    let base = Path::new(name).file_name()?;
    PROGRAMS.iter().position(|(n, _)| OsStr::new(n) == base)
}

fn choose(args: Vec<OsString>) -> Choice {
    if let Some(i) = args.first().and_then(|a| program(a)) {
        return Choice::Run(i, args);
    }
    match args.get(1) {
        Some(a) if a == "--list" => Choice::List,
        Some(a) => match program(a) {
            Some(i) => Choice::Run(i, args[1..].to_vec()),
            None => Choice::Usage,
        },
        None => Choice::Usage,
    }
}

fn main() -> ExitCode {
    match choose(std::env::args_os().collect()) {
        Choice::Run(i, args) => (PROGRAMS[i].1)(args),
        Choice::List => {
            for (name, _) in PROGRAMS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Choice::Usage => {
            let names: Vec<&str> = PROGRAMS.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "streamer: name a program: streamer {} [ARGS...], or run it through a \
                 link of that name (streamer --list prints them)",
                names.join("|")
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_name_it_runs_as_picks_the_program() {
        assert_eq!(
            choose(args(&["/usr/bin/deployd", "--state-dir", "/data"])),
            Choice::Run(1, args(&["/usr/bin/deployd", "--state-dir", "/data"]))
        );
        assert_eq!(
            choose(args(&["storaged", "serve"])),
            Choice::Run(0, args(&["storaged", "serve"]))
        );
    }

    #[test]
    fn otherwise_the_first_argument_does_and_becomes_the_name() {
        assert_eq!(
            choose(args(&["/usr/bin/streamer", "streamerctl", "login"])),
            Choice::Run(2, args(&["streamerctl", "login"]))
        );
    }

    #[test]
    fn list_and_usage() {
        assert_eq!(choose(args(&["streamer", "--list"])), Choice::List);
        assert_eq!(choose(args(&["streamer"])), Choice::Usage);
        assert_eq!(choose(args(&["streamer", "nfsd"])), Choice::Usage);
        assert_eq!(choose(args(&[])), Choice::Usage);
        // A directory of that name is not the program.
        assert_eq!(choose(args(&["streamer", "deployd/x"])), Choice::Usage);
    }
}
