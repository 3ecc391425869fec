//! A control group per plan run: memory, processes and CPU bounded for everything the run
//! starts, local commands and guest `sh`/`command` alike, and every process of the run killed
//! at its end.
//!
//! Both cgroup versions are used, whichever holds the controllers on the host:
//!
//! * **v2** (the appliance: init mounts `cgroup2` on `/sys/fs/cgroup`). Run groups are
//!   children of `<deployd's cgroup>/streamer-plan-runs`, with `memory.max`, `memory.swap.max`,
//!   `pids.max` and `cpu.max`; the end of a run writes `cgroup.kill`. A process in the root
//!   cgroup (the appliance's deployd) may enable controllers for its children; elsewhere
//!   (systemd) deployd first moves itself into a leaf `deployd` group of its own cgroup, since
//!   v2 gives controllers only to groups with no processes of their own.
//! * **v1** (developer machines with the legacy hierarchy): one run group in each of the
//!   `memory`, `pids` and `cpu` hierarchies, below deployd's own group in each, with
//!   `memory.limit_in_bytes`, `pids.max` and `cpu.cfs_quota_us`. v1 has no `cgroup.kill`:
//!   the end of a run signals every process listed in the group through a pidfd, after
//!   checking the process is still in the group (a pid reused meanwhile is never signalled).
//!
//! `memory` and `pids` are required; without `cpu` a run has no CPU bound (said in
//! [`Cgroups::describe`]). When neither version can be used, [`Cgroups::Unavailable`] says why,
//! and the sandbox refuses guest commands (see the crate documentation).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use crate::SandboxError;

/// The group every run's group is created in.
pub const RUNS_GROUP: &str = "streamer-plan-runs";

/// Prefix of each run's group: `run-<pid of the process that made it>-<uuid>`.
const RUN_PREFIX: &str = "run-";

/// The pid in a run group's name, if it is one.
fn maker_of(name: &str) -> Option<u32> {
    name.strip_prefix(RUN_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Where run groups are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v2: run groups are children of `parent`, whose `cgroup.subtree_control` enables
    /// memory and pids (and cpu when `cpu`).
    V2 { parent: PathBuf, cpu: bool },
    /// cgroup v1: a parent in each controller's hierarchy (`cpu` absent: no CPU bound).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
    /// No usable cgroup: why.
    Unavailable(String),
}

/// The bounds of one run's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    pub memory: u64,
    pub processes: u64,
    /// Thousandths of a CPU (1000 = one CPU's worth of time per period).
    pub cpu_millis: u32,
}

/// One line of `/proc/self/mountinfo` that mounts a cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    /// The cgroup path at the mount's root (`/` unless the mount is of a sub-tree).
    root: String,
    mountpoint: PathBuf,
    /// `None` for cgroup2; the v1 controllers (and `name=` options) otherwise.
    controllers: Option<Vec<String>>,
}

fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut post = after.split(' ');
            let fstype = post.next()?;
            let _source = post.next()?;
            let options = post.next().unwrap_or_default();
            let controllers = match fstype {
                "cgroup2" => None,
                "cgroup" => Some(
                    options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro"))
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                root: unescape(fields.get(3)?),
                mountpoint: PathBuf::from(unescape(fields.get(4)?)),
                controllers,
            })
        })
        .collect()
}

/// `/proc/self/cgroup`: (controllers, path); controllers empty for the v2 line.
fn parse_own(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            Some((controllers, path.to_owned()))
        })
        .collect()
}

