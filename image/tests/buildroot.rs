//! Offline checks of the Buildroot tree (`buildroot/`), which cannot be built here: the files
//! it names exist, its scripts parse, and its disk layout is `image/`'s (`layout.rs`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use streamer_image::layout::PARTITIONS;

fn tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../buildroot")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(tree().join(rel)).unwrap_or_else(|e| panic!("buildroot/{rel}: {e}"))
}

#[test]
fn the_tree_is_complete_and_every_named_file_exists() {
    assert!(
        read("external.desc")
            .lines()
            .any(|l| l.trim() == "name: STREAMER")
    );
    for f in [
        "Config.in",
        "external.mk",
        "configs/streamer_x86_64_defconfig",
        "package/streamer/Config.in",
        "package/streamer/streamer.mk",
        "board/streamer/post-build.sh",
        "board/streamer/post-image.sh",
        "board/streamer/linux.fragment",
        "board/streamer/genimage.cfg",
        "README.md",
    ] {
        assert!(tree().join(f).is_file(), "buildroot/{f} is missing");
    }
    // Every path given relative to the external tree exists.
    for f in [
        "Config.in",
        "external.mk",
        "configs/streamer_x86_64_defconfig",
        "package/streamer/streamer.mk",
    ] {
        let text = read(f);
        for marker in [
            "$(BR2_EXTERNAL_STREAMER_PATH)/",
            "$BR2_EXTERNAL_STREAMER_PATH/",
        ] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(marker) {
                rest = &rest[i + marker.len()..];
                let path: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !"\"')".contains(*c))
                    .collect();
                if path.contains('*') || path == ".." || path.is_empty() {
                    continue;
                }
                assert!(
                    tree().join(&path).exists(),
                    "{f} names {path}, which does not exist"
                );
            }
        }
    }
    // Every `config` entry of the package has a type.
    let cfg = read("package/streamer/Config.in");
    assert!(cfg.contains("config BR2_PACKAGE_STREAMER") && cfg.contains("\tbool \"streamer\""));
    assert!(read("configs/streamer_x86_64_defconfig").contains("BR2_PACKAGE_STREAMER=y"));
}

#[test]
fn the_scripts_parse() {
    for s in [
        "board/streamer/post-build.sh",
        "board/streamer/post-image.sh",
    ] {
        let o = std::process::Command::new("sh")
            .arg("-n")
            .arg(tree().join(s))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tree().join(s))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{s} is not executable");
    }
}

/// A partition of genimage.cfg's disk image: name, image, size in MiB, type uuid.
type Part = (String, Option<String>, Option<u64>, String);

/// `size = NM` of each `image NAME { ... }` block, and the partitions of the disk image in
/// order.
fn genimage() -> (BTreeMap<String, u64>, Vec<Part>) {
    let text = read("board/streamer/genimage.cfg");
    let mut images = BTreeMap::new();
    let mut parts = Vec::new();
    let mut current_image: Option<String> = None;
    let mut current_part: Option<Part> = None;
    let mib = |v: &str| v.trim().trim_end_matches('M').parse::<u64>().unwrap();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("image ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            current_image = Some(name.to_string());
        } else if let Some(name) = line
            .strip_prefix("partition ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            current_part = Some((name.to_string(), None, None, String::new()));
        } else if let Some(v) = line.strip_prefix("size = ") {
            match &mut current_part {
                Some(p) => p.2 = Some(mib(v)),
                None => {
                    images.insert(current_image.clone().unwrap(), mib(v));
                }
            }
        } else if let Some(v) = line.strip_prefix("image = ") {
            current_part.as_mut().unwrap().1 = Some(v.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("partition-type-uuid = ") {
            current_part.as_mut().unwrap().3 = v.trim_matches('"').to_string();
        } else if line == "}"
            && let Some(p) = current_part.take()
        {
            parts.push(p);
        }
    }
    (images, parts)
}

#[test]
fn the_partition_layout_is_image_s_layout() {
    let (images, parts) = genimage();
    assert_eq!(parts.len(), PARTITIONS.len(), "{parts:?}");
    for (spec, (name, image, size, type_uuid)) in PARTITIONS.iter().zip(&parts) {
        assert_eq!(name, spec.name);
        assert!(
            type_uuid.eq_ignore_ascii_case(spec.type_guid),
            "{name}: type {type_uuid}"
        );
        let size = size.or_else(|| image.as_ref().and_then(|i| images.get(i).copied()));
        assert_eq!(size, Some(spec.size_mib), "{name}: size");
        if spec.filesystem == "vfat" {
            let image = image.as_ref().unwrap();
            let cfg = read("board/streamer/genimage.cfg");
            let block = &cfg[cfg.find(&format!("image {image} {{")).unwrap()..];
            let block = &block[..block.find("\n}").unwrap()];
            assert!(
                block.contains(&format!("label = \"{}\"", spec.fs_label)),
                "{name}: FAT label"
            );
        }
    }
}

#[test]
fn the_kernel_command_line_is_image_s() {
    let script = read("board/streamer/post-image.sh");
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("CMDLINE=\""))
        .expect("post-image.sh sets CMDLINE");
    let cmdline = &line[..line.find('"').expect("a closing quote")];
    assert_eq!(cmdline, streamer_image::DEFAULT_CMDLINE);
}

#[test]
fn the_package_installs_the_binaries_make_image_does() {
    let mk = read("package/streamer/streamer.mk");
    let opts = mk
        .split("STREAMER_CARGO_BUILD_OPTS = \\\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("STREAMER_CARGO_BUILD_OPTS");
    let makefile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Makefile")).unwrap();
    for package in opts.split_whitespace().filter(|w| *w != "-p") {
        assert!(
            makefile.contains(&format!("-p {package}")),
            "make image does not build {package}"
        );
    }
    // A link for every program of the multi-call binary (its PROGRAMS table).
    let programs = mk
        .lines()
        .find_map(|l| l.strip_prefix("STREAMER_PROGRAMS = "))
        .expect("STREAMER_PROGRAMS");
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../multicall/src/main.rs"),
    )
    .unwrap();
    let table = source
        .split("const PROGRAMS")
        .nth(1)
        .and_then(|t| t.split("];").next())
        .expect("the PROGRAMS table");
    let names: Vec<&str> = table
        .split("(\"")
        .skip(1)
        .filter_map(|t| t.split('"').next())
        .collect();
    assert!(!names.is_empty());
    assert_eq!(programs.split_whitespace().collect::<Vec<_>>(), names);
}
