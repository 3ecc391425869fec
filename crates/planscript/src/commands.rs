//! The guestfish commands plan scripts may use: names, aliases and argument counts.
//!
//! The interpreter dispatches on [`Verb`]; `lint` uses [`lookup`] to report unknown commands
//! and wrong argument counts without running anything.

/// A supported command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Echo,
    Upload,
    Download,
    Mkdir,
    MkdirP,
    Cat,
    Chmod,
    Mount,
    MountRo,
    Umount,
    UmountAll,
    ListFilesystems,
    ListDevices,
    ListPartitions,
    Vgs,
    Lvs,
    Vgrename,
    Statvfs,
    Rm,
    RmF,
    RmRf,
    Rmdir,
    Touch,
    Ls,
    Ln,
    LnF,
    LnS,
    LnSf,
    Cp,
    CpA,
    CpR,
    Mv,
    CopyIn,
    CopyOut,
    Glob,
    Write,
    WriteAppend,
    Command,
    Sh,
    CompressOut,
    Version,
    InspectOs,
    Exists,
    IsFile,
    IsDir,
}

/// Name(s), verb, minimum and maximum argument count (`None`: no maximum).
const TABLE: &[(&[&str], Verb, usize, Option<usize>)] = &[
    (&["echo"], Verb::Echo, 0, None),
    (&["upload"], Verb::Upload, 2, Some(2)),
    (&["download"], Verb::Download, 2, Some(2)),
    (&["mkdir"], Verb::Mkdir, 1, Some(1)),
    (&["mkdir-p"], Verb::MkdirP, 1, Some(1)),
    (&["cat", "read-file"], Verb::Cat, 1, Some(1)),
    (&["chmod"], Verb::Chmod, 2, Some(2)),
    (&["mount"], Verb::Mount, 2, Some(2)),
    (&["mount-ro"], Verb::MountRo, 2, Some(2)),
    (&["umount", "unmount"], Verb::Umount, 1, Some(3)),
    (&["umount-all", "unmount-all"], Verb::UmountAll, 0, Some(0)),
    (&["list-filesystems"], Verb::ListFilesystems, 0, Some(0)),
    (&["list-devices"], Verb::ListDevices, 0, Some(0)),
    (&["list-partitions"], Verb::ListPartitions, 0, Some(0)),
    (&["vgs"], Verb::Vgs, 0, Some(0)),
    (&["lvs"], Verb::Lvs, 0, Some(0)),
    (&["vgrename"], Verb::Vgrename, 2, Some(2)),
    (&["statvfs"], Verb::Statvfs, 1, Some(1)),
    (&["rm"], Verb::Rm, 1, Some(1)),
    (&["rm-f"], Verb::RmF, 1, Some(1)),
    (&["rm-rf"], Verb::RmRf, 1, Some(1)),
    (&["rmdir"], Verb::Rmdir, 1, Some(1)),
    (&["touch"], Verb::Touch, 1, Some(1)),
    (&["ls"], Verb::Ls, 1, Some(1)),
    (&["ln"], Verb::Ln, 2, Some(2)),
    (&["ln-f"], Verb::LnF, 2, Some(2)),
    (&["ln-s"], Verb::LnS, 2, Some(2)),
    (&["ln-sf"], Verb::LnSf, 2, Some(2)),
    (&["cp"], Verb::Cp, 2, Some(2)),
    (&["cp-a"], Verb::CpA, 2, Some(2)),
    (&["cp-r"], Verb::CpR, 2, Some(2)),
    (&["mv"], Verb::Mv, 2, Some(2)),
    (&["copy-in"], Verb::CopyIn, 2, None),
    (&["copy-out"], Verb::CopyOut, 2, None),
    (&["glob"], Verb::Glob, 1, None),
    (&["write"], Verb::Write, 2, Some(2)),
    (&["write-append"], Verb::WriteAppend, 2, Some(2)),
    (&["command"], Verb::Command, 1, Some(1)),
    (&["sh"], Verb::Sh, 1, Some(1)),
    (&["compress-out"], Verb::CompressOut, 3, Some(3)),
    (&["version"], Verb::Version, 0, Some(0)),
    (&["inspect-os"], Verb::InspectOs, 0, Some(0)),
    (&["exists"], Verb::Exists, 1, Some(1)),
    (&["is-file"], Verb::IsFile, 1, Some(1)),
    (&["is-dir"], Verb::IsDir, 1, Some(1)),
];

/// The verb named `name` (guestfish accepts `_` for `-` and any case), and its argument
/// bounds.
pub fn lookup(name: &str) -> Option<(Verb, usize, Option<usize>)> {
    let name = name.to_ascii_lowercase().replace('_', "-");
    TABLE
        .iter()
        .find(|(names, ..)| names.contains(&name.as_str()))
        .map(|&(_, v, min, max)| (v, min, max))
}

/// Checks the argument count of a known command.
pub fn check_arity(name: &str, args: usize) -> Result<Verb, String> {
    let (verb, min, max) = lookup(name).ok_or_else(|| {
        format!("unknown command {name:?}: plan scripts may use the guestfish commands listed in the documentation")
    })?;
    if args < min || max.is_some_and(|m| args > m) {
        let want = match (min, max) {
            (a, Some(b)) if a == b => format!("{a}"),
            (a, Some(b)) => format!("{a} to {b}"),
            (a, None) => format!("at least {a}"),
        };
        return Err(format!("{name}: takes {want} argument(s), got {args}"));
    }
    Ok(verb)
}

/// Every command name, for documentation and lint suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().flat_map(|(names, ..)| names.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_arity() {
        assert_eq!(check_arity("unmount", 1), Ok(Verb::Umount));
        assert_eq!(check_arity("umount", 1), Ok(Verb::Umount));
        assert!(check_arity("mount", 1).unwrap_err().contains("takes 2"));
        assert!(
            check_arity("frobnicate", 0)
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(names().count() > 45);
    }
}