/// The directory of cgroup `path` in `mount`, if the mount shows it.
fn dir_of(mount: &CgroupMount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let rest = rest.trim_start_matches('/');
    Some(if rest.is_empty() {
        mount.mountpoint.clone()
    } else {
        mount.mountpoint.join(rest)
    })
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn make_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

impl Cgroups {
    /// Finds (once per process) where run groups can be made, creating the
    /// `streamer-plan-runs` parent.
    pub fn detect() -> Cgroups {
        static DETECTED: OnceLock<Cgroups> = OnceLock::new();
        DETECTED
            .get_or_init(|| {
                let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                let found = Cgroups::from_host(&parse_mountinfo(&mounts), &parse_own(&own));
                match &found {
                    Cgroups::Unavailable(why) => {
                        tracing::warn!("plan runs have no cgroup: {why}")
                    }
                    other => tracing::info!("plan runs: {}", other.describe()),
                }
                found
            })
            .clone()
    }

    fn from_host(mounts: &[CgroupMount], own: &[(Vec<String>, String)]) -> Cgroups {
        if !nix::unistd::geteuid().is_root() {
            return Cgroups::Unavailable("deployd does not run as root".into());
        }
        let v1 = |controller: &str| -> Option<PathBuf> {
            let mount = mounts.iter().find(|m| {
                m.controllers
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c == controller))
            })?;
            let (_, path) = own
                .iter()
                .find(|(c, _)| c.iter().any(|c| c == controller))?;
            dir_of(mount, path).map(|d| d.join(RUNS_GROUP))
        };
        if let (Some(memory), Some(pids)) = (v1("memory"), v1("pids")) {
            let cpu = v1("cpu");
            let made = [Some(&memory), Some(&pids), cpu.as_ref()]
                .into_iter()
                .flatten()
                .try_for_each(|d| make_dir(d));
            return match made {
                Ok(()) => Cgroups::V1 { memory, pids, cpu },
                Err(e) => Cgroups::Unavailable(format!("cgroup v1: {e}")),
            };
        }
        let Some(mount) = mounts.iter().find(|m| m.controllers.is_none()) else {
            return Cgroups::Unavailable(
                "no cgroup2 mount, and no cgroup v1 hierarchy with the memory and pids controllers"
                    .into(),
            );
        };
        let Some((_, path)) = own.iter().find(|(c, _)| c.is_empty()) else {
            return Cgroups::Unavailable("/proc/self/cgroup has no cgroup v2 line".into());
        };
        let Some(own_dir) = dir_of(mount, path) else {
            return Cgroups::Unavailable(format!(
                "deployd's cgroup {path} is outside the cgroup2 mount at {}",
                mount.mountpoint.display()
            ));
        };
        match setup_v2(&own_dir, path == "/") {
            Ok((parent, cpu)) => Cgroups::V2 { parent, cpu },
            Err(e) => Cgroups::Unavailable(format!("cgroup v2: {e}")),
        }
    }

    /// One line for logs and the README: what bounds a run.
    pub fn describe(&self) -> String {
        match self {
            Cgroups::V2 { parent, cpu } => format!(
                "cgroup v2 under {} (memory, pids{})",
                parent.display(),
                if *cpu { ", cpu" } else { "; no cpu controller" }
            ),
            Cgroups::V1 { memory, pids, cpu } => format!(
                "cgroup v1 under {}, {}{}",
                memory.display(),
                pids.display(),
                match cpu {
                    Some(c) => format!(", {}", c.display()),
                    None => "; no cpu controller".into(),
                }
            ),
            Cgroups::Unavailable(why) => format!("no cgroup ({why})"),
        }
    }

    /// Every run group the parents hold that a process no longer running made (a crash left
    /// it): its processes are killed and it is removed. Groups of live processes (another
    /// deployd's runs, on a developer machine) are left alone. Returns how many were removed.
    pub fn cleanup_leftovers(&self) -> usize {
        let parents: Vec<&PathBuf> = match self {
            Cgroups::V2 { parent, .. } => vec![parent],
            Cgroups::V1 { memory, pids, cpu } => [Some(memory), Some(pids), cpu.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            Cgroups::Unavailable(_) => Vec::new(),
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = maker_of(&name) else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let group = RunCgroup {
                        dirs: vec![entry.path()],
                        v2: matches!(self, Cgroups::V2 { .. }),
                    };
                    group.kill_all();
                    if group.remove() {
                        removed += 1;
                    }
                    std::mem::forget(group);
                }
            }
        }
        removed
    }
}

