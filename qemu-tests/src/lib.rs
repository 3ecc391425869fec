//! Virtual hardware for system tests and `make run`: QEMU processes with their serial
//! consoles logged and scripted, the appliance VM booted from the built image, an isolated
//! enclosure network (namespaces, a bridge, taps), compute-module VMs booting their OS
//! volume over NBD, and a Redfish test double that powers them.
