//! Starting a sandboxed process: the sandbox's only file with `unsafe`.
//!
//! Everything here runs between `fork` and `execve` in a copy of a multi-threaded process, so
//! it may only make async-signal-safe calls: raw system calls on C strings and buffers built
//! by the parent beforehand; no allocation, no locks, no `std::fs`.
//!
//! Process tree (see `mod.rs` for why):
//! ```text
//! deployd ── first child (std's fork; host namespaces → unshare pid/net/ipc/uts/cgroup)
//!              │   becomes the "intermediate": writes the grandchild's uid/gid maps, waits,
//!              │   exits with the grandchild's status (re-raising its signal)
//!              └─ grandchild = pid 1 of the new pid namespace: a mount namespace of its own
//!                 (so only it, briefly, holds a copy of the host's mounts), builds the root, pivot_root,
//!                 new user namespace, drops to the inner ids, rlimits, then std execs it.
//! ```

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use libc::{c_int, c_ulong};

/// Where the setup failed, reported to the parent through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    ParentGone = 1,
    CgroupJoin,
    Unshare,
    Pipes,
    Fork,
    Handshake,
    MakePrivate,
    Hostname,
    RootTmpfs,
    Chdir,
    Mkdir,
    Busybox,
    Devices,
    Proc,
    Tmp,
    ScratchBind,
    GuestBind,
    ReadOnlyRoot,
    PivotRoot,
    Setgroups,
    UserNamespace,
    IdMap,
    SetIds,
    Rlimits,
    NoNewPrivs,
    Descriptors,
}

impl Step {
    const ALL: [Step; 26] = [
        Step::ParentGone,
        Step::CgroupJoin,
        Step::Unshare,
        Step::Pipes,
        Step::Fork,
        Step::Handshake,
        Step::MakePrivate,
        Step::Hostname,
        Step::RootTmpfs,
        Step::Chdir,
        Step::Mkdir,
        Step::Busybox,
        Step::Devices,
        Step::Proc,
        Step::Tmp,
        Step::ScratchBind,
        Step::GuestBind,
        Step::ReadOnlyRoot,
        Step::PivotRoot,
        Step::Setgroups,
        Step::UserNamespace,
        Step::IdMap,
        Step::SetIds,
        Step::Rlimits,
        Step::NoNewPrivs,
        Step::Descriptors,
    ];

    pub(super) fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == v)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Step::ParentGone => "parent exited",
            Step::CgroupJoin => "joining the cgroup",
            Step::Unshare => "creating namespaces",
            Step::Pipes => "creating pipes",
            Step::Fork => "forking the namespace init",
            Step::Handshake => "handshake with the intermediate process",
            Step::MakePrivate => "making mounts private",
            Step::Hostname => "setting the hostname",
            Step::RootTmpfs => "mounting the root tmpfs",
            Step::Chdir => "changing directory",
            Step::Mkdir => "creating the root's directories",
            Step::Busybox => "binding busybox",
            Step::Devices => "binding /dev nodes",
            Step::Proc => "mounting /proc",
            Step::Tmp => "mounting /tmp",
            Step::ScratchBind => "binding the scratch directory",
            Step::GuestBind => "binding the guest root",
            Step::ReadOnlyRoot => "making the root read-only",
            Step::PivotRoot => "pivot_root",
            Step::Setgroups => "clearing supplementary groups",
            Step::UserNamespace => "creating the user namespace",
            Step::IdMap => "writing uid/gid maps",
            Step::SetIds => "switching to the sandbox uid/gid",
            Step::Rlimits => "setting resource limits",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Descriptors => "closing inherited descriptors",
        }
    }
}

/// The new root the grandchild builds before `pivot_root`.
#[derive(Debug)]
pub(super) enum Root {
    /// A fresh tmpfs with busybox, a few device nodes, /proc, /tmp and the scratch dir.
    Toolbox {
        mountpoint: CString,
        root_opts: CString,
        busybox: CString,
        /// `bin/<applet>` for each applet.
        applets: Vec<CString>,
        scratch: CString,
        tmp_opts: CString,
    },
    /// The kernel-mounted guest filesystem, bound onto itself (nosuid, nodev).
    Guest { path: CString, read_only: bool },
}