/// Makes `<own>/streamer-plan-runs` a v2 parent with the memory, pids (and cpu) controllers.
fn setup_v2(own: &Path, own_is_root: bool) -> io::Result<(PathBuf, bool)> {
    let available = fs::read_to_string(own.join("cgroup.controllers"))?;
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    for needed in ["memory", "pids"] {
        if !has(needed) {
            return Err(io::Error::other(format!(
                "the {needed} controller is not available to {} (enable it in the parent's \
                 cgroup.subtree_control, or with systemd: Delegate=yes)",
                own.display()
            )));
        }
    }
    let cpu = has("cpu");
    let controllers = if cpu {
        "+memory +pids +cpu"
    } else {
        "+memory +pids"
    };
    let enable = |dir: &Path| write(&dir.join("cgroup.subtree_control"), controllers);
    if let Err(e) = enable(own) {
        // "No internal processes": a non-root group with processes cannot give its children
        // controllers. Move this process into a leaf of its own and try again.
        if own_is_root || e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
        let leaf = own.join("deployd");
        make_dir(&leaf)?;
        write(&leaf.join("cgroup.procs"), "0")?;
        enable(own)?;
    }
    let parent = own.join(RUNS_GROUP);
    make_dir(&parent)?;
    enable(&parent)?;
    Ok((parent, cpu))
}

