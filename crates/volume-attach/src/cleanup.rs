//! Finding and undoing what an attach left in the kernel: mounts (from
//! `/proc/self/mountinfo`) and loop devices (from `/sys/block/loopN/loop/backing_file`), both
//! for a live [`super::AttachedDisk`] and after a crash ([`cleanup_leftovers`]).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, umount2};

use super::{KERNEL_NBD_MARKER, kernel_nbd, loopdev};

/// One line of mountinfo: where, and what is mounted there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub source: String,
    pub fstype: String,
    /// `major:minor` of the mounted filesystem.
    pub dev: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|&x| x == "-")?;
            Some(MountEntry {
                mountpoint: PathBuf::from(unescape(f.get(4)?)),
                dev: f.get(2)?.to_string(),
                fstype: f.get(sep + 1)?.to_string(),
                source: unescape(f.get(sep + 2)?),
            })
        })
        .collect()
}

pub fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Unmounts `path`; if it is busy, detaches it lazily (it goes when its last user does) and
/// says so in the error.
pub fn unmount(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            umount2(path, MntFlags::MNT_DETACH)?;
            Err(io::Error::other(format!(
                "{} was busy; detached it lazily",
                path.display()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Mounts under `root` (root itself included), deepest first.
pub fn mounts_under(root: &Path) -> io::Result<Vec<MountEntry>> {
    let mut m: Vec<_> = mounts()?
        .into_iter()
        .filter(|m| m.mountpoint.starts_with(root))
        .collect();
    // Later mounts stack on earlier ones; unmount in reverse order, deepest paths first.
    m.reverse();
    m.sort_by_key(|e| std::cmp::Reverse(e.mountpoint.components().count()));
    Ok(m)
}

/// What [`cleanup_leftovers`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub unmounted: Vec<PathBuf>,
    pub loops_detached: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    /// Things that could not be undone (and why).
    pub problems: Vec<String>,
}

/// Undoes what crashed attaches left under `work_root`: unmounts everything mounted below it
/// (lazily when busy), detaches loop devices whose backing file lies below it, and removes
/// its subdirectories (never crossing into a filesystem still mounted there), and disconnects
/// kernel NBD devices the attaches below it recorded. Call it at start-up, before any attach:
/// it undoes live attaches below the root just the same.
pub fn cleanup_leftovers(work_root: &Path) -> io::Result<CleanupReport> {
    let mut r = CleanupReport::default();
    let root = match work_root.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(r),
        Err(e) => return Err(e),
    };
    let leftovers = mounts_under(&root)?;
    // A FUSE disk file whose server died leaves requests (and the processes behind them)
    // waiting forever; aborting the connection fails them so everything can be undone.
    for m in leftovers.iter().filter(|m| m.fstype.starts_with("fuse")) {
        if let Err(e) = abort_fuse(&m.dev) {
            r.problems
                .push(format!("aborting FUSE connection {}: {e}", m.dev));
        }
    }
    for m in leftovers {
        if m.mountpoint == root {
            continue;
        }
        // A dead FUSE server makes a normal unmount fail; lazy detaching always works.
        match umount2(&m.mountpoint, MntFlags::empty())
            .or_else(|_| umount2(&m.mountpoint, MntFlags::MNT_DETACH))
        {
            Ok(()) => r.unmounted.push(m.mountpoint),
            Err(e) => r
                .problems
                .push(format!("unmounting {}: {e}", m.mountpoint.display())),
        }
    }
    // Kernel NBD devices named by the markers of attaches below the root.
    let mut nbds = Vec::new();
    for dir in std::iter::once(root.clone()).chain(
        std::fs::read_dir(&root)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    ) {
        if let Ok(dev) = std::fs::read_to_string(dir.join(KERNEL_NBD_MARKER)) {
            let dev = PathBuf::from(dev.trim());
            if dev.starts_with("/dev") {
                nbds.push(dev);
            }
        }
    }
    for (dev, backing) in loopdev::bound() {
        let backing = backing
            .to_str()
            .map(|s| PathBuf::from(s.trim_end_matches(" (deleted)")))
            .unwrap_or(backing);
        if backing.starts_with(&root) || nbds.contains(&backing) {
            match loopdev::clear(&dev) {
                Ok(()) => r.loops_detached.push(dev),
                Err(e) => r.problems.push(format!("detaching {}: {e}", dev.display())),
            }
        }
    }
    for dev in nbds {
        if let Err(e) = kernel_nbd::disconnect(&dev) {
            r.problems
                .push(format!("disconnecting {}: {e}", dev.display()));
        }
    }
    let still_mounted: Vec<PathBuf> = mounts_under(&root)?
        .into_iter()
        .map(|m| m.mountpoint)
        .filter(|p| *p != root)
        .collect();
    let dev = std::fs::metadata(&root)?.dev();
    for e in std::fs::read_dir(&root)? {
        let p = e?.path();
        if still_mounted.iter().any(|m| m.starts_with(&p)) {
            r.problems
                .push(format!("{} still has a mount below it; kept", p.display()));
            continue;
        }
        match remove_tree(&p, dev) {
            Ok(()) => r.removed.push(p),
            Err(e) => r.problems.push(format!("removing {}: {e}", p.display())),
        }
    }
    Ok(r)
}

/// Aborts the FUSE connection of the filesystem with device number `major:minor`.
fn abort_fuse(dev: &str) -> io::Result<()> {
    let conns = Path::new("/sys/fs/fuse/connections");
    let minor = dev.split(':').nth(1).unwrap_or_default();
    let abort = conns.join(minor).join("abort");
    if !abort.exists() {
        // fusectl is not always mounted; mount it where the kernel expects it.
        let _ = nix::mount::mount(
            Some("fusectl"),
            conns,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    match std::fs::write(&abort, "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()), // already gone
        other => other,
    }
}

/// `rm -r` that refuses to enter another filesystem, so a mount we failed to detect can never
/// lose a guest's files.
pub fn remove_tree(p: &Path, dev: u64) -> io::Result<()> {
    let md = std::fs::symlink_metadata(p)?;
    if md.is_dir() {
        if md.dev() != dev {
            return Err(io::Error::other(format!(
                "{} is on another filesystem",
                p.display()
            )));
        }
        for e in std::fs::read_dir(p)? {
            remove_tree(&e?.path(), dev)?;
        }
        std::fs::remove_dir(p)
    } else {
        std::fs::remove_file(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let t = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext4 /dev/loop3 rw,errors=continue\n\
                 37 35 0:40 / /work/x/fuse rw,nosuid shared:2 - fuse.streamer streamer-nbd rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mountpoint, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].source, "/dev/loop3");
        assert_eq!(m[0].fstype, "ext4");
        assert_eq!(m[1].fstype, "fuse.streamer");
    }
}