/// Everything the children need, built by the parent before `fork`.
#[derive(Debug)]
pub(super) struct Plan {
    pub root: Root,
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    pub deny_setgroups: bool,
    pub inner_uid: u32,
    pub inner_gid: u32,
    pub workdir: CString,
    pub hostname: CString,
    /// (resource, soft = hard limit)
    pub rlimits: Vec<(c_int, u64)>,
    /// The run's cgroup: each hierarchy's `cgroup.procs` (several with cgroup v1).
    pub cgroup_procs: Vec<CString>,
    /// Write end of the parent's error pipe (close-on-exec).
    pub err_fd: RawFd,
    pub parent_pid: libc::pid_t,
}

/// Spawns `cmd` inside the sandbox described by `plan`. The returned `Child` is the
/// intermediate process: killing it kills the whole pid namespace.
pub(super) fn spawn(cmd: &mut Command, plan: Plan) -> io::Result<Child> {
    // SAFETY: the closure only makes async-signal-safe calls (raw system calls on memory
    // allocated before the fork, see `sys`), as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(move || match first_child(&plan) {
            Ok(()) => Ok(()),
            Err((step, errno)) => {
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&(step as u32).to_le_bytes());
                msg[4..].copy_from_slice(&errno.to_le_bytes());
                sys::write_all(plan.err_fd, &msg);
                Err(io::Error::from_raw_os_error(errno))
            }
        })
    };
    cmd.spawn()
}

type SetupResult = Result<(), (Step, i32)>;

fn check(step: Step, r: c_int) -> Result<c_int, (Step, i32)> {
    if r < 0 {
        Err((step, sys::errno()))
    } else {
        Ok(r)
    }
}

struct Pipes {
    go_r: RawFd,
    go_w: RawFd,
    req_r: RawFd,
    req_w: RawFd,
    done_r: RawFd,
    done_w: RawFd,
}

fn first_child(plan: &Plan) -> SetupResult {
    // The intermediate dies with deployd (more exactly: with the thread that spawned it).
    check(
        Step::ParentGone,
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong),
    )?;
    if sys::getppid() != plan.parent_pid {
        return Err((Step::ParentGone, libc::ESRCH));
    }
    for procs in &plan.cgroup_procs {
        check(Step::CgroupJoin, sys::write_file(procs, b"0"))?;
    }
    // The mount namespace is the grandchild's alone (see `grandchild`): this process lives for
    // the whole command, and a copy of the host's mounts held that long would keep other
    // runs' guest filesystems alive after they unmount them.
    let flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    check(Step::Unshare, sys::unshare(flags))?;
    let (go_r, go_w) = sys::pipe().ok_or((Step::Pipes, sys::errno()))?;
    let (req_r, req_w) = sys::pipe().ok_or((Step::Pipes, sys::errno()))?;
    let (done_r, done_w) = sys::pipe().ok_or((Step::Pipes, sys::errno()))?;
    let pipes = Pipes {
        go_r,
        go_w,
        req_r,
        req_w,
        done_r,
        done_w,
    };
    let pid = check(Step::Fork, sys::fork())?;
    if pid == 0 {
        sys::close(go_w);
        sys::close(req_r);
        sys::close(done_w);
        return grandchild(plan, &pipes);
    }
    intermediate(plan, &pipes, pid)
}

/// Waits for the grandchild, writing its id maps when asked; never returns.
fn intermediate(plan: &Plan, p: &Pipes, child: libc::pid_t) -> ! {
    // Close everything else, above all std's exec-status pipe: `spawn` returns as soon as
    // the grandchild has exec'd, not when this process exits.
    let mut keep = [p.go_w, p.req_r, p.done_w];
    keep.sort_unstable();
    let mut first = 0;
    for fd in keep {
        if fd > first {
            sys::close_range(first as u32, (fd - 1) as u32);
        }
        first = fd + 1;
    }
    sys::close_range(first as u32, u32::MAX);
    sys::setrlimit(libc::RLIMIT_CORE as c_int, 0);

    // Open /proc/<pid> now, while this process's root is still the host's (the
    // grandchild's pivot_root moves it); open the map files only once the grandchild is in
    // its user namespace.
    let mut buf = [0u8; 32];
    let dir = sys::open_dir(proc_path(&mut buf, child));
    sys::write_all(p.go_w, &[1]);
    if sys::read_byte(p.req_r) == Some(1) {
        let ok = dir >= 0
            && (!plan.deny_setgroups || sys::write_at(dir, c"setgroups", b"deny"))
            && sys::write_at(dir, c"gid_map", &plan.gid_map)
            && sys::write_at(dir, c"uid_map", &plan.uid_map);
        sys::write_all(p.done_w, &[u8::from(ok)]);
    }
    let status = sys::wait(child);
    sys::exit_like(status)
}