/// One run's group (a directory per v1 hierarchy, or one v2 directory). Dropping it kills
/// every process left in it and removes it.
#[derive(Debug)]
pub struct RunCgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl RunCgroup {
    /// Creates a run group under `cgroups` with `limits`.
    pub fn create(cgroups: &Cgroups, limits: GroupLimits) -> Result<RunCgroup, SandboxError> {
        let name = format!(
            "{RUN_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| SandboxError::Cgroup { path, source }
        };
        let period: u64 = 100_000;
        let quota = u64::from(limits.cpu_millis.max(10)) * period / 1000;
        match cgroups {
            Cgroups::V2 { parent, cpu } => {
                let dir = parent.join(&name);
                fs::create_dir(&dir).map_err(err(&dir))?;
                let group = RunCgroup {
                    dirs: vec![dir.clone()],
                    v2: true,
                };
                write(&dir.join("memory.max"), &limits.memory.to_string()).map_err(err(&dir))?;
                write(&dir.join("pids.max"), &limits.processes.to_string()).map_err(err(&dir))?;
                if *cpu {
                    write(&dir.join("cpu.max"), &format!("{quota} {period}")).map_err(err(&dir))?;
                }
                // Absent when swap accounting is off; then there is no swap to escape to.
                let _ = write(&dir.join("memory.swap.max"), "0");
                Ok(group)
            }
            Cgroups::V1 { memory, pids, cpu } => {
                let mut group = RunCgroup {
                    dirs: Vec::new(),
                    v2: false,
                };
                for parent in [Some(memory), Some(pids), cpu.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    let dir = parent.join(&name);
                    fs::create_dir(&dir).map_err(err(&dir))?;
                    group.dirs.push(dir);
                }
                let dir = &group.dirs[0];
                write(
                    &dir.join("memory.limit_in_bytes"),
                    &limits.memory.to_string(),
                )
                .map_err(err(dir))?;
                // Only with swap accounting; it must not be below memory.limit_in_bytes.
                let _ = write(
                    &dir.join("memory.memsw.limit_in_bytes"),
                    &limits.memory.to_string(),
                );
                let dir = &group.dirs[1];
                write(&dir.join("pids.max"), &limits.processes.to_string()).map_err(err(dir))?;
                if let Some(dir) = group.dirs.get(2) {
                    write(&dir.join("cpu.cfs_period_us"), &period.to_string()).map_err(err(dir))?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string()).map_err(err(dir))?;
                }
                Ok(group)
            }
            Cgroups::Unavailable(why) => Err(SandboxError::NoCgroup(why.clone())),
        }
    }

    /// The `cgroup.procs` files a process writes itself into to join the group.
    pub(crate) fn procs_files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.dirs.iter().map(|d| d.join("cgroup.procs"))
    }

    /// (OOM kills, times the pids limit refused a fork) since the group was made.
    pub fn events(&self) -> (u64, u64) {
        let counter = |dir: &Path, file: &str, key: &str| {
            fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        let (memory, pids) = if self.v2 {
            (&self.dirs[0], &self.dirs[0])
        } else {
            (&self.dirs[0], &self.dirs[1])
        };
        let oom = if self.v2 {
            counter(memory, "memory.events", "oom_kill ")
        } else {
            counter(memory, "memory.oom_control", "oom_kill ")
        };
        (oom, counter(pids, "pids.events", "max "))
    }

    /// Pids of the processes in the group.
    fn members(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .procs_files()
            .filter_map(|f| fs::read_to_string(f).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether process `pid` is (still) in this group.
    fn holds(&self, pid: i32) -> bool {
        let Some(name) = self.dirs[0].file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|t| t.lines().any(|l| l.ends_with(&format!("/{name}"))))
    }

    /// Kills every process in the group, and waits (up to a second) until it is empty.
    pub fn kill_all(&self) {
        if self.v2 && write(&self.dirs[0].join("cgroup.kill"), "1").is_ok() {
            self.wait_empty();
            return;
        }
        for _ in 0..100 {
            let members = self.members();
            if members.is_empty() {
                return;
            }
            for pid in members {
                let Some(pid) = rustix::process::Pid::from_raw(pid) else {
                    continue;
                };
                // The pidfd pins the process: checked to be ours after it was opened, it is
                // the same process when signalled, never a new one that reused the pid.
                if let Ok(fd) =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                    && self.holds(pid.as_raw_nonzero().get())
                {
                    let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_empty(&self) {
        for _ in 0..100 {
            if self.members().is_empty() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the group's directories; false if one could not be removed.
    fn remove(&self) -> bool {
        let mut all = true;
        for dir in &self.dirs {
            let mut removed = false;
            for _ in 0..100 {
                match fs::remove_dir(dir) {
                    Ok(()) => {
                        removed = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        removed = true;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => {
                        tracing::warn!(path = %dir.display(), error = %e, "removing a run's cgroup");
                        break;
                    }
                }
            }
            all &= removed;
        }
        all
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        self.kill_all();
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn run_groups_name_the_process_that_made_them() {
        assert_eq!(maker_of("run-1234-5d2b6f0e-aaaa"), Some(1234));
        assert_eq!(maker_of("run-x-5d2b"), None);
        assert_eq!(maker_of("deployd"), None);
    }

    #[test]
    fn mountinfo_finds_v1_and_v2_mounts() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].mountpoint, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(
            mounts[0].controllers.as_deref(),
            Some(&["cpu".to_owned()][..])
        );
        assert_eq!(mounts[4].controllers, None);
        assert!(
            mounts[3]
                .controllers
                .as_ref()
                .unwrap()
                .contains(&"name=systemd".to_owned())
        );
    }

    #[test]
    fn own_groups_and_their_directories() {
        let own = parse_own("4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(
            own[0],
            (vec!["memory".to_owned()], "/process_api/abc".to_owned())
        );
        assert_eq!(own[1].0, vec!["cpu".to_owned(), "cpuacct".to_owned()]);
        assert_eq!(own[2], (Vec::new(), "/user.slice".to_owned()));
        let mount = CgroupMount {
            root: "/".into(),
            mountpoint: "/sys/fs/cgroup/memory".into(),
            controllers: Some(vec!["memory".into()]),
        };
        assert_eq!(
            dir_of(&mount, "/process_api/abc").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            dir_of(&mount, "/").unwrap(),
            Path::new("/sys/fs/cgroup/memory")
        );
        let sub = CgroupMount {
            root: "/container".into(),
            ..mount
        };
        assert_eq!(
            dir_of(&sub, "/container/x").unwrap(),
            Path::new("/sys/fs/cgroup/memory/x")
        );
        assert_eq!(dir_of(&sub, "/elsewhere"), None);
        assert_eq!(dir_of(&sub, "/containerx"), None);
    }
}
