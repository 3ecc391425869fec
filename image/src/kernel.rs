//! Debian's kernel: resolves `linux-image-amd64` to the versioned package, downloads it with
//! `apt-get download` into a cache keyed by package and version, and unpacks it with
//! `dpkg-deb -x`, then indexes the modules with `depmod -b` (kmod). dpkg-deb is always present on Debian and follows the .deb format wherever
//! it goes (member order, compression), which a hand-written ar + tar + xz reader would not.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("running {0}")]
    Spawn(String, #[source] std::io::Error),
    #[error("{0} failed: {1}")]
    Failed(String, String),
    #[error("cannot resolve {0} to a versioned kernel package")]
    Resolve(String),
    #[error("{0}: no vmlinuz-* and lib/modules/<version>/ inside")]
    Layout(PathBuf),
    #[error("cache {0}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// The meta package that always points at Debian's current amd64 kernel.
pub const META_PACKAGE: &str = "linux-image-amd64";

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// e.g. `linux-image-6.1.0-56-amd64`
    pub package: String,
    /// e.g. `6.1.192-2`
    pub package_version: String,
    /// e.g. `6.1.0-56-amd64` (the directory under lib/modules)
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String, KernelError> {
    let name = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| KernelError::Spawn(name.clone(), e))?;
    if !out.status.success() {
        return Err(KernelError::Failed(
            name,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Picks the versioned kernel from `apt-cache depends linux-image-amd64` output.
pub fn parse_depends(out: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64") && *p != META_PACKAGE)
        .map(str::to_string)
}

/// The `Version:` field of `apt-cache show --no-all-versions` output.
pub fn parse_version(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
}

/// Resolves the meta package to (versioned package, its candidate version).
pub fn resolve(meta: &str) -> Result<(String, String), KernelError> {
    let deps = run(Command::new("apt-cache").args(["depends", meta]))?;
    let package = parse_depends(&deps).ok_or_else(|| KernelError::Resolve(meta.into()))?;
    let show = run(Command::new("apt-cache").args(["show", "--no-all-versions", &package]))?;
    let version = parse_version(&show).ok_or_else(|| KernelError::Resolve(package.clone()))?;
    Ok((package, version))
}

/// Downloads (unless cached) and unpacks Debian's current kernel into `cache`.
pub fn fetch(cache: &Path) -> Result<Kernel, KernelError> {
    let (package, version) = resolve(META_PACKAGE)?;
    let dir = cache.join(format!("{package}_{version}"));
    let deb_dir = dir.join("deb");
    std::fs::create_dir_all(&deb_dir).map_err(|e| KernelError::Io(deb_dir.clone(), e))?;
    let deb = find_deb(&deb_dir)?;
    let deb = match deb {
        Some(d) => d,
        None => {
            run(Command::new("apt-get")
                .args(["download", "-q", &format!("{package}={version}")])
                .current_dir(&deb_dir))?;
            find_deb(&deb_dir)?.ok_or_else(|| KernelError::Layout(deb_dir.clone()))?
        }
    };
    let mut k = unpack(&deb, &dir.join("root"))?;
    k.package = package;
    k.package_version = version;
    Ok(k)
}

fn find_deb(dir: &Path) -> Result<Option<PathBuf>, KernelError> {
    let rd = std::fs::read_dir(dir).map_err(|e| KernelError::Io(dir.into(), e))?;
    Ok(rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb")))
}

/// Unpacks a kernel .deb (once: an existing `root` with a complete marker is reused).
pub fn unpack(deb: &Path, root: &Path) -> Result<Kernel, KernelError> {
    let marker = root.join(".unpacked");
    if !marker.exists() {
        if root.exists() {
            std::fs::remove_dir_all(root).map_err(|e| KernelError::Io(root.into(), e))?;
        }
        std::fs::create_dir_all(root).map_err(|e| KernelError::Io(root.into(), e))?;
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
        // The package carries no modules.dep: its postinst runs depmod on the target.
        let (release, _, _) = locate_unindexed(root)?;
        run(Command::new("depmod").arg("-b").arg(root).arg(&release))?;
        std::fs::write(&marker, b"").map_err(|e| KernelError::Io(marker.clone(), e))?;
    }
    locate(root).map(|(release, vmlinuz, modules_dir)| Kernel {
        package: String::new(),
        package_version: String::new(),
        release,
        vmlinuz,
        modules_dir,
    })
}

fn locate_unindexed(root: &Path) -> Result<(String, PathBuf, PathBuf), KernelError> {
    locate_with(root, "modules.order")
}

/// Finds `boot/vmlinuz-<release>` and the matching modules directory (lib/ or usr/lib/).
pub fn locate(root: &Path) -> Result<(String, PathBuf, PathBuf), KernelError> {
    locate_with(root, "modules.dep")
}

fn locate_with(root: &Path, index: &str) -> Result<(String, PathBuf, PathBuf), KernelError> {
    let boot = root.join("boot");
    let rd = std::fs::read_dir(&boot).map_err(|_| KernelError::Layout(root.into()))?;
    let mut kernels: Vec<_> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    kernels.sort();
    for release in kernels {
        for lib in ["lib/modules", "usr/lib/modules"] {
            let m = root.join(lib).join(&release);
            if m.join(index).is_file() {
                return Ok((release.clone(), boot.join(format!("vmlinuz-{release}")), m));
            }
        }
    }
    Err(KernelError::Layout(root.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache() {
        let deps = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            parse_depends(deps).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(parse_depends("linux-image-amd64\n"), None);
        let show = "Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\n";
        assert_eq!(parse_version(show).as_deref(), Some("6.1.192-2"));
    }

    #[test]
    fn locates_kernel_and_modules() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("boot")).unwrap();
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-9-amd64"), b"k").unwrap();
        let m = t.path().join("lib/modules/6.1.0-9-amd64");
        std::fs::create_dir_all(&m).unwrap();
        assert!(locate(t.path()).is_err(), "modules.dep missing");
        std::fs::write(m.join("modules.dep"), b"").unwrap();
        let (rel, vmlinuz, dir) = locate(t.path()).unwrap();
        assert_eq!(rel, "6.1.0-9-amd64");
        assert_eq!(vmlinuz, t.path().join("boot/vmlinuz-6.1.0-9-amd64"));
        assert_eq!(dir, m);
    }
}