/// Formats `/proc/<pid>` as a C string into `buf`.
fn proc_path(buf: &mut [u8; 32], pid: libc::pid_t) -> &CStr {
    let prefix = b"/proc/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/proc/self")
}

fn grandchild(plan: &Plan, p: &Pipes) -> SetupResult {
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong);
    if sys::read_byte(p.go_r) != Some(1) {
        return Err((Step::Handshake, libc::EPIPE));
    }
    // A copy of the host's mounts, dropped at pivot_root a few system calls later.
    check(Step::Unshare, sys::unshare(libc::CLONE_NEWNS))?;
    // Nothing mounted from here on may propagate back to the host.
    check(
        Step::MakePrivate,
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
    )?;
    check(Step::Hostname, sys::sethostname(&plan.hostname))?;
    match &plan.root {
        Root::Toolbox {
            mountpoint,
            root_opts,
            busybox,
            applets,
            scratch,
            tmp_opts,
        } => build_toolbox(mountpoint, root_opts, busybox, applets, scratch, tmp_opts)?,
        Root::Guest { path, read_only } => build_guest(path, *read_only)?,
    }
    // The working directory is the new root. pivot_root(".", ".") stacks the old root on
    // top of it; detaching that leaves nothing of the host reachable.
    check(Step::PivotRoot, sys::pivot_root(c".", c"."))?;
    check(Step::PivotRoot, sys::umount2(c".", libc::MNT_DETACH))?;
    check(Step::PivotRoot, sys::chdir(c"/"))?;

    check(Step::Setgroups, sys::setgroups_empty())?;
    check(Step::UserNamespace, sys::unshare(libc::CLONE_NEWUSER))?;
    check(Step::IdMap, sys::write_all(p.req_w, &[1]))?;
    if sys::read_byte(p.done_r) != Some(1) {
        return Err((Step::IdMap, libc::EPERM));
    }
    check(Step::SetIds, sys::setresgid(plan.inner_gid))?;
    check(Step::SetIds, sys::setresuid(plan.inner_uid))?;
    for &(resource, value) in &plan.rlimits {
        check(Step::Rlimits, sys::setrlimit(resource, value))?;
    }
    check(Step::NoNewPrivs, sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1))?;
    // Changing credentials cleared the parent-death signal: set it again, then make sure
    // the intermediate did not die in between (it holds done_w open until it exits).
    check(
        Step::ParentGone,
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong),
    )?;
    if sys::hung_up(p.done_r) {
        return Err((Step::ParentGone, libc::ESRCH));
    }
    check(Step::Chdir, sys::chdir(&plan.workdir))?;
    // Nothing of deployd's may reach the program: every descriptor above stderr closes at
    // exec (std's own exec-status pipe and the error pipe already do).
    check(Step::Descriptors, sys::cloexec_above_stderr())?;
    Ok(())
}

const DEVICES: [(&CStr, &CStr); 5] = [
    (c"/dev/null", c"dev/null"),
    (c"/dev/zero", c"dev/zero"),
    (c"/dev/full", c"dev/full"),
    (c"/dev/random", c"dev/random"),
    (c"/dev/urandom", c"dev/urandom"),
];

const DEV_LINKS: [(&CStr, &CStr); 4] = [
    (c"/proc/self/fd", c"dev/fd"),
    (c"/proc/self/fd/0", c"dev/stdin"),
    (c"/proc/self/fd/1", c"dev/stdout"),
    (c"/proc/self/fd/2", c"dev/stderr"),
];

