//! Plan scripts run for real: attached disk images, kernel and user-space mounts, the sandbox.
//! Needs root (loop devices, mounts, namespaces); skips with a printed reason otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use plan_engine::exec::Source;
use plan_engine::guest::GuestFs;
use plan_engine::guest::fat::{FatFs, Partition};
use plan_engine::run::{CancelFlag, Outcome, run_on_file};
use planscript::attributes::values::{PlanAttribute, resolve};
use serde_json::Value;
use volume_attach::AttachedDisk;

mod common;
use common::{can_run, config, linux_image, with_ext4_root};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/bundles")
}

/// The Developer 2017 bundle's JSON documents and raw golden image.
struct Developer {
    scripts: BTreeMap<String, String>,
    build_plans: Vec<Value>,
    image: Vec<u8>,
}

fn developer() -> Option<Developer> {
    let path = corpus().join("HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip");
    let Ok(file) = std::fs::File::open(&path) else {
        eprintln!("SKIPPED: {} not found", path.display());
        return None;
    };
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut scripts = BTreeMap::new();
    let mut build_plans = Vec::new();
    let mut image = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name.ends_with("_planscript.json") {
            let v: Value = serde_json::from_slice(&data).unwrap();
            scripts.insert(
                v["name"].as_str().unwrap().to_string(),
                v["content"].as_str().unwrap().to_string(),
            );
        } else if name.ends_with("_buildplan.json") {
            build_plans.push(serde_json::from_slice(&data).unwrap());
        } else if name.starts_with("HPE - Developer 1.0 - UEFI Test Image") {
            let mut inner = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
            inner.by_index(0).unwrap().read_to_end(&mut image).unwrap();
        }
    }
    assert_eq!(image.len(), 104_857_600);
    Some(Developer {
        scripts,
        build_plans,
        image,
    })
}

impl Developer {
    fn plan(&self, name: &str) -> &Value {
        self.build_plans.iter().find(|b| b["name"] == name).unwrap()
    }

    /// The plan's scripts in buildStep order, substituted with `profile` values.
    fn sources(
        &self,
        plan: &str,
        profile: &[(&str, &str)],
    ) -> Result<(Vec<Source>, Vec<String>), Vec<String>> {
        let bp = self.plan(plan);
        let mut steps: Vec<&Value> = bp["buildStep"].as_array().unwrap().iter().collect();
        steps.sort_by_key(|s| s["serialNumber"].as_str().unwrap().parse::<u32>().unwrap());
        let texts: Vec<(String, &str)> = steps
            .iter()
            .map(|s| {
                let n = s["planScriptName"].as_str().unwrap().to_string();
                let t = self.scripts[&n].as_str();
                (n, t)
            })
            .collect();
        let declared: Vec<PlanAttribute> = bp["customAttributes"]
            .as_array()
            .map(|a| a.iter().filter_map(PlanAttribute::from_json).collect())
            .unwrap_or_default();
        let profile: Vec<(String, String)> = profile
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let refs: Vec<&str> = texts.iter().map(|(_, t)| *t).collect();
        let values = resolve(&refs, &declared, &[], &profile, &BTreeMap::new())?;
        let sources = texts
            .iter()
            .map(|(n, t)| Source {
                name: n.clone(),
                text: values.substitute(t),
            })
            .collect();
        Ok((sources, values.secrets))
    }
}

/// Reads a file from the FAT partition `/dev/sda1` of `image`.
fn read_esp(image: &Path, dir: &Path, path: &str) -> String {
    let disk = AttachedDisk::attach_file(image, &dir.join("inspect")).unwrap();
    let t = disk.resolve("/dev/sda1").unwrap();
    let file = std::fs::File::open(image).unwrap();
    let mut fat = FatFs::open(Partition::new(file, t.offset, t.len)).unwrap();
    let text = String::from_utf8(fat.read(path, 1 << 20).unwrap()).unwrap();
    drop(fat);
    disk.detach().unwrap();
    text
}

