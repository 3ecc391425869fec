//! Virtual hardware for Streamer's system tests and `make run`: QEMU VMs (TCG) with their
//! serial consoles captured for expect-style waits and kept as log files, QMP control, and
//! the appliance booted from the built image by direct kernel boot or under OVMF.
//!
//! - [`qemu`]: one QEMU process, killed when dropped.
//! - [`console`]: a VM's serial console (log file, waits with timeouts, input).
//! - [`qmp`]: the QEMU Machine Protocol (power button, status).
//! - [`appliance`]: the appliance image as a VM, its readiness, its root shell.
//! - [`bench`]: boot time, image size and idle memory for BENCHMARKS.md.

pub mod appliance;
pub mod bench;
pub mod console;
pub mod qemu;
pub mod qmp;
