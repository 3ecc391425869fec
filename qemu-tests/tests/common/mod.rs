//! Shared by the scenario tests: a work directory kept when a test fails, and the corpus.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// A directory for disks and console logs, removed when the test passes and kept (with its
/// path printed) when it fails.
pub struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    pub fn new(test: &str) -> Workdir {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/qemu-tests");
        std::fs::create_dir_all(&base).unwrap();
        Workdir(Some(
            tempfile::Builder::new()
                .prefix(test)
                .tempdir_in(base)
                .unwrap(),
        ))
    }
    pub fn path(&self) -> PathBuf {
        self.0.as_ref().unwrap().path().to_owned()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = self.0.take().unwrap().keep();
            eprintln!("console logs kept in {}", dir.display());
        }
    }
}

/// A file of the shared corpus (`../shared/corpus` beside the checkout).
pub fn corpus(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the checkout)",
            p.display()
        )
    })
}

/// Where built artifacts (the Debian golden image) are kept between runs.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/qemu-tests/cache")
}

/// With `STREAMER_BENCH_RECORD=FILE` (set by `make bench`), appends `what<TAB>seconds` to
/// FILE: the scenarios' timings for BENCHMARKS.md.
pub fn record(what: &str, seconds: f64) {
    eprintln!("{what}: {seconds:.1} s");
    if let Some(path) = std::env::var_os("STREAMER_BENCH_RECORD") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{what}\t{seconds:.1}");
        }
    }
}