/// Loop devices still backed by files under `dir` after waiting up to 5 s: auto-clearing loop
/// devices are released by the kernel asynchronously after their last close.
fn loops_left(dir: &Path) -> usize {
    for _ in 0..50 {
        if loops_under(dir) == 0 {
            return 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    loops_under(dir)
}

/// Loop devices whose backing file lies under `dir` (tests run in parallel: count only ours).
fn loops_under(dir: &Path) -> usize {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|b| b.trim().starts_with(&dir.display().to_string()))
        .count()
}

#[test]
fn developer_bundle_deploy_then_capture() {
    if !can_run() {
        return;
    }
    let Some(dev) = developer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("os-volume.raw");
    std::fs::write(&image, &dev.image).unwrap();
    let profile = [
        ("ExampleString1", "Hello from Streamer"),
        ("ExampleNumber1", "42"),
        ("ExampleIPv4Address", "10.1.2.3"),
        ("ExampleFQDN", "node1.example.com"),
        ("ExamplePassword", "Pa55word"),
    ];
    let (sources, secrets) = dev
        .sources(
            "HPE - Developer 1.0 - example UEFI deploy - 2017-03-24",
            &profile,
        )
        .unwrap();
    let out: Outcome = run_on_file(
        &config(dir.path()),
        &image,
        &sources,
        secrets,
        &CancelFlag::new(),
    )
    .unwrap();
    out.result
        .as_ref()
        .unwrap_or_else(|f| panic!("{f}\n{}", out.log));
    assert!(out.cleanup_errors.is_empty(), "{:?}", out.cleanup_errors);
    let msg = read_esp(&image, dir.path(), "EFI/BOOT/message.txt");
    assert!(
        msg.contains("UEFI loader message.txt has been personalized!"),
        "{msg}"
    );
    assert!(msg.contains("ExampleString1: Hello from Streamer"), "{msg}");
    assert!(msg.contains("ExampleString3: Script Default"), "{msg}");
    assert!(
        msg.contains("ExampleNumber1: 42") && msg.contains("ExampleIPv4Address: 10.1.2.3"),
        "{msg}"
    );
    // The password reaches the guest, never the log.
    assert!(msg.contains("ExamplePassword: Pa55word"));
    assert!(!out.log.contains("Pa55word"), "{}", out.log);
    assert!(
        out.log.contains("File Systems in Golden Image:") && out.log.contains("/dev/sda1: vfat"),
        "{}",
        out.log
    );

    let (capture, _) = dev
        .sources(
            "HPE - Developer 1.0 - example UEFI capture - 2017-03-24",
            &[],
        )
        .unwrap();
    let out = run_on_file(
        &config(dir.path()),
        &image,
        &capture,
        vec![],
        &CancelFlag::new(),
    )
    .unwrap();
    out.result
        .as_ref()
        .unwrap_or_else(|f| panic!("{f}\n{}", out.log));
    let msg = read_esp(&image, dir.path(), "EFI/BOOT/message.txt");
    assert!(
        msg.contains("has been generalized!") && !msg.contains("Hello from Streamer"),
        "{msg}"
    );
    assert_eq!(loops_left(dir.path()), 0, "every loop device was detached");
    assert!(
        std::fs::read_dir(dir.path().join("runs"))
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| e.file_name() == "scratch")
    );
}

#[test]
fn a_failing_script_names_its_line_and_leaves_nothing_attached() {
    if !can_run() {
        return;
    }
    let Some(dev) = developer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("os-volume.raw");
    std::fs::write(&image, &dev.image).unwrap();
    let (sources, secrets) = dev
        .sources(
            "User - Developer 1.0 - example UEFI deploy - 2017-03-24",
            &[("DeploymentTesting", "Fail_OS_Deployment")],
        )
        .unwrap();
    let out = run_on_file(
        &config(dir.path()),
        &image,
        &sources,
        secrets,
        &CancelFlag::new(),
    )
    .unwrap();
    let f = out.result.unwrap_err();
    assert_eq!(
        f.script,
        "HPE - Developer 1.0 - attempt or fail deployment - 2017-03-24"
    );
    assert!(f.message.contains("Fail_OS_Deployment"), "{f}");
    assert!(f.line > 1);
    assert_eq!(loops_left(dir.path()), 0);
    // Bad attribute values are refused before anything runs, each named.
    let errs = dev
        .sources(
            "HPE - Developer 1.0 - example UEFI deploy - 2017-03-24",
            &[
                ("ExampleIPv4Address", "300.1.1.1"),
                ("ExampleFQDN", "nodots"),
            ],
        )
        .unwrap_err();
    let text = errs.join("\n");
    assert!(
        text.contains("ExampleIPv4Address") && text.contains("ExampleFQDN"),
        "{text}"
    );
}

#[test]
fn every_guest_command_on_ext4_and_vfat() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(img) = linux_image(dir.path()) else {
        return;
    };
    let script = r#"
