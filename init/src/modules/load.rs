//! The syscall layer: `finit_module` for plain `.ko` files, `init_module` for bytes we
//! decompressed ourselves. Needs CAP_SYS_MODULE; everything above it is tested without.

use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::decompress::{self, Compression, DecompressError};

const NO_PARAMS: &CStr = c"";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    Loaded,
    /// The kernel already had it (loaded earlier or built in): not an error.
    AlreadyLoaded,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decompressing {}", path.display())]
    Decompress {
        path: PathBuf,
        #[source]
        source: DecompressError,
    },
    #[error("the kernel refused {}", path.display())]
    Kernel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads one module file, compressed or not.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let data = std::fs::read(path).map_err(read_err)?;
    let rc = if Compression::detect(&data) == Some(Compression::None) {
        let file = std::fs::File::open(path).map_err(read_err)?;
        finit_module(&file)
    } else {
        let elf = decompress::decompress(&data).map_err(|source| LoadError::Decompress {
            path: path.to_owned(),
            source,
        })?;
        init_module(&elf)
    };
    match rc {
        Ok(()) => Ok(Loaded::Loaded),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Loaded::AlreadyLoaded),
        Err(source) => Err(LoadError::Kernel {
            path: path.to_owned(),
            source,
        }),
    }
}

fn finit_module(file: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: the fd is open for the duration of the call and the parameter string is a
    // valid NUL-terminated C string; the kernel reads both and keeps neither.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            NO_PARAMS.as_ptr(),
            0 as libc::c_int,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn init_module(elf: &[u8]) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe a live, initialised buffer that outlives the
    // call; the kernel copies it and the parameter string before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            elf.as_ptr(),
            elf.len() as libc::c_ulong,
            NO_PARAMS.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = load_file(Path::new("/nonexistent/x.ko")).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }));
        assert_eq!(err.to_string(), "reading /nonexistent/x.ko");
    }

    #[test]
    fn a_corrupt_module_is_reported_before_the_kernel_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.ko.xz");
        std::fs::write(&p, [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3]).unwrap();
        assert!(matches!(
            load_file(&p).unwrap_err(),
            LoadError::Decompress { .. }
        ));
    }
}
