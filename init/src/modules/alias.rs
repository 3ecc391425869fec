//! `modules.alias` and the devices present: which hardware drivers this machine needs.
//!
//! Each device the kernel has found names itself in `/sys/bus/*/devices/*/modalias` (for a PCI
//! device `pci:v00008086d000010D3sv...`); each driver claims devices with shell-style
//! patterns in `modules.alias` (`alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e`). A driver
//! is needed when one of its patterns matches a present device.

use std::collections::BTreeSet;
use std::path::Path;

/// The patterns of `modules.alias`, by module.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    /// (pattern, module name). Patterns are compiled only when their literal start fits a
    /// device: 600 compiled globs cost tens of milliseconds at boot under TCG.
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// Parses `modules.alias` text (`alias PATTERN MODULE` lines; others are ignored).
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("alias"), Some(pattern), Some(module)) => {
                        Some((pattern.to_owned(), super::dep::normalize(module)))
                    }
                    _ => None,
                }
            })
            .collect();
        Self { entries }
    }

    /// Whether `module` claims devices on `bus` (an alias starting `bus:`).
    pub fn claims_bus(&self, module: &str, bus: &str) -> bool {
        let module = super::dep::normalize(module);
        self.entries
            .iter()
            .any(|(p, m)| *m == module && p.strip_prefix(bus).is_some_and(|r| r.starts_with(':')))
    }

    /// Whether `module` claims one of `devices` (modalias strings). A pattern that is not
    /// valid glob syntax matches nothing.
    pub fn matches_any(&self, module: &str, devices: &[String]) -> bool {
        let module = super::dep::normalize(module);
        self.entries
            .iter()
            .filter(|(_, m)| *m == module)
            .any(|(p, _)| {
                // The text before the first wildcard must start the device's: most patterns
                // name a vendor and device, so few get as far as the glob.
                let literal = &p[..p.find(['*', '?', '[']).unwrap_or(p.len())];
                let mut fits = devices.iter().filter(|d| d.starts_with(literal)).peekable();
                if fits.peek().is_none() {
                    return false;
                }
                glob::Pattern::new(p).is_ok_and(|g| fits.any(|d| g.matches(d)))
            })
    }
}

/// `devices` with, for each virtio PCI device among them, the modalias of the virtio device it
/// will become once `virtio_pci` is loaded (`virtio:d<type>v<vendor>`): a virtio driver is
/// needed only for the kinds of virtio device present. The type is the PCI device ID less
/// 0x1040 (modern devices) or the subsystem device ID (transitional 0x1000-0x103f ones).
pub fn with_virtio_children(devices: &[String]) -> Vec<String> {
    let hex = |s: &str, key: &str| -> Option<u32> {
        let i = s.find(key)? + key.len();
        u32::from_str_radix(s.get(i..i + 8)?, 16).ok()
    };
    let mut out = devices.to_vec();
    for d in devices {
        let Some(rest) = d.strip_prefix("pci:") else {
            continue;
        };
        let (Some(0x1af4), Some(id), Some(sub_vendor), Some(sub_id)) = (
            hex(rest, "v"),
            hex(rest, "d"),
            hex(rest, "sv"),
            hex(rest, "sd"),
        ) else {
            continue;
        };
        let kind = match id {
            0x1000..=0x103f => sub_id,
            0x1040..=0x107f => id - 0x1040,
            _ => continue,
        };
        out.push(format!("virtio:d{kind:08X}v{sub_vendor:08X}"));
    }
    out
}