list-devices
list-partitions
list-filesystems
inspect-os
mount /dev/sda2 /
mount /dev/sda1 /boot/efi
version
statvfs /
mkdir /srv
mkdir-p /srv/a/b
write /etc/hostname "web01"
write-append /etc/hostname "\n"
upload -<<END /etc/motd
Welcome to @Host:web01@
END
!echo "from the sandbox" > ./local.txt
upload ./local.txt /srv/local.txt
download /etc/hostname ./hn
!cat ./hn | tr a-z A-Z > ./HN
upload ./HN /srv/HN
cat /etc/hostname | sed s/web/WEB/ > ./sed.txt
upload ./sed.txt /srv/sed.txt
<!echo "touch /srv/from-generated-commands"
touch /srv/t
chmod 0700 /srv/t
ln-s /etc/hostname /srv/hostname-link
ln-sf /etc/motd /srv/hostname-link
ln /srv/t /srv/t-hard
ln-f /srv/t /srv/t-hard
cp /etc/hostname /srv/cp
cp-a /srv/a /srv/a2
cp-r /srv/a /srv/a3
mv /srv/cp /srv/moved
copy-out /srv/a ./
!ls ./a
mkdir /srv/a4
copy-in ./a /srv/a4
compress-out gzip /etc/motd ./motd.gz
!gunzip -c ./motd.gz > ./motd && cat ./motd
ls /srv
-glob rm-f /etc/ssh/ssh_host_*
rm /srv/t-hard
rm-rf /srv/a3
rmdir /srv/a2/b
touch /srv/empty
rm-f /srv/empty
exists /etc/motd
is-file /etc/motd
is-dir /srv
command /bin/true
sh "echo from-sh > /srv/sh.txt"
mkdir-p /boot/efi/EFI/BOOT
write /boot/efi/EFI/BOOT/message.txt "on the ESP"
cp /etc/hostname /boot/efi/EFI/hostname.txt
ls /boot/efi/EFI
umount /boot/efi
unmount-all
"#;
    let out = run_on_file(
        &config(dir.path()),
        &img,
        &[Source {
            name: "all".into(),
            text: script.replace("@Host:web01@", "web01"),
        }],
        vec![],
        &CancelFlag::new(),
    )
    .unwrap();
    out.result
        .as_ref()
        .unwrap_or_else(|f| panic!("{f}\n{}", out.log));
    assert!(out.cleanup_errors.is_empty(), "{:?}", out.cleanup_errors);
    let log = &out.log;
    for want in [
        "/dev/sda",
        "/dev/sda1: vfat",
        "/dev/sda2: ext4",
        "bsize:",
        "major: 1",
        "FROM THE",
        "touch /srv/from-generated-commands",
    ] {
        assert!(
            log.contains(want) || log.to_uppercase().contains(&want.to_uppercase()),
            "{want} missing in:\n{log}"
        );
    }
    assert!(
        log.contains("/dev/sda2\n"),
        "inspect-os finds the root: {log}"
    );
    assert!(log.contains("Welcome to web01"), "{log}");
    // Inspect the ext4 root with the kernel.
    with_ext4_root(&img, dir.path(), |mnt| {
        let read = |p: &str| std::fs::read_to_string(mnt.join(p)).unwrap_or_default();
        assert_eq!(read("etc/hostname"), "web01\n");
        assert_eq!(read("srv/local.txt"), "from the sandbox\n");
        assert_eq!(read("srv/HN"), "WEB01\n");
        assert_eq!(read("srv/sed.txt"), "WEB01\n");
        assert!(mnt.join("srv/from-generated-commands").exists());
        assert_eq!(
            std::fs::read_link(mnt.join("srv/hostname-link")).unwrap(),
            PathBuf::from("/etc/motd")
        );
        assert!(mnt.join("srv/moved").exists() && !mnt.join("srv/cp").exists());
        assert!(!mnt.join("srv/a2/b").exists() && mnt.join("srv/a4/a/b").exists());
        assert_eq!(read("srv/sh.txt"), "from-sh\n");
        assert!(!mnt.join("srv/a3").exists() && !mnt.join("srv/t-hard").exists());
        assert!(
            !mnt.join("etc/ssh/ssh_host_rsa_key").exists()
                && !mnt.join("etc/ssh/ssh_host_ed25519_key").exists()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(mnt.join("srv/t"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    });
    // And the ESP in user space.
    let disk = AttachedDisk::attach_file(&img, &dir.path().join("check")).unwrap();
    let esp = disk.resolve("/dev/sda1").unwrap();
    let mut fat = FatFs::open(Partition::new(
        std::fs::File::open(&img).unwrap(),
        esp.offset,
        esp.len,
    ))
    .unwrap();
    assert_eq!(
        fat.read("EFI/BOOT/message.txt", 1 << 20).unwrap(),
        b"on the ESP"
    );
    assert_eq!(fat.read("EFI/hostname.txt", 1 << 20).unwrap(), b"web01\n");
    drop(fat);
    disk.detach().unwrap();
}
