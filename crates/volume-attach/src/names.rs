//! Device names as plan scripts write them: `/dev/sda` (also `vda`, `hda`, `xvda`) for the
//! whole disk, a number after it for a partition, `/dev/VG/LV` or `/dev/mapper/VG-LV` (with
//! `-` inside names doubled) for a logical volume.

/// What a device name points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// The disk with this letter suffix (`a`, `b`, `aa`, ...).
    Disk(String),
    Partition(String, u32),
    Lv {
        vg: String,
        lv: String,
    },
}

/// Parses `name`, or `None` when it is no device name we know.
pub fn parse(name: &str) -> Option<DeviceName> {
    let rest = name.strip_prefix("/dev/")?;
    if let Some(m) = rest.strip_prefix("mapper/") {
        return split_mapper(m).map(|(vg, lv)| DeviceName::Lv { vg, lv });
    }
    for prefix in ["xvd", "sd", "vd", "hd"] {
        if let Some(tail) = rest.strip_prefix(prefix) {
            let letters: String = tail.chars().take_while(char::is_ascii_lowercase).collect();
            let digits = &tail[letters.len()..];
            if letters.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if digits.is_empty() {
                return Some(DeviceName::Disk(letters));
            }
            let n: u32 = digits.parse().ok().filter(|&n| n > 0)?;
            return Some(DeviceName::Partition(letters, n));
        }
    }
    let (vg, lv) = rest.split_once('/')?;
    if vg.is_empty() || lv.is_empty() || lv.contains('/') {
        return None;
    }
    Some(DeviceName::Lv {
        vg: vg.to_string(),
        lv: lv.to_string(),
    })
}

/// `VG-LV` with `--` standing for a `-` inside a name.
fn split_mapper(m: &str) -> Option<(String, String)> {
    let b = m.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let (vg, lv) = (&m[..i], &m[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some((vg.replace("--", "-"), lv.replace("--", "-")));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(vg: &str, lv: &str) -> Option<DeviceName> {
        Some(DeviceName::Lv {
            vg: vg.into(),
            lv: lv.into(),
        })
    }

    #[test]
    fn names() {
        assert_eq!(parse("/dev/sda"), Some(DeviceName::Disk("a".into())));
        assert_eq!(
            parse("/dev/vda2"),
            Some(DeviceName::Partition("a".into(), 2))
        );
        assert_eq!(
            parse("/dev/xvda15"),
            Some(DeviceName::Partition("a".into(), 15))
        );
        assert_eq!(
            parse("/dev/hdb1"),
            Some(DeviceName::Partition("b".into(), 1))
        );
        assert_eq!(parse("/dev/sda0"), None);
        assert_eq!(parse("/dev/rhel/root"), lv("rhel", "root"));
        assert_eq!(parse("/dev/mapper/rhel-root"), lv("rhel", "root"));
        assert_eq!(parse("/dev/mapper/my--vg-lv--1"), lv("my-vg", "lv-1"));
        assert_eq!(parse("/dev/mapper/novolume"), None);
        assert_eq!(parse("/dev/sda/x"), lv("sda", "x"));
        assert_eq!(parse("sda1"), None);
        assert_eq!(parse("/dev/a/b/c"), None);
    }
}
