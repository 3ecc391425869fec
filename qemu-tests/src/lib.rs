//! Virtual hardware for Streamer's system tests and `make run`: QEMU VMs (TCG) with their
//! serial consoles captured for expect-style waits and kept as log files, QMP control, and
//! the appliance booted from the built image by direct kernel boot or under OVMF.
//!
//! - [`qemu`]: one QEMU process, killed when dropped.
//! - [`console`]: a VM's serial console (log file, waits with timeouts, input).
//! - [`enclosure`]: the enclosure's deployment network (namespaces, bridge, taps).
//! - [`qmp`]: the QEMU Machine Protocol (power button, status).
//! - [`appliance`]: the appliance image as a VM, its readiness, its root shell.
//! - [`api`]: a client of the appliance's REST API (login, uploads, tasks).
//! - [`redfish`]: a Redfish double that powers compute-module VMs on and off and holds
//!   their NIC's iSCSI boot settings.
//! - [`firmware`]: the NIC firmware's stand-in (those settings, given to iPXE by DHCP).
//! - [`compute`]: compute-module VMs booting their OS volume over NBD (QEMU's driver) or
//!   through their firmware over iSCSI.
//! - [`debian`]: a cached Debian golden image made with mmdebstrap.
//! - [`linux`]: the Linux scenarios' plans (deploy: hostname, address, user; capture).
//! - [`pair`]: two appliance VMs paired through their API, and the witness.
//! - [`rig`]: a whole enclosure (network, appliance, registered modules) for a scenario.
//! - [`bench`]: boot time, image size and idle memory for BENCHMARKS.md.
//! - [`bench_lio`]: storaged's iSCSI target beside the kernel's (LIO) inside the appliance VM.

pub mod api;
pub mod appliance;
pub mod bench;
pub mod bench_lio;
pub mod compute;
pub mod console;
pub mod debian;
pub mod enclosure;
pub mod firmware;
pub mod linux;
pub mod pair;
pub mod qemu;
pub mod qmp;
pub mod redfish;
pub mod rig;
