//! The GPT disk image: the partitions of [`crate::layout::PARTITIONS`], the ESP and config
//! partition formatted as FAT in user space (fatfs) with fixed timestamps and volume ids, the
//! data partition left empty (init makes its filesystem on first boot). GUIDs and volume ids
//! derive from a seed, so the same inputs give the same bytes. The file is sparse.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::layout::{self, PARTITIONS};
use gpt::{Entry as GptPartition, SECTOR};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Io(PathBuf, #[source] io::Error),
    #[error("formatting or filling partition {0}")]
    Fat(&'static str, #[source] io::Error),
    #[error("bad partition type GUID {0}")]
    Guid(&'static str),
}

/// What goes on the disk.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// System slot A (EFI/BOOT/BOOTX64.EFI).
    pub uki_a: PathBuf,
    /// System slot B (EFI/streamer/B.efi).
    pub uki_b: PathBuf,
    /// Default streamer.conf on the config partition.
    pub config: String,
    /// Seeds the disk, partition and volume ids.
    pub seed: String,
    /// Partition sizes in MiB, in [`PARTITIONS`] order.
    pub sizes_mib: [u64; 3],
    /// More files on the ESP (path, content): etcd for pair members.
    pub esp_files: Vec<(String, Vec<u8>)>,
}

/// Where each partition landed.
#[derive(Debug, Clone)]
pub struct DiskInfo {
    pub size: u64,
    /// (name, byte offset, byte length, unique GUID)
    pub partitions: Vec<(&'static str, u64, u64, String)>,
}

/// A fixed FAT clock (1980-01-01 00:00, the FAT epoch) so timestamps never vary.
#[derive(Debug)]
struct FixedTime;
impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}
static FIXED_TIME: FixedTime = FixedTime;

/// A window of the image file that fatfs sees as a whole disk.
#[derive(Debug)]
struct Slice<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(self.pos) as usize);
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(self.pos) as usize);
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "partition full"));
        }
        let n = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek"))?;
        Ok(self.pos)
    }
}

fn derive(seed: &str, what: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(seed)
        .chain_update([0])
        .chain_update(what)
        .finalize()
        .into()
}

/// A version-4-shaped GUID from the seed.
pub fn derived_guid(seed: &str, what: &str) -> [u8; 16] {
    let mut g = [0u8; 16];
    g.copy_from_slice(&derive(seed, what)[..16]);
    g[7] = (g[7] & 0x0f) | 0x40; // version 4 (byte 7: high byte of the little-endian field 3)
    g[8] = (g[8] & 0x3f) | 0x80; // RFC 4122 variant
    g
}

fn label(s: &str) -> [u8; 11] {
    let mut l = [b' '; 11];
    for (d, c) in l.iter_mut().zip(s.bytes()) {
        *d = c;
    }
    l
}

fn format_fat(
    file: &File,
    start: u64,
    len: u64,
    spec: &layout::PartitionSpec,
    seed: &str,
    files: &[(&str, &[u8])],
) -> io::Result<()> {
    let id = derive(seed, spec.name);
    let mut opts = fatfs::FormatVolumeOptions::new()
        .volume_id(u32::from_le_bytes([id[0], id[1], id[2], id[3]]))
        .volume_label(label(spec.fs_label));
    if spec.type_guid == layout::ESP_TYPE {
        opts = opts.fat_type(fatfs::FatType::Fat32);
    }
    fatfs::format_volume(
        Slice {
            file,
            start,
            len,
            pos: 0,
        },
        opts,
    )?;
    let fs = fatfs::FileSystem::new(
        Slice {
            file,
            start,
            len,
            pos: 0,
        },
        fatfs::FsOptions::new().time_provider(&FIXED_TIME),
    )?;
    for (path, data) in files {
        let mut dir = fs.root_dir();
        let (parents, name) = path.rsplit_once('/').unwrap_or(("", path));
        for p in parents.split('/').filter(|p| !p.is_empty()) {
            dir = match dir.open_dir(p) {
                Ok(d) => d,
                Err(_) => dir.create_dir(p)?,
            };
        }
        let mut f = dir.create_file(name)?;
        f.truncate()?;
        f.write_all(data)?;
        f.flush()?;
    }
    fs.unmount()
}

/// Writes the disk image to `out`.
pub fn build(spec: &DiskSpec, out: &Path) -> Result<DiskInfo, DiskError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e| DiskError::Io(p, e)
    };
    let uki_a = std::fs::read(&spec.uki_a).map_err(io_err(&spec.uki_a))?;
    let uki_b = std::fs::read(&spec.uki_b).map_err(io_err(&spec.uki_b))?;
    let mib = 1024 * 1024;
    let align = layout::ALIGN_MIB * mib;
    let parts_bytes: u64 = spec.sizes_mib.iter().sum::<u64>() * mib;
    // 1 MiB before the first partition, 1 MiB after the last for the backup table.
    let size = align + parts_bytes + mib;
    let sectors = size / SECTOR;
    let _ = std::fs::remove_file(out);
    let file = File::create_new(out).map_err(io_err(out))?;
    file.set_len(size).map_err(io_err(out))?;

    let mut gpt_parts = Vec::new();
    let mut info = DiskInfo {
        size,
        partitions: Vec::new(),
    };
    let mut offset = align;
    for (p, &mib_size) in PARTITIONS.iter().zip(&spec.sizes_mib) {
        let len = mib_size * mib;
        let unique = derived_guid(&spec.seed, p.name);
        gpt_parts.push(GptPartition {
            type_guid: gpt::guid_bytes(p.type_guid).ok_or(DiskError::Guid(p.type_guid))?,
            unique_guid: unique,
            first_lba: offset / SECTOR,
            last_lba: (offset + len) / SECTOR - 1,
            attributes: 0,
            name: p.name.to_string(),
        });
        info.partitions
            .push((p.name, offset, len, gpt::guid_string(&unique)));
        offset += len;
    }
    for (off, bytes) in gpt::new_table(sectors, derived_guid(&spec.seed, "disk"), &gpt_parts) {
        file.write_all_at(&bytes, off).map_err(io_err(out))?;
    }
    for (p, &(_, start, len, _)) in PARTITIONS.iter().zip(&info.partitions) {
        let files: Vec<(&str, &[u8])> = match p.name {
            appliance_layout::ESP_PARTITION => {
                let mut files = vec![
                    (layout::SLOT_A_PATH, &uki_a[..]),
                    (layout::SLOT_B_PATH, &uki_b[..]),
                ];
                files.extend(spec.esp_files.iter().map(|(p, b)| (p.as_str(), &b[..])));
                files
            }
            appliance_layout::CONFIG_PARTITION => {
                vec![(layout::CONFIG_FILE, spec.config.as_bytes())]
            }
            _ => continue,
        };
        format_fat(&file, start, len, p, &spec.seed, &files)
            .map_err(|e| DiskError::Fat(p.name, e))?;
    }
    file.sync_all().map_err(io_err(out))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_follow_the_seed() {
        let a = derived_guid("s", "disk");
        assert_eq!(a, derived_guid("s", "disk"));
        assert_ne!(a, derived_guid("t", "disk"));
        assert_eq!(gpt::guid_string(&a).as_bytes()[14], b'4');
    }
}
