//! A newc ("070701") cpio writer: the format the kernel unpacks into the initramfs.
//!
//! Entries are kept sorted by path, so parents precede children and the same entries give
//! the same bytes whatever order they were added in. Every entry has uid/gid 0, the same
//! mtime and an inode number from its position.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// One entry: permission bits and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub perm: u32,
    pub kind: Kind,
}

/// An archive being assembled. Paths are relative, without a leading slash ("usr/bin/x").
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an entry and creates its missing parent directories (0755).
    pub fn insert(&mut self, path: &str, perm: u32, kind: Kind) {
        let path = clean(path);
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            self.entries.entry(p.to_string()).or_insert(Entry {
                perm: 0o755,
                kind: Kind::Dir,
            });
            parent = p;
        }
        self.entries.insert(path, Entry { perm, kind });
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, 0o755, Kind::Dir);
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) {
        self.insert(path, perm, Kind::File(data));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, 0o777, Kind::Symlink(target.to_string()));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(&clean(path))
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&clean(path))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the archive with every mtime set to `mtime`, ending with the trailer.
    pub fn write_to<W: Write>(&self, w: &mut W, mtime: u32) -> io::Result<()> {
        let mut pos = 0u64;
        for (i, (path, e)) in self.entries.iter().enumerate() {
            let (fmt, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &e.kind {
                Kind::Dir => (0o040000, 2, &[], (0, 0)),
                Kind::File(d) => (0o100000, 1, d, (0, 0)),
                Kind::Symlink(t) => (0o120000, 1, t.as_bytes(), (0, 0)),
                Kind::CharDev { major, minor } => (0o020000, 1, &[], (*major, *minor)),
            };
            let ino = u32::try_from(i + 1).map_err(|_| io::Error::other("too many entries"))?;
            let size = u32::try_from(data.len())
                .map_err(|_| io::Error::other(format!("{path}: larger than 4 GiB")))?;
            write_header(
                w,
                &mut pos,
                ino,
                fmt | (e.perm & 0o7777),
                nlink,
                mtime,
                size,
                rdev,
                path,
            )?;
            w.write_all(data)?;
            pos += data.len() as u64;
            pad4(w, &mut pos)?;
        }
        write_header(w, &mut pos, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!")?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn write_header<W: Write>(
    w: &mut W,
    pos: &mut u64,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
         {dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        dmaj = 0,
        dmin = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0,
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    *pos += (header.len() + namesize) as u64;
    pad4(w, pos)
}

fn pad4<W: Write>(w: &mut W, pos: &mut u64) -> io::Result<()> {
    let pad = (4 - (*pos % 4)) % 4;
    w.write_all(&[0u8; 3][..pad as usize])?;
    *pos += pad;
    Ok(())
}

/// One parsed entry, for tests and for `streamer-image` inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub path: String,
    pub mode: u32,
    pub mtime: u32,
    pub ino: u32,
    pub data: Vec<u8>,
}

/// Parses a newc archive (up to the trailer).
pub fn parse(mut buf: &[u8]) -> io::Result<Vec<Parsed>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut out = Vec::new();
    let total = buf.len();
    loop {
        if buf.len() < 110 || &buf[..6] != b"070701" {
            return Err(bad("bad cpio header"));
        }
        let field = |i: usize| -> io::Result<u32> {
            let s = std::str::from_utf8(&buf[6 + i * 8..14 + i * 8]).map_err(|_| bad("hex"))?;
            u32::from_str_radix(s, 16).map_err(|_| bad("hex"))
        };
        let (ino, mode, mtime, size, namesize) = (
            field(0)?,
            field(1)?,
            field(5)?,
            field(6)? as usize,
            field(11)? as usize,
        );
        let name_end = 110 + namesize;
        if buf.len() < name_end || namesize == 0 {
            return Err(bad("truncated name"));
        }
        let path = String::from_utf8_lossy(&buf[110..name_end - 1]).into_owned();
        let consumed = total - buf.len();
        let data_start = name_end + (4 - (consumed + name_end) % 4) % 4;
        if path == "TRAILER!!!" {
            return Ok(out);
        }
        let data_end = data_start + size;
        if buf.len() < data_end {
            return Err(bad("truncated data"));
        }
        let data = buf[data_start..data_end].to_vec();
        let next = data_end + (4 - (consumed + data_end) % 4) % 4;
        out.push(Parsed {
            path,
            mode,
            mtime,
            ino,
            data,
        });
        buf = &buf[next.min(buf.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_round_trips() {
        let mut a = Archive::new();
        a.file("usr/bin/x", 0o755, b"hello".to_vec());
        a.symlink("bin/sh", "/bin/busybox");
        a.insert("dev/console", 0o600, Kind::CharDev { major: 5, minor: 1 });
        let mut b = Archive::new();
        b.insert("dev/console", 0o600, Kind::CharDev { major: 5, minor: 1 });
        b.symlink("/bin/sh", "/bin/busybox");
        b.file("/usr/bin/x", 0o755, b"hello".to_vec());
        let (mut ba, mut bb) = (Vec::new(), Vec::new());
        a.write_to(&mut ba, 7).unwrap();
        b.write_to(&mut bb, 7).unwrap();
        assert_eq!(ba, bb);
        assert_eq!(ba.len() % 4, 0);
        let parsed = parse(&ba).unwrap();
        let names: Vec<_> = parsed.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "usr",
                "usr/bin",
                "usr/bin/x"
            ]
        );
        let x = &parsed[6];
        assert_eq!(
            (x.mode, x.mtime, x.ino, x.data.as_slice()),
            (0o100755, 7, 7, &b"hello"[..])
        );
        assert_eq!(parsed[1].data, b"/bin/busybox");
    }
}