/// The modalias of every device under `sys` (`/sys`): `bus/*/devices/*/modalias`, sorted and
/// each once. A bus or device that cannot be read is skipped.
pub fn device_modaliases(sys: &Path) -> Vec<String> {
    let mut out = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else {
        return Vec::new();
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devices.flatten() {
            if let Ok(a) = std::fs::read_to_string(dev.path().join("modalias")) {
                let a = a.trim();
                if !a.is_empty() {
                    out.insert(a.to_owned());
                }
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as Debian 12's kernel has them.
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v00008086d00001533sv*sd*bc*sc*i* igb
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias scsi:t-0x00* sd_mod
alias fs-ext4 ext4
alias acpi*:PNP0C0C:* button
";

    #[test]
    fn a_driver_is_needed_when_a_present_device_matches_its_patterns() {
        let a = Aliases::parse(ALIAS);
        // QEMU q35 with a virtio disk: the ICH9 SATA controller (class 01 06 01) and a
        // virtio PCI device; no Intel NIC.
        let devices = vec![
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_owned(),
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00".to_owned(),
        ];
        assert!(a.matches_any("virtio_pci", &devices));
        assert!(a.matches_any("ahci", &devices));
        assert!(!a.matches_any("e1000e", &devices));
        assert!(!a.matches_any("igb", &devices));
        // A module without aliases matches nothing.
        assert!(!a.matches_any("nbd", &devices));
        let with_nic = [
            devices.clone(),
            vec!["pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00".to_owned()],
        ]
        .concat();
        assert!(a.matches_any("e1000e", &with_nic));
    }

    #[test]
    fn virtio_pci_devices_tell_which_virtio_drivers_are_needed() {
        let devices = vec![
            // Transitional block (subsystem 2), modern network (0x1041), and an Intel NIC.
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00".to_owned(),
            "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00".to_owned(),
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00".to_owned(),
        ];
        let all = with_virtio_children(&devices);
        assert_eq!(
            all[3..],
            ["virtio:d00000002v00001AF4", "virtio:d00000001v00001AF4"]
        );
        let a = Aliases::parse(&format!(
            "{ALIAS}alias virtio:d00000001v* virtio_net\nalias virtio:d00000008v* virtio_scsi\n"
        ));
        assert!(a.matches_any("virtio_blk", &all));
        assert!(a.matches_any("virtio_net", &all));
        assert!(!a.matches_any("virtio_scsi", &all));
        assert!(!a.matches_any("virtio_blk", &devices));
        // A pattern whose bus part has wildcards is tried on every device.
        let acpi = vec!["acpi:PNP0C0C:".to_owned()];
        assert!(a.matches_any("button", &acpi));
    }

    #[test]
    fn buses_are_told_apart_and_odd_lines_ignored() {
        let a = Aliases::parse(&format!("{ALIAS}alias\nalias only-one\nsoftdep x pre: y\n"));
        assert!(a.claims_bus("e1000e", "pci"));
        assert!(a.claims_bus("virtio_blk", "virtio"));
        assert!(!a.claims_bus("virtio_blk", "pci"));
        assert!(!a.claims_bus("ext4", "pci"));
        assert!(
            a.claims_bus("sd-mod", "scsi"),
            "names are compared as the kernel does"
        );
        // `acpi*:` is not the `acpi` bus prefix followed by a colon.
        assert!(!a.claims_bus("button", "acpi"));
    }

    #[test]
    fn modaliases_are_read_from_every_bus() {
        let sys = tempfile::tempdir().unwrap();
        for (bus, dev, alias) in [
            (
                "pci",
                "0000:00:01.0",
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
            ),
            (
                "pci",
                "0000:00:02.0",
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
            ),
            ("virtio", "virtio0", "virtio:d00000002v00001AF4\n"),
        ] {
            let d = sys.path().join("bus").join(bus).join("devices").join(dev);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("modalias"), alias).unwrap();
        }
        // A device without a modalias file is not an error.
        std::fs::create_dir_all(sys.path().join("bus/platform/devices/serial8250")).unwrap();
        assert_eq!(
            device_modaliases(sys.path()),
            [
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
                "virtio:d00000002v00001AF4"
            ]
        );
        assert!(device_modaliases(&sys.path().join("missing")).is_empty());
    }
}
