//! `streamer-init --dry-run`: builds the boot plan from a given command line, configuration
//! file and module tree and prints it, without touching the system. Works as any user.

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError};
use crate::modules::alias::{Aliases, device_modaliases};
use crate::modules::{DepError, ModuleDb};
use crate::plan::{self, Plan};
use crate::services::GraphError;

pub const USAGE: &str = "\
usage: streamer-init --dry-run [--cmdline TEXT | --cmdline-file PATH] [--config PATH]
                     [--modules-dir DIR] [--bin-dir DIR]
Prints the mounts, modules and services PID 1 would run. Defaults: /proc/cmdline,
/config/streamer.conf, /lib/modules/$(uname -r), /usr/bin.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunArgs {
    pub cmdline: Option<String>,
    pub cmdline_file: PathBuf,
    pub config: PathBuf,
    pub modules_dir: Option<PathBuf>,
    pub bin_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("modules in {}", dir.display())]
    Modules {
        dir: PathBuf,
        #[source]
        source: DepError,
    },
    #[error(transparent)]
    Services(#[from] GraphError),
}

/// Parses the arguments after the program name; `Ok(None)` when `--dry-run` is absent.
pub fn parse_args(args: &[String]) -> Result<Option<DryRunArgs>, DryRunError> {
    let mut dry = false;
    let mut out = DryRunArgs {
        cmdline: None,
        cmdline_file: PathBuf::from("/proc/cmdline"),
        config: PathBuf::from(config::CONFIG_FILE),
        modules_dir: None,
        bin_dir: PathBuf::from("/usr/bin"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| DryRunError::Usage(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--dry-run" => dry = true,
            "--cmdline" => out.cmdline = Some(value()?),
            "--cmdline-file" => out.cmdline_file = value()?.into(),
            "--config" => out.config = value()?.into(),
            "--modules-dir" => out.modules_dir = Some(value()?.into()),
            "--bin-dir" => out.bin_dir = value()?.into(),
            other => return Err(DryRunError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    Ok(dry.then_some(out))
}

fn read(path: &Path) -> Result<String, DryRunError> {
    std::fs::read_to_string(path).map_err(|source| DryRunError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The module tree of the running kernel.
pub fn default_modules_dir() -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Path::new("/lib/modules").join(release.trim())
}

/// Builds the plan the arguments describe.
pub fn plan(args: &DryRunArgs) -> Result<Plan, DryRunError> {
    let cmdline = match &args.cmdline {
        Some(c) => c.clone(),
        None => read(&args.cmdline_file)?,
    };
    let file = config::read_file(&args.config)?;
    let config = config::load(&cmdline, file)?;
    let dir = args.modules_dir.clone().unwrap_or_else(default_modules_dir);
    let modules = match std::fs::read_to_string(dir.join("modules.dep")) {
        Ok(dep) => {
            let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
            // With modules.alias, hardware drivers as this machine's devices need them.
            let aliases = std::fs::read_to_string(dir.join("modules.alias"))
                .ok()
                .map(|a| Aliases::parse(&a));
            let devices = device_modaliases(Path::new("/sys"));
            ModuleDb::parse(&dir, &dep)
                .map(|db| db.with_builtin(&builtin))
                .and_then(|db| {
                    plan::modules_for(&db, aliases.as_ref().map(|a| (a, devices.as_slice())))
                })
                .map_err(|source| DryRunError::Modules {
                    dir: dir.clone(),
                    source,
                })?
        }
        // No module tree: a kernel with everything built in.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => plan::Modules::default(),
        Err(source) => {
            return Err(DryRunError::Read {
                path: dir.join("modules.dep"),
                source,
            });
        }
    };
    // The interfaces are only known at boot; show the default choice.
    let (mgmt_if, _) =
        crate::net::choose_interfaces(&config, &["eth0".to_owned(), "eth1".to_owned()]);
    Ok(Plan::new(
        config,
        modules,
        &args.bin_dir,
        mgmt_if.as_deref(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_args(&[]).unwrap(), None);
        let a = parse_args(&strings(&[
            "--dry-run",
            "--cmdline",
            "quiet",
            "--bin-dir",
            "/b",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(a.cmdline.as_deref(), Some("quiet"));
        assert_eq!(a.bin_dir, Path::new("/b"));
        assert!(parse_args(&strings(&["--dry-run", "--cmdline"])).is_err());
        let e = parse_args(&strings(&["--frobnicate"])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown argument \"--frobnicate\"\nusage:")
        );
    }
}
