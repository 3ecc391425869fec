//! Interpreter tests with a disk of plain directories and a FAT image, and a local runner
//! that runs `sh` in the scratch directory (the real sandbox is tested in `sandbox`).

use std::fs::File;
use std::process::Stdio;

use super::*;
use crate::guest::fat::{FatFs, Partition};

/// `/dev/sda1` is a FAT image (user space), `/dev/sda2` a directory standing in for a
/// kernel-mounted ext4.
struct FakeDisk {
    esp: PathBuf,
    root: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Disk for FakeDisk {
    fn devices(&self) -> Vec<String> {
        vec!["/dev/sda".into()]
    }
    fn partitions(&self) -> Vec<String> {
        vec!["/dev/sda1".into(), "/dev/sda2".into()]
    }
    fn filesystems(&mut self) -> Result<Vec<(String, String)>, String> {
        Ok(vec![
            ("/dev/sda1".into(), "vfat".into()),
            ("/dev/sda2".into(), "ext4".into()),
        ])
    }
    fn vgs(&mut self) -> Result<Vec<String>, String> {
        Ok(vec![])
    }
    fn lvs(&mut self) -> Result<Vec<String>, String> {
        Ok(vec![])
    }
    fn vgrename(&mut self, _: &str, _: &str) -> Result<(), String> {
        Err("no volume groups".into())
    }
    fn mount(
        &mut self,
        device: &str,
        host_dir: &Path,
        _ro: bool,
    ) -> Result<Box<dyn GuestFs>, String> {
        match device {
            "/dev/sda1" => {
                let f = File::options()
                    .read(true)
                    .write(true)
                    .open(&self.esp)
                    .map_err(|e| e.to_string())?;
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                Ok(Box::new(
                    FatFs::open(Partition::new(f, 0, len)).map_err(|e| e.to_string())?,
                ))
            }
            "/dev/sda2" => {
                self.mounted.push(host_dir.to_path_buf());
                Ok(Box::new(
                    DirFs::open(&self.root).map_err(|e| e.to_string())?,
                ))
            }
            other => Err(format!("{other}: no such device")),
        }
    }
    fn unmount(&mut self, host_dir: &Path) -> Result<(), String> {
        self.mounted.retain(|d| d != host_dir);
        Ok(())
    }
}

struct Shell {
    scratch: PathBuf,
}

impl LocalRunner for Shell {
    fn run_local(&self, text: &str, stdin: Option<&[u8]>) -> Result<LocalOutput, String> {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(text)
            .current_dir(&self.scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(mut w) = child.stdin.take() {
            use std::io::Write;
            let _ = w.write_all(stdin.unwrap_or_default());
        }
        let o = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(LocalOutput {
            stdout: o.stdout,
            stderr: o.stderr,
            status: o.status.code().unwrap_or(-1),
        })
    }
    fn run_in_guest(
        &self,
        root: &Path,
        argv: &[String],
        _stdin: Option<&[u8]>,
    ) -> Result<LocalOutput, String> {
        Ok(LocalOutput {
            stdout: format!("ran {argv:?} in {}\n", root.display()).into_bytes(),
            stderr: vec![],
            status: 0,
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    disk: FakeDisk,
    shell: Shell,
    scratch: PathBuf,
    work: PathBuf,
}

fn fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp.img");
    File::create(&esp).unwrap().set_len(40 << 20).unwrap();
    let ok = std::process::Command::new("mkfs.vfat")
        .arg(&esp)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: mkfs.vfat (dosfstools) is not installed");
        return None;
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "golden\n").unwrap();
    std::fs::create_dir_all(root.join("boot/efi")).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let work = dir.path().join("work");
    Some(Fixture {
        disk: FakeDisk {
            esp,
            root,
            mounted: vec![],
        },
        shell: Shell {
            scratch: scratch.clone(),
        },
        scratch,
        work,
        _dir: dir,
    })
}

fn run(f: &mut Fixture, text: &str, secrets: Vec<String>) -> (Result<(), Failure>, String) {
    let mut it = Interpreter::new(&mut f.disk, &f.shell, &f.scratch, &f.work, secrets).unwrap();
    let r = it.run(&[Source {
        name: "test".into(),
        text: text.into(),
    }]);
    it.unmount_all().unwrap();
    let log = it.log();
    (r, log)
}

#[test]
fn developer_style_esp_personalization() {
    let Some(mut f) = fixture() else { return };
    let script = "mount /dev/sda1 /\nmkdir-p /EFI/BOOT\nupload -<<END /EFI/BOOT/message.txt\nHostname: web01\nEND\ncat /EFI/BOOT/message.txt\nls /EFI/BOOT\n";
    let (r, log) = run(&mut f, script, vec![]);
    r.unwrap();
    assert!(log.contains("Hostname: web01"), "{log}");
    assert!(log.contains("message.txt"));
}

#[test]
fn failing_command_stops_with_its_line_and_dash_continues() {
    let Some(mut f) = fixture() else { return };
    let (r, log) = run(
        &mut f,
        "mount /dev/sda2 /\n-cat /nope\necho after\ncat /missing\necho never\n",
        vec![],
    );
    let e = r.unwrap_err();
    assert_eq!((e.line, e.command.as_str()), (4, "cat /missing"));
    assert!(
        e.to_string()
            .starts_with("plan script \"test\" line 4: cat /missing:"),
        "{e}"
    );
    assert!(log.contains("error (ignored)") && log.contains("after") && !log.contains("never"));
    let (r, _) = run(&mut f, "Fail_OS_Deployment\n", vec![]);
    assert!(r.unwrap_err().message.contains("unknown command"));
    let (r, _) = run(&mut f, "cat /etc/hostname\n", vec![]);
    assert!(r.unwrap_err().message.contains("mount one first"));
}

#[test]
fn local_commands_pipes_and_generated_commands() {
    let Some(mut f) = fixture() else { return };
    let script = "mount /dev/sda2 /\n\
        !echo 'from local' > ./note.txt\n\
        upload ./note.txt /etc/note\n\
        download /etc/hostname ./hn\n\
        !cat ./hn\n\
        cat /etc/hostname | tr a-z A-Z > ./upper\n\
        <!echo 'write /etc/generated \"made by <!\"'\n\
        command /usr/bin/true\n";
    let (r, log) = run(&mut f, script, vec![]);
    r.unwrap();
    assert_eq!(
        std::fs::read_to_string(f.disk.root.join("etc/note")).unwrap(),
        "from local\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.scratch.join("upper")).unwrap(),
        "GOLDEN\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.disk.root.join("etc/generated")).unwrap(),
        "made by <!"
    );
    assert!(
        log.contains("golden") && log.contains("ran [\"/usr/bin/true\"]"),
        "{log}"
    );
    let (r, _) = run(&mut f, "!exit 3\n", vec![]);
    assert!(r.unwrap_err().message.contains("status 3"));
}

#[test]
fn nested_fat_mount_glob_copy_and_modes() {
    let Some(mut f) = fixture() else { return };
    let script = "mount /dev/sda2 /\nmount /dev/sda1 /boot/efi\n\
        write /boot/efi/a.txt hello\n\
        touch /etc/ssh_host_rsa_key\ntouch /etc/ssh_host_ecdsa_key\n\
        glob rm-f /etc/ssh_host_*\n\
        mkdir /srv\nwrite /srv/f x\ncopy-out /srv .\n\
        !mkdir -p ./in/sub && echo deep > ./in/sub/f\ncopy-in ./in /srv\n\
        chmod 0750 /srv/f\ncp-a /srv /srv2\nln-s /etc/hostname /etc/hn\n\
        statvfs /boot/efi\nunmount /boot/efi\nunmount-all\n";
    let (r, log) = run(&mut f, script, vec![]);
    r.unwrap();
    assert!(!f.disk.root.join("etc/ssh_host_rsa_key").exists());
    assert!(f.scratch.join("srv/f").exists());
    assert_eq!(
        std::fs::read_to_string(f.disk.root.join("srv/in/sub/f")).unwrap(),
        "deep\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(f.disk.root.join("srv2/f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    assert!(log.contains("bsize:"));
    assert!(f.disk.mounted.is_empty(), "everything unmounted");
}

#[test]
fn secrets_are_masked_in_the_log_and_errors() {
    let Some(mut f) = fixture() else { return };
    let (r, log) = run(
        &mut f,
        "mount /dev/sda2 /\necho root:S3cret!\ncat /S3cret!\n",
        vec!["S3cret!".into()],
    );
    let e = r.unwrap_err();
    assert!(
        !log.contains("S3cret!") && log.contains("root:********"),
        "{log}"
    );
    assert!(!e.to_string().contains("S3cret!"));
}

#[test]
fn modes_are_read_like_guestfish() {
    assert_eq!(parse_mode("0755"), Ok(0o755));
    assert_eq!(parse_mode("755"), Ok(755));
    assert_eq!(parse_mode("0x1ed"), Ok(0o755));
    assert!(parse_mode("rwx").is_err());
    assert_eq!(split_words("/bin/x 'a b' c"), vec!["/bin/x", "a b", "c"]);
    assert!(wildcard("ssh_host_*", "ssh_host_rsa_key"));
    assert!(wildcard("70-*.rules", "70-net.rules") && !wildcard("70-*.rules", "71-net.rules"));
    assert!(wildcard("[a-c]?", "b1") && !wildcard("[!a-c]?", "b1"));
}

/// A runner that runs nothing: generated scripts must not start real programs. `<!` gets a
/// script back (itself recursive), `!` its own text.
struct Inert;

impl LocalRunner for Inert {
    fn run_local(&self, text: &str, _stdin: Option<&[u8]>) -> Result<LocalOutput, String> {
        let stdout = match text {
            "gen" => "echo generated\n<!gen\nmount /dev/sda2 /mnt\n".to_string(),
            "big" => "x".repeat(100_000),
            "fail" => return Err("the sandbox refused".into()),
            other => format!("{other}\n"),
        };
        Ok(LocalOutput {
            stdout: stdout.into_bytes(),
            stderr: vec![],
            status: i32::from(text == "exit1"),
        })
    }
    fn run_in_guest(
        &self,
        _root: &Path,
        argv: &[String],
        _stdin: Option<&[u8]>,
    ) -> Result<LocalOutput, String> {
        Ok(LocalOutput {
            stdout: format!("{argv:?}\n").into_bytes(),
            stderr: vec![],
            status: 0,
        })
    }
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    const ARGS: &[&str] = &[
        "/",
        "/etc",
        "/etc/hostname",
        "/fifo",
        "/new",
        "/d/*",
        "/*/*",
        "/etc/../../..",
        "./local",
        "local",
        "-",
        "0755",
        "/dev/sda1",
        "/dev/sda2",
        "/boot/efi",
        "gzip",
        "/boot/efi/EFI",
        "/mnt",
        "\"a b\"",
        "''",
        "/d",
    ];

    fn line() -> impl Strategy<Value = String> {
        let verbs: Vec<&str> = planscript::commands::names().collect();
        let guest = (
            proptest::sample::select(verbs),
            proptest::collection::vec(proptest::sample::select(ARGS), 0..4),
        )
            .prop_map(|(v, a)| format!("{v} {}", a.join(" ")));
        let local = proptest::sample::select(
            &[
                "!echo hi",
                "<!gen",
                "!big",
                "!fail",
                "!exit1",
                "cat /etc/hostname | wc",
                "mount /dev/sda2 /",
                "mount /dev/sda1 /boot/efi",
                "upload -<<END /new\ntext\nEND",
            ][..],
        )
        .prop_map(str::to_owned);
        (any::<bool>(), prop_oneof![3 => guest, 1 => local])
            .prop_map(|(dash, l)| if dash { format!("-{l}") } else { l })
    }

    fn script() -> impl Strategy<Value = String> {
        proptest::collection::vec(line(), 1..25).prop_map(|l| {
            let mut text = String::from("mount /dev/sda2 /\n");
            text.push_str(&l.join("\n"));
            text.push('\n');
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever a script does, the interpreter returns (never panics, never blocks: the
        /// guest holds a FIFO), its log stays within its bound, and nothing stays mounted.
        #[test]
        fn any_script_ends_within_its_bounds(text in script()) {
            let Some(mut f) = fixture() else { return Ok(()) };
            let fifo = f.disk.root.join("fifo");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            std::fs::create_dir_all(f.disk.root.join("d")).unwrap();
            for i in 0..20 {
                std::fs::write(f.disk.root.join(format!("d/f{i}")), "x").unwrap();
            }
            std::fs::create_dir_all(&f.scratch).unwrap();
            std::fs::write(f.scratch.join("local"), "local file").unwrap();
            let limits = Limits {
                command_output: 4 << 10,
                run_log: 64 << 10,
                mounts: 4,
                glob_combinations: 100,
                file_in_memory: 1 << 20,
            };
            let log = {
                let mut it = Interpreter::new(&mut f.disk, &Inert, &f.scratch, &f.work, vec![])
                    .unwrap()
                    .limits(limits);
                let _ = it.run(&[Source { name: "generated".into(), text: text.clone() }]);
                let _ = it.unmount_all();
                it.log()
            };
            prop_assert!(log.len() <= limits.run_log + 512, "log of {} bytes", log.len());
            prop_assert!(f.disk.mounted.is_empty(), "left mounted: {:?}", f.disk.mounted);
        }
    }
}
