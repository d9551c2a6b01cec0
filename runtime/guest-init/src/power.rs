//! The ACPI power button: how BytePort's own VMM asks for a graceful stop. The
//! kernel's `button` driver reports presses as `KEY_POWER` on an input device
//! named "Power Button" (`evdev` gives it a `/dev/input/eventN` node); a press
//! stops the app and powers off, like SIGTERM to PID 1.

use std::io::Read;
use std::path::PathBuf;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on x86_64: timeval (16) + type (2) + code (2) + value (4).
const EVENT_SIZE: usize = 24;

/// The event device of the power button, if the kernel has one.
pub fn find_power_button() -> Option<PathBuf> {
    let dir = std::fs::read_dir("/sys/class/input").ok()?;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("event") {
            continue;
        }
        let label = std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
        if label.trim() == "Power Button" {
            return Some(PathBuf::from("/dev/input").join(name));
        }
    }
    None
}

/// Whether one raw input event is a power-button press.
pub fn is_press(ev: &[u8; EVENT_SIZE]) -> bool {
    let kind = u16::from_le_bytes([ev[16], ev[17]]);
    let code = u16::from_le_bytes([ev[18], ev[19]]);
    let value = i32::from_le_bytes([ev[20], ev[21], ev[22], ev[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Calls `on_press` (from a thread of its own) each time the button is pressed.
/// Returns the device watched, or `None` if there is no power button.
pub fn watch(on_press: fn()) -> Option<PathBuf> {
    let path = find_power_button()?;
    let mut f = std::fs::File::open(&path).ok()?;
    std::thread::spawn(move || {
        let mut ev = [0u8; EVENT_SIZE];
        while f.read_exact(&mut ev).is_ok() {
            if is_press(&ev) {
                on_press();
            }
        }
    });
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut e = [0u8; EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_le_bytes());
        e[18..20].copy_from_slice(&code.to_le_bytes());
        e[20..24].copy_from_slice(&value.to_le_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_press(&ev(EV_KEY, KEY_POWER, 1)));
        assert!(!is_press(&ev(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_press(&ev(0, 0, 0)), "SYN");
        assert!(!is_press(&ev(EV_KEY, 30, 1)), "another key");
    }
}
