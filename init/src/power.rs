//! The power button: ACPI reports it as an input device named "Power Button"; a press
//! becomes SIGPWR to PID 1, which shuts down cleanly (QEMU's `system_powerdown`, a short
//! press on a real appliance).

use std::io::Read;
use std::path::{Path, PathBuf};

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: struct timeval (16 bytes), type, code (u16), value (i32).
pub const EVENT_SIZE: usize = 24;

/// The /dev/input/eventN nodes whose device is a power button.
pub fn power_buttons(sys_class_input: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(sys_class_input) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|n| n.trim() == "Power Button")
        })
        .map(|e| Path::new("/dev/input").join(e.file_name()))
        .collect();
    found.sort();
    found
}

/// Whether one input_event record is a power-key press.
pub fn is_power_press(event: &[u8; EVENT_SIZE]) -> bool {
    let ty = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    ty == EV_KEY && code == KEY_POWER && value == 1
}

/// Watches every power button on its own thread; a press sends SIGPWR to this process.
/// Signals stay blocked in these threads (they inherit PID 1's mask), so PID 1's main
/// loop receives it.
pub fn watch(say: fn(&str)) {
    for dev in power_buttons(Path::new("/sys/class/input")) {
        let mut f = match std::fs::File::open(&dev) {
            Ok(f) => f,
            Err(e) => {
                say(&format!("power button {}: {e}", dev.display()));
                continue;
            }
        };
        say(&format!("power button: {}", dev.display()));
        std::thread::spawn(move || {
            let mut ev = [0u8; EVENT_SIZE];
            while f.read_exact(&mut ev).is_ok() {
                if is_power_press(&ev) {
                    // SAFETY: kill on our own pid has no memory effects.
                    unsafe { libc::kill(libc::getpid(), libc::SIGPWR) };
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut e = [0u8; EVENT_SIZE];
        e[16..18].copy_from_slice(&ty.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(1, 116, 1)));
        assert!(!is_power_press(&event(1, 116, 0)), "release");
        assert!(!is_power_press(&event(1, 115, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "sync");
    }

    #[test]
    fn buttons_are_found_by_device_name() {
        let d = tempfile::tempdir().unwrap();
        for (ev, name) in [("event0", "Power Button"), ("event1", "AT Keyboard")] {
            std::fs::create_dir_all(d.path().join(ev).join("device")).unwrap();
            std::fs::write(d.path().join(ev).join("device/name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir_all(d.path().join("input0")).unwrap();
        assert_eq!(
            power_buttons(d.path()),
            [PathBuf::from("/dev/input/event0")]
        );
    }
}
