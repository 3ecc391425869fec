//! The few raw syscalls init needs that std does not offer: reaping any child, signalling,
//! mounting, the hostname, sync and reboot. Each wrapper is a thin, checked call.

use std::ffi::CString;
use std::io;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(c) => write!(f, "exit status {c}"),
            ExitKind::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Reaps one exited child without blocking: `Ok(None)` when none is waiting (or there are
/// no children at all).
pub fn reap_one() -> io::Result<Option<(i32, ExitKind)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable c_int for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid == 0 {
        return Ok(None);
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ECHILD) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let kind = if libc::WIFSIGNALED(status) {
        ExitKind::Signal(libc::WTERMSIG(status))
    } else {
        ExitKind::Code(libc::WEXITSTATUS(status))
    };
    Ok(Some((pid, kind)))
}

/// Reaps every child that has exited.
pub fn reap_all() -> Vec<(i32, ExitKind)> {
    let mut out = Vec::new();
    while let Ok(Some(r)) = reap_one() {
        out.push(r);
    }
    out
}

pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory effects; pid > 0 targets exactly one process.
    if pid > 0 && unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else if pid <= 0 {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes written to the terminal on `fd` and not yet sent (`TIOCOUTQ`); `None` when `fd`
/// is not a terminal.
pub fn output_queued(fd: libc::c_int) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through the valid pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (rc == 0).then(|| usize::try_from(n).unwrap_or(0))
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// mount(2) with string data (`None` for no options).
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (source, target, fstype) = (cstring(source)?, cstring(target)?, cstring(fstype)?);
    let data = data.map(cstring).transpose()?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>());
    // SAFETY: all pointers are NUL-terminated strings (or null for data) that outlive the
    // call; the kernel copies them.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Points any closed standard descriptor (0, 1, 2) at `console`. The kernel opens
/// /dev/console for init only if the initramfs has that node; after devtmpfs is mounted it
/// exists, and without this the ready line and all logs would go nowhere.
pub fn attach_console(console: &str) -> io::Result<()> {
    // SAFETY: F_GETFD only queries the descriptor table.
    let closed: Vec<libc::c_int> = (0..=2)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1)
        .collect();
    if closed.is_empty() {
        return Ok(());
    }
    let path = cstring(console)?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    for target in closed {
        // SAFETY: `fd` is open; dup2 onto a closed standard descriptor affects nothing else.
        if fd != target && unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if fd > 2 {
        // SAFETY: `fd` is ours and no longer needed: its duplicates stay open.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes, valid for the call.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast::<libc::c_char>(), name.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umount(2); a filesystem still busy is detached lazily so the reboot can go on (its
/// writes were synced before).
pub fn umount(target: &str) -> io::Result<()> {
    let t = cstring(target)?;
    // SAFETY: `t` is a NUL-terminated string that outlives the call.
    if unsafe { libc::umount(t.as_ptr()) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: as above.
        if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(io::Error::last_os_error());
    }
    Err(e)
}

/// Time since the kernel started (CLOCK_BOOTTIME), suspend included.
pub fn boottime() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// reboot(2) with one of the `libc::RB_*` commands. On success of a power-off or restart it
/// does not return.
pub fn reboot(cmd: libc::c_int) -> io::Result<()> {
    // SAFETY: reboot has no memory effects; an invalid command fails with EINVAL.
    if unsafe { libc::reboot(cmd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Blocks `signals` for this thread (and the threads it creates), so they are only received
/// through `sigtimedwait`.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is an initialised sigset_t; the old set is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Undoes `block_signals` for this thread.
pub fn unblock_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is an initialised sigset_t; the old set is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Makes `cmd`'s child start with no blocked signals. std passes the parent's mask on, and
/// PID 1 blocks SIGTERM and friends to read them synchronously: without this a daemon could
/// not be stopped with SIGTERM.
pub fn clear_signal_mask_on_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let empty = sigset(&[]);
    // SAFETY: the closure runs between fork and exec and only calls pthread_sigmask, which
    // is async-signal-safe, on a set copied in beforehand; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(rc))
            }
        });
    }
}

/// Makes the child the leader of a new session whose controlling terminal is its stdin
/// (a terminal), so that Ctrl-C and job control work in the console menu and its shell.
pub fn new_session_on_stdin_tty(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec, only the async-signal-safe setsid and ioctl are called.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 1) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only reads valid numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Waits up to `timeout` for one of the (blocked) `signals`; `None` on timeout.
pub fn wait_signal(signals: &[libc::c_int], timeout: std::time::Duration) -> Option<libc::c_int> {
    let set = sigset(signals);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; no siginfo is requested.
    let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (rc > 0).then_some(rc)
}

/// Whether this process is PID 1.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Whether this CPU is QEMU's software emulation (TCG), which names itself in the
/// hypervisor leaf of CPUID; hardware and hardware-assisted VMs (KVM, Xen, ...) say other
/// things or nothing.
pub fn software_emulation() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // The hypervisor bit (CPUID.1:ECX[31]) says whether leaf 0x4000_0000 is meaningful.
        if __cpuid(1).ecx & (1 << 31) == 0 {
            return false;
        }
        let leaf = __cpuid(0x4000_0000);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
        vendor[8..].copy_from_slice(&leaf.edx.to_le_bytes());
        &vendor == b"TCGTCGTCGTCG"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Every program this process executes from now on is loaded at fixed addresses (the
/// personality flag is inherited across fork and exec); this process keeps its own layout.
pub fn no_address_randomization_for_children() -> io::Result<()> {
    // SAFETY: personality(2) with 0xffffffff only reads the current persona; with a value,
    // it sets the persona of this process, which touches no memory of ours.
    let current = unsafe { libc::personality(0xffff_ffff) };
    if current == -1 {
        return Err(io::Error::last_os_error());
    }
    let flag = libc::ADDR_NO_RANDOMIZE as libc::c_int;
    // SAFETY: as above.
    if unsafe { libc::personality((current | flag) as libc::c_ulong) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn persona_of_child(fixed: bool) -> u32 {
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/personality");
        if fixed {
            // SAFETY: between fork and exec the child makes one personality(2) call, which
            // allocates nothing and takes no lock.
            unsafe { cmd.pre_exec(super::no_address_randomization_for_children) };
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).unwrap()
    }

    #[test]
    fn programs_executed_after_the_call_get_fixed_addresses() {
        let flag = libc::ADDR_NO_RANDOMIZE as u32;
        assert_eq!(persona_of_child(false) & flag, 0);
        // Set in the forked child before it executes `cat`: `cat` has it.
        assert_eq!(persona_of_child(true) & flag, flag);
    }
}
