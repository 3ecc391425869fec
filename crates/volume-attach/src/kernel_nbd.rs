//! The kernel's NBD client, used on the appliance (where the `nbd` module is loaded) instead
//! of FUSE: we do the handshake ourselves, then give the connected socket to `/dev/nbdN` with
//! the classic ioctls (`NBD_SET_SOCK`, `NBD_DO_IT` in a thread of ours). The disk file is then
//! `/dev/nbdN`, and partitions and LVs get loop devices on it exactly as on the host.
//!
//! This is the only module besides `loopdev` that calls `ioctl`. If this process dies, the
//! thread in `NBD_DO_IT` dies with it and the kernel disconnects the device.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// <linux/nbd.h>: _IO(0xab, n)
const NBD_SET_SOCK: libc::c_ulong = 0xab00;
const NBD_SET_BLKSIZE: libc::c_ulong = 0xab01;
const NBD_DO_IT: libc::c_ulong = 0xab03;
const NBD_CLEAR_SOCK: libc::c_ulong = 0xab04;
const NBD_SET_SIZE_BLOCKS: libc::c_ulong = 0xab07;
const NBD_DISCONNECT: libc::c_ulong = 0xab08;
const NBD_SET_TIMEOUT: libc::c_ulong = 0xab09;
const NBD_SET_FLAGS: libc::c_ulong = 0xab0a;

/// Seconds before the kernel gives up on an unanswered request.
const TIMEOUT_SECS: libc::c_ulong = 60;

/// True when `/dev/nbd0` exists and the `nbd` module is loaded.
pub fn available() -> bool {
    Path::new("/dev/nbd0").exists() && Path::new("/sys/module/nbd").exists()
}

fn ioctl(dev: &File, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: every NBD ioctl used here takes an integer argument by value (no pointers).
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A `/dev/nbdN` connected to an export.
#[derive(Debug)]
pub struct KernelNbd {
    dev: File,
    path: PathBuf,
    thread: Option<JoinHandle<io::Result<()>>>,
    _stream: TcpStream,
}

impl KernelNbd {
    /// Hands `stream` (after a finished handshake: `size` bytes, transmission `flags`) to a
    /// free NBD device and starts it.
    pub fn start(stream: TcpStream, size: u64, flags: u16) -> io::Result<KernelNbd> {
        let mut last = io::Error::other("no free /dev/nbdN");
        for n in 0..256 {
            let path = PathBuf::from(format!("/dev/nbd{n}"));
            if !path.exists() {
                break;
            }
            if Path::new(&format!("/sys/block/nbd{n}/pid")).exists() {
                continue; // connected
            }
            let dev = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)?;
            if let Err(e) = ioctl(&dev, NBD_SET_SOCK, stream.as_raw_fd() as libc::c_ulong) {
                last = e;
                continue; // EBUSY: someone else took it
            }
            let configured = ioctl(&dev, NBD_SET_BLKSIZE, 512)
                .and_then(|()| ioctl(&dev, NBD_SET_SIZE_BLOCKS, (size / 512) as libc::c_ulong))
                .and_then(|()| ioctl(&dev, NBD_SET_FLAGS, libc::c_ulong::from(flags)))
                .and_then(|()| ioctl(&dev, NBD_SET_TIMEOUT, TIMEOUT_SECS));
            if let Err(e) = configured {
                let _ = ioctl(&dev, NBD_CLEAR_SOCK, 0);
                return Err(e);
            }
            let runner = dev.try_clone()?;
            let thread = std::thread::Builder::new()
                .name(format!("nbd{n}"))
                .spawn(move || {
                    // Blocks while the device is connected.
                    let r = ioctl(&runner, NBD_DO_IT, 0);
                    let _ = ioctl(&runner, NBD_CLEAR_SOCK, 0);
                    r
                })?;
            let k = KernelNbd {
                dev,
                path,
                thread: Some(thread),
                _stream: stream,
            };
            // The device is live once the kernel records the pid of NBD_DO_IT's caller.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !Path::new(&format!("/sys/block/nbd{n}/pid")).exists() {
                if Instant::now() > deadline {
                    let _ = k.stop();
                    return Err(io::Error::other(format!("/dev/nbd{n} did not start")));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(k);
        }
        Err(last)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, disconnects (the kernel sends NBD_CMD_DISC) and waits for the device to stop.
    pub fn stop(mut self) -> io::Result<()> {
        let flushed = self.dev.sync_all();
        ioctl(&self.dev, NBD_DISCONNECT, 0)?;
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| io::Error::other("the NBD_DO_IT thread panicked"))??;
        }
        flushed
    }
}

impl Drop for KernelNbd {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = ioctl(&self.dev, NBD_DISCONNECT, 0);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Disconnects `/dev/nbdN` left connected by a crashed process.
pub fn disconnect(path: &Path) -> io::Result<()> {
    let dev = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    ioctl(&dev, NBD_DISCONNECT, 0)?;
    ioctl(&dev, NBD_CLEAR_SOCK, 0)
}