/// Binds the device nodes into `./dev` (which must exist).
fn populate_dev() -> SetupResult {
    for (source, target) in DEVICES {
        check(Step::Devices, sys::touch(target))?;
        check(
            Step::Devices,
            sys::mount(Some(source), target, None, libc::MS_BIND, None),
        )?;
    }
    for (dest, link) in DEV_LINKS {
        check(Step::Devices, sys::symlink(dest, link))?;
    }
    Ok(())
}

/// Mounts the new pid namespace's /proc at `./proc` and hides the parts of it through which
/// a process running as (namespaced) root could reach the host kernel.
fn mount_proc() -> SetupResult {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    check(
        Step::Proc,
        sys::mount(Some(c"proc"), c"proc", Some(c"proc"), flags, None),
    )?;
    for path in [
        c"proc/sys",
        c"proc/sysrq-trigger",
        c"proc/irq",
        c"proc/bus",
        c"proc/fs",
    ] {
        if sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) < 0 {
            if sys::errno() == libc::ENOENT {
                continue;
            }
            return Err((Step::Proc, sys::errno()));
        }
        let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags;
        check(Step::Proc, sys::mount(None, path, None, ro, None))?;
    }
    // Kernel interfaces, and what the host's /proc would tell of the appliance: its kernel
    // command line and config, its disks, modules, swap and memory map.
    for path in [
        c"proc/kcore",
        c"proc/keys",
        c"proc/timer_list",
        c"proc/sched_debug",
        c"proc/latency_stats",
        c"proc/cmdline",
        c"proc/config.gz",
        c"proc/partitions",
        c"proc/diskstats",
        c"proc/modules",
        c"proc/swaps",
        c"proc/devices",
        c"proc/iomem",
        c"proc/ioports",
        c"proc/kallsyms",
        c"proc/vmallocinfo",
        c"proc/mtd",
    ] {
        if sys::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None) < 0
            && sys::errno() != libc::ENOENT
        {
            return Err((Step::Proc, sys::errno()));
        }
    }
    for path in [c"proc/acpi", c"proc/scsi", c"proc/asound"] {
        let r = sys::mount(Some(c"tmpfs"), path, Some(c"tmpfs"), libc::MS_RDONLY, None);
        if r < 0 && sys::errno() != libc::ENOENT {
            return Err((Step::Proc, sys::errno()));
        }
    }
    Ok(())
}

fn build_toolbox(
    mountpoint: &CStr,
    root_opts: &CStr,
    busybox: &CStr,
    applets: &[CString],
    scratch: &CStr,
    tmp_opts: &CStr,
) -> SetupResult {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    check(
        Step::RootTmpfs,
        sys::mount(
            Some(c"tmpfs"),
            mountpoint,
            Some(c"tmpfs"),
            nosuid_nodev,
            Some(root_opts),
        ),
    )?;
    check(Step::Chdir, sys::chdir(mountpoint))?;
    for dir in [c"bin", c"dev", c"proc", c"tmp", c"scratch"] {
        check(Step::Mkdir, sys::mkdir(dir, 0o755))?;
    }
    check(Step::Busybox, sys::touch(c"bin/busybox"))?;
    check(
        Step::Busybox,
        sys::mount(Some(busybox), c"bin/busybox", None, libc::MS_BIND, None),
    )?;
    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosuid_nodev;
    check(
        Step::Busybox,
        sys::mount(None, c"bin/busybox", None, ro, None),
    )?;
    for applet in applets {
        check(Step::Busybox, sys::symlink(c"busybox", applet))?;
    }
    populate_dev()?;
    mount_proc()?;
    check(
        Step::Tmp,
        sys::mount(
            Some(c"tmpfs"),
            c"tmp",
            Some(c"tmpfs"),
            nosuid_nodev,
            Some(tmp_opts),
        ),
    )?;
    check(
        Step::ScratchBind,
        sys::mount(Some(scratch), c"scratch", None, libc::MS_BIND, None),
    )?;
    let rw = libc::MS_BIND | libc::MS_REMOUNT | nosuid_nodev;
    check(
        Step::ScratchBind,
        sys::mount(None, c"scratch", None, rw, None),
    )?;
    check(Step::ReadOnlyRoot, sys::mount(None, c".", None, ro, None))?;
    Ok(())
}

