//! The hardware watchdog: if the machine has one, init arms it and pets it from its main
//! loop, so a hung PID 1 (or kernel) reboots the appliance. A clean shutdown disarms it
//! with the magic close.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// WDIOC_KEEPALIVE = _IOR('W', 5, int).
const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705;
/// WDIOC_SETTIMEOUT = _IOWR('W', 6, int).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// Reboot when init has not petted the watchdog for this long.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Pet it at least this often (the main loop wakes every few seconds anyway).
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Watchdog {
    file: std::fs::File,
    last: Instant,
    pub timeout: Duration,
}

impl Watchdog {
    /// Opens and arms the first watchdog device, if any.
    pub fn open() -> Option<std::io::Result<Watchdog>> {
        let path = ["/dev/watchdog0", "/dev/watchdog"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        Some(Self::open_path(path))
    }

    fn open_path(path: &str) -> std::io::Result<Watchdog> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let mut secs = TIMEOUT.as_secs() as libc::c_int;
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the valid pointer.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT, &mut secs) };
        // Some drivers cannot change the timeout: keep their own, still petted in time.
        let timeout = if r == 0 {
            Duration::from_secs(secs.max(1) as u64)
        } else {
            TIMEOUT
        };
        let mut w = Watchdog {
            file,
            last: Instant::now(),
            timeout,
        };
        w.pet();
        Ok(w)
    }

    /// Pets the watchdog when INTERVAL has passed since the last time.
    pub fn pet_if_due(&mut self) {
        if self.last.elapsed() >= INTERVAL.min(self.timeout / 3) {
            self.pet();
        }
    }

    fn pet(&mut self) {
        let mut dummy: libc::c_int = 0;
        // SAFETY: WDIOC_KEEPALIVE writes at most one int through the valid pointer.
        unsafe { libc::ioctl(self.file.as_raw_fd(), WDIOC_KEEPALIVE, &mut dummy) };
        self.last = Instant::now();
    }

    /// The magic close: the driver disarms instead of rebooting when the file closes.
    pub fn disarm(mut self) {
        let _ = self.file.write_all(b"V");
    }
}
