//! `modules.dep` (and `modules.builtin`) parsing and the load order it implies.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The module name of a path in `modules.dep`: the file name without its `.ko[.xz|.zst|.gz]`
/// extension, with `-` folded to `_` as the kernel does.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = match file.find(".ko") {
        Some(i) => &file[..i],
        None => file,
    };
    normalize(stem)
}

pub(crate) fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepError {
    #[error("modules.dep line {line}: expected `path: deps...`, found {text:?}")]
    Syntax { line: usize, text: String },
    #[error("module `{0}` is not in modules.dep")]
    Unknown(String),
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// One module tree: `/lib/modules/<release>` with its `modules.dep`.
#[derive(Debug, Clone, Default)]
pub struct ModuleDb {
    root: PathBuf,
    /// name -> (path relative to root, names of direct dependencies)
    entries: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
}

impl ModuleDb {
    /// Parses `modules.dep` text; paths in it are relative to `root`.
    pub fn parse(root: &Path, modules_dep: &str) -> Result<Self, DepError> {
        let mut entries = HashMap::new();
        for (i, line) in modules_dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or_else(|| DepError::Syntax {
                line: i + 1,
                text: line.to_owned(),
            })?;
            let path = path.trim();
            if path.is_empty() {
                return Err(DepError::Syntax {
                    line: i + 1,
                    text: line.to_owned(),
                });
            }
            let deps = deps.split_whitespace().map(module_name).collect();
            entries.insert(module_name(path), (path.to_owned(), deps));
        }
        Ok(ModuleDb {
            root: root.to_owned(),
            entries,
            builtin: HashSet::new(),
        })
    }

    /// Adds `modules.builtin`: modules compiled into the kernel, which need no loading.
    pub fn with_builtin(mut self, modules_builtin: &str) -> Self {
        self.builtin = modules_builtin
            .split_whitespace()
            .map(module_name)
            .collect();
        self
    }

    /// Reads `<root>/modules.dep` and, when present, `<root>/modules.builtin`.
    pub fn read(root: &Path) -> std::io::Result<Result<Self, DepError>> {
        let dep = std::fs::read_to_string(root.join("modules.dep"))?;
        let builtin = match std::fs::read_to_string(root.join("modules.builtin")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Self::parse(root, &dep).map(|db| db.with_builtin(&builtin)))
    }

    /// The full path of a module's file.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        self.entries
            .get(&normalize(name))
            .map(|(p, _)| self.root.join(p))
    }

    /// The files a module file needs loaded before it (its direct dependencies; built-in
    /// ones need nothing).
    pub fn deps_of(&self, file: &Path) -> Vec<PathBuf> {
        let name = module_name(&file.to_string_lossy());
        let Some((_, deps)) = self.entries.get(&name) else {
            return Vec::new();
        };
        deps.iter().filter_map(|d| self.path_of(d)).collect()
    }

    /// The files to load for `wanted`, dependencies before their users, each once.
    /// Built-in modules are skipped; an unknown module or a cycle is an error.
    pub fn load_order<S: AsRef<str>>(&self, wanted: &[S]) -> Result<Vec<PathBuf>, DepError> {
        let mut done = HashSet::new();
        let mut order = Vec::new();
        for w in wanted {
            let mut stack = Vec::new();
            self.visit(&normalize(w.as_ref()), &mut stack, &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut HashSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<(), DepError> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|s| s == name) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(name.to_owned());
            return Err(DepError::Cycle(cycle));
        }
        let Some((path, deps)) = self.entries.get(name) else {
            if self.builtin.contains(name) {
                done.insert(name.to_owned());
                return Ok(());
            }
            return Err(DepError::Unknown(name.to_owned()));
        };
        stack.push(name.to_owned());
        for d in deps {
            self.visit(d, stack, done, order)?;
        }
        stack.pop();
        done.insert(name.to_owned());
        order.push(self.root.join(path));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio.ko.xz:
kernel/drivers/net/virtio_net.ko.zst: kernel/drivers/net/net_failover.ko.zst kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.gz
kernel/net/core/failover.ko.gz:
kernel/fs/vfat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/drivers/hid/hid-generic.ko:
";

    fn names(db: &ModuleDb, wanted: &[&str]) -> Vec<String> {
        db.load_order(wanted)
            .unwrap()
            .iter()
            .map(|p| module_name(&p.to_string_lossy()))
            .collect()
    }

    #[test]
    fn names_drop_extension_and_fold_hyphens() {
        assert_eq!(module_name("kernel/a/virtio_blk.ko.xz"), "virtio_blk");
        assert_eq!(module_name("kernel/a/hid-generic.ko"), "hid_generic");
        assert_eq!(module_name("x.ko.zst"), "x");
        assert_eq!(module_name("y.ko.gz"), "y");
    }

    #[test]
    fn dependencies_first_each_once() {
        let db = ModuleDb::parse(Path::new("/lib/modules/6.1.0"), DEP).unwrap();
        assert_eq!(
            names(&db, &["virtio_blk", "virtio_net", "vfat", "hid-generic"]),
            [
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "failover",
                "net_failover",
                "virtio_net",
                "fat",
                "vfat",
                "hid_generic"
            ]
        );
        let order = db.load_order(&["virtio_blk"]).unwrap();
        assert_eq!(
            order[0],
            Path::new("/lib/modules/6.1.0/kernel/drivers/virtio/virtio.ko.xz")
        );
        // Asking twice for the same module loads it once.
        assert_eq!(names(&db, &["virtio", "virtio"]), ["virtio"]);
    }

    #[test]
    fn builtin_modules_are_skipped_and_unknown_ones_reported() {
        let db = ModuleDb::parse(Path::new("/m"), DEP)
            .unwrap()
            .with_builtin("kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/ext4/ext4.ko\n");
        assert_eq!(names(&db, &["ext4", "virtio-pci", "fat"]), ["fat"]);
        assert_eq!(
            db.load_order(&["nbd"]).unwrap_err(),
            DepError::Unknown("nbd".into())
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let db = ModuleDb::parse(
            Path::new("/m"),
            "a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\nd.ko: a.ko\n",
        )
        .unwrap();
        let err = db.load_order(&["d"]).unwrap_err();
        assert_eq!(
            err,
            DepError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = ModuleDb::parse(Path::new("/m"), "a.ko:\nno colon here\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "modules.dep line 2: expected `path: deps...`, found \"no colon here\""
        );
    }

    #[test]
    fn reads_a_module_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("modules.dep"), DEP).unwrap();
        let db = ModuleDb::read(dir.path()).unwrap().unwrap();
        assert_eq!(
            db.path_of("vfat").unwrap(),
            dir.path().join("kernel/fs/vfat/vfat.ko")
        );
    }
}