fn build_guest(path: &CStr, read_only: bool) -> SetupResult {
    check(
        Step::GuestBind,
        sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None),
    )?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    check(Step::GuestBind, sys::mount(None, path, None, flags, None))?;
    check(Step::Chdir, sys::chdir(path))?;
    // A guest without /proc or /dev gets none: creating the directories would change it.
    match mount_proc() {
        Err((Step::Proc, libc::ENOENT)) | Ok(()) => {}
        Err(e) => return Err(e),
    }
    let dev_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
    let r = sys::mount(
        Some(c"tmpfs"),
        c"dev",
        Some(c"tmpfs"),
        dev_flags,
        Some(c"mode=0755,size=64k"),
    );
    if r == 0 {
        populate_dev()?;
    } else if sys::errno() != libc::ENOENT {
        return Err((Step::Devices, sys::errno()));
    }
    Ok(())
}

/// Thin wrappers over system calls; each is async-signal-safe and takes only pointers to
/// memory that outlives the call.
mod sys {
    use std::ffi::CStr;
    use std::os::fd::RawFd;

    use libc::{c_int, c_ulong};

    fn ptr(s: Option<&CStr>) -> *const libc::c_char {
        s.map_or(std::ptr::null(), CStr::as_ptr)
    }

    pub fn errno() -> i32 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }

    pub fn mount(
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> c_int {
        // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
        unsafe {
            libc::mount(
                ptr(source),
                target.as_ptr(),
                ptr(fstype),
                flags,
                ptr(data).cast(),
            )
        }
    }

    pub fn umount2(target: &CStr, flags: c_int) -> c_int {
        // SAFETY: `target` is a NUL-terminated string.
        unsafe { libc::umount2(target.as_ptr(), flags) }
    }

    pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> c_int {
        // SAFETY: both arguments are NUL-terminated strings.
        unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) as c_int }
    }

    pub fn chdir(path: &CStr) -> c_int {
        // SAFETY: `path` is a NUL-terminated string.
        unsafe { libc::chdir(path.as_ptr()) }
    }

    pub fn mkdir(path: &CStr, mode: libc::mode_t) -> c_int {
        // SAFETY: `path` is a NUL-terminated string.
        unsafe { libc::mkdir(path.as_ptr(), mode) }
    }

    pub fn symlink(dest: &CStr, link: &CStr) -> c_int {
        // SAFETY: both arguments are NUL-terminated strings.
        unsafe { libc::symlink(dest.as_ptr(), link.as_ptr()) }
    }

    /// Creates an empty file to bind something onto.
    pub fn touch(path: &CStr) -> c_int {
        let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: `path` is a NUL-terminated string; the mode is passed as the variadic arg.
        let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644 as libc::c_uint) };
        if fd < 0 {
            return fd;
        }
        close(fd);
        0
    }

    pub fn write_file(path: &CStr, data: &[u8]) -> c_int {
        // SAFETY: `path` is a NUL-terminated string.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return fd;
        }
        let r = write_all(fd, data);
        close(fd);
        r
    }

    pub fn open_dir(path: &CStr) -> RawFd {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: `path` is a NUL-terminated string.
        unsafe { libc::open(path.as_ptr(), flags) }
    }

    /// Writes `data` to `name` relative to `dir` in one `write` (as id maps require).
    pub fn write_at(dir: RawFd, name: &CStr, data: &[u8]) -> bool {
        // SAFETY: `name` is a NUL-terminated string; `dir` is an fd or -1 (then EBADF).
        let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        // SAFETY: `data` is a valid buffer of `data.len()` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        close(fd);
        n == data.len() as isize
    }

    pub fn write_all(fd: RawFd, mut data: &[u8]) -> c_int {
        while !data.is_empty() {
            // SAFETY: `data` is a valid buffer of `data.len()` bytes.
            let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return -1;
            }
            data = &data[n as usize..];
        }
        0
    }

    pub fn read_byte(fd: RawFd) -> Option<u8> {
        let mut b = 0u8;
        loop {
            // SAFETY: reads at most one byte into `b`.
            let n = unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
            if n == 1 {
                return Some(b);
            }
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return None;
        }
    }

    /// True when the write end of the pipe `fd` is closed and nothing is left to read.
    pub fn hung_up(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd.
        let n = unsafe { libc::poll(&raw mut pfd, 1, 0) };
        n > 0 && pfd.revents & libc::POLLHUP != 0
    }

    pub fn close(fd: RawFd) {
        // SAFETY: closing a descriptor this process owns.
        unsafe { libc::close(fd) };
    }

    /// Marks every descriptor above 2 close-on-exec: `close_range` with
    /// `CLOSE_RANGE_CLOEXEC` (Linux 5.11), else one `fcntl` per possible descriptor.
    pub fn cloexec_above_stderr() -> c_int {
        // SAFETY: changes descriptor flags only; no memory is involved.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if r == 0 {
            return 0;
        }
        // RLIMIT_NOFILE was already lowered: the loop must reach above it.
        let top: c_int = 1 << 16;
        for fd in 3..top {
            // SAFETY: F_SETFD on any integer is harmless (EBADF when not open).
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        0
    }

    pub fn close_range(first: u32, last: u32) {
        // SAFETY: closes descriptors only; no memory is involved.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    }

    pub fn pipe() -> Option<(RawFd, RawFd)> {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` has room for the two descriptors.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        (r == 0).then_some((fds[0], fds[1]))
    }

    /// A plain fork through the raw system call, bypassing libc's atfork handlers (we are
    /// already in a forked copy of a multi-threaded process).
    pub fn fork() -> c_int {
        // SAFETY: clone with only SIGCHLD and a null stack behaves like fork(2); the child
        // continues on a copy of this stack and only makes raw system calls until exec.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            ) as c_int
        }
    }

    pub fn unshare(flags: c_int) -> c_int {
        // SAFETY: no memory is involved.
        unsafe { libc::unshare(flags) }
    }

    pub fn prctl(option: c_int, arg: c_ulong) -> c_int {
        // SAFETY: the options used here take integer arguments only.
        unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }
    }

    pub fn getppid() -> libc::pid_t {
        // SAFETY: no arguments.
        unsafe { libc::getppid() }
    }

    pub fn sethostname(name: &CStr) -> c_int {
        let bytes = name.to_bytes();
        // SAFETY: `bytes` is a valid buffer of the given length.
        unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) }
    }

    pub fn setgroups_empty() -> c_int {
        // SAFETY: a zero-length list with a null pointer is valid.
        unsafe { libc::setgroups(0, std::ptr::null()) }
    }

    pub fn setresgid(gid: u32) -> c_int {
        // SAFETY: raw system call (not glibc's wrapper, which would try to signal other
        // threads of a process that has none).
        unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) as c_int }
    }

    pub fn setresuid(uid: u32) -> c_int {
        // SAFETY: as for `setresgid`.
        unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) as c_int }
    }

    pub fn setrlimit(resource: c_int, value: u64) -> c_int {
        let lim = libc::rlimit64 {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: `lim` is valid for the call; the old-value pointer is null.
        unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                resource,
                &raw const lim,
                std::ptr::null::<libc::rlimit64>(),
            ) as c_int
        }
    }

    pub fn wait(pid: libc::pid_t) -> c_int {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
            if r == pid {
                return status;
            }
            if r < 0 && errno() != libc::EINTR {
                return 127 << 8;
            }
        }
    }

    /// Exits the way the waited-for process did: same code, or the same fatal signal.
    pub fn exit_like(status: c_int) -> ! {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            // SAFETY: resetting a disposition, unblocking and raising a signal on this
            // process; all async-signal-safe.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut set);
                libc::sigaddset(&raw mut set, sig);
                libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
                libc::kill(libc::getpid(), sig);
                libc::_exit(128 + sig)
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            127
        };
        // SAFETY: `_exit` is async-signal-safe and does not run atexit handlers.
        unsafe { libc::_exit(code) }
    }
}
