//! The iSCSI target against initiators nobody here wrote: libiscsi's conformance suite
//! (`iscsi-test-cu`), its `iscsi-inq`, and QEMU's `iscsi://` driver (qemu-img, qemu-io), on
//! real storaged volumes; who may log in (initiator names, CHAP, addresses); and hostile
//! bytes on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use storaged::block::BlockDevice;
use storaged::export::{ChapSecret, IscsiAccess};
use storaged::iscsi::TARGET_PREFIX;
use storaged::store::Store;

const MIB: u64 = 1 << 20;
const INITIATOR: &str = "iqn.2026-12.test:initiator";

struct Target {
    addr: SocketAddr,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Target {
    fn start() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let catalog: Arc<dyn storaged::export::ExportCatalog> = store.clone();
        runtime.spawn(storaged::iscsi::serve(listener, catalog));
        Target {
            addr,
            store,
            _dir: dir,
            _runtime: runtime,
        }
    }

    /// A new volume of `size` bytes exported with `access`; its target name.
    fn volume(&self, name: &str, size: u64, access: Option<IscsiAccess>) -> (String, String) {
        let id = self.store.create(Some(name), size).unwrap().record.id;
        self.store
            .export_add_iscsi(&id, Vec::new(), false, access)
            .unwrap();
        (id.clone(), format!("{TARGET_PREFIX}{id}"))
    }

    fn url(&self, target: &str) -> String {
        format!("iscsi://{}/{target}/0", self.addr)
    }

    fn read(&self, id: &str, offset: u64, len: usize) -> Vec<u8> {
        let lease = self.store.lease(id).unwrap();
        let mut buf = vec![0u8; len];
        lease.volume().read_at(&mut buf, offset).unwrap();
        buf
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install libiscsi-bin qemu-utils)"));
    eprintln!(
        "$ {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The tests of libiscsi's conformance suite this target fails, and why (ARCHITECTURE.md §16
/// lists the skipped ones). The rest of `iscsi-test-cu -t ALL` (230 tests) passes.
const KNOWN_FAILURES: &[(&str, &str)] = &[(
    "GetLBAStatus.UnmapSingle",
    "asks for LBA 9 and wants the first descriptor to start at 16; SBC-3 §5.5.2 makes it 9",
)];

#[test]
fn libiscsi_conformance_suite_passes() {
    let t = Target::start();
    let (_, target) = t.volume("conformance", 64 * MIB, None);
    let out = run(Command::new("iscsi-test-cu")
        .args(["--dataloss", "-n", "-t", "ALL", "-i", INITIATOR])
        .arg(t.url(&target)));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // "Suite GetLBAStatus, Test UnmapSingle had failures:"
    let failed: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Suite ")?;
            let (suite, rest) = rest.split_once(", Test ")?;
            let test = rest.strip_suffix(" had failures:")?;
            Some(format!("{suite}.{test}"))
        })
        .collect();
    let known: Vec<String> = KNOWN_FAILURES.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(failed, known, "unexpected results of the conformance suite");
    // It ran them all.
    let summary = text
        .lines()
        .find(|l| l.trim_start().starts_with("tests "))
        .unwrap_or_default()
        .to_string();
    let ran: Vec<u32> = summary
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(ran.first().is_some_and(|n| *n >= 200), "{summary}");
}

#[test]
fn qemu_reads_and_writes_a_volume_over_iscsi() {
    let t = Target::start();
    let (id, target) = t.volume("qemu", 32 * MIB, None);
    let url = t.url(&target);
    let out = run(Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 1M 192k",
            "-c",
            "write -z 4M 64k",
        ])
        .args(["-c", "read -P 0x5a 1M 192k", "-c", "flush"])
        .arg(&url));
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("error"));
    assert!(t.read(&id, MIB, 192 << 10).iter().all(|b| *b == 0x5a));
    // The whole volume, read by qemu-img over iSCSI, equals what the store holds.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.raw");
    let out = run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(&url)
        .arg(&copy));
    assert!(out.status.success());
    let got = std::fs::read(&copy).unwrap();
    assert_eq!(got.len() as u64, 32 * MIB);
    assert!(got == t.read(&id, 0, 32 * MIB as usize));
}

#[test]
fn golden_images_are_write_protected() {
    let t = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("golden.raw");
    std::fs::write(&img, vec![0x11u8; 4 * MIB as usize]).unwrap();
    let g = t
        .store
        .import(
            Some("golden"),
            std::fs::File::open(&img).unwrap(),
            None,
            false,
            None,
            &mut |_, _| {},
        )
        .unwrap();
    t.store.export_add(&g.record.id, Vec::new(), false).unwrap();
    let url = t.url(&format!("{TARGET_PREFIX}{}", g.record.id));
    let said = |out: Output| {
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    // QEMU reads it, and will not open it for writing (MODE SENSE says write protected).
    let out = run(Command::new("qemu-io")
        .args(["-r", "-f", "raw", "-c", "read -P 0x11 0 64k"])
        .arg(&url));
    assert!(said(out).contains("read 65536/65536"));
    let out = run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x22 0 4k"])
        .arg(&url));
    assert!(said(out).contains("write protected"));
    // libiscsi's write-protect tests: every kind of write refused with DATA PROTECT.
    let out = run(Command::new("iscsi-test-cu")
        .args(["--dataloss", "-n", "-t", "SCSI.ReadOnly", "-i", INITIATOR])
        .arg(&url));
    let text = said(out);
    assert!(!text.contains("had failures"), "{text}");
    assert!(!text.contains("not write-protected"), "{text}");
    assert_eq!(t.read(&g.record.id, 0, 4096), vec![0x11u8; 4096]);
}

#[test]
fn only_the_named_initiator_with_its_chap_secret_logs_in() {
    let t = Target::start();
    let access = IscsiAccess {
        initiators: vec![INITIATOR.into()],
        chap: Some(ChapSecret {
            user: "bay1".into(),
            secret: "a-secret-of-12+".into(),
        }),
        mutual_chap: None,
    };
    let (_, target) = t.volume("bay1-os", 8 * MIB, Some(access));
    let inq = |user: &str, initiator: &str| {
        run(Command::new("iscsi-inq")
            .args(["-i", initiator])
            .arg(format!("iscsi://{user}{}/{target}/0", t.addr)))
        .status
        .success()
    };
    assert!(
        inq("bay1%a-secret-of-12+@", INITIATOR),
        "the right initiator and secret"
    );
    assert!(!inq("bay1%wrong-secret-000@", INITIATOR), "a wrong secret");
    assert!(!inq("", INITIATOR), "no CHAP");
    assert!(
        !inq("bay1%a-secret-of-12+@", "iqn.2026-12.test:another"),
        "another initiator"
    );
    // Mutual CHAP: the target proves itself with its own secret.
    let mutual = IscsiAccess {
        initiators: Vec::new(),
        chap: Some(ChapSecret {
            user: "bay3".into(),
            secret: "initiator-secret-3".into(),
        }),
        mutual_chap: Some(ChapSecret {
            user: "appliance".into(),
            secret: "target-secret-33".into(),
        }),
    };
    let (_, m) = t.volume("bay3-os", 8 * MIB, Some(mutual));
    let inq_mutual = |target_secret: &str| {
        run(Command::new("iscsi-inq").args(["-i", INITIATOR]).arg(format!(
            "iscsi://bay3%initiator-secret-3@{}/{m}/0?target_user=appliance&target_password={target_secret}",
            t.addr
        )))
        .status
        .success()
    };
    assert!(inq_mutual("target-secret-33"), "mutual CHAP");
    assert!(
        !inq_mutual("not-the-target-33"),
        "a target that cannot prove itself"
    );
    // An address not on the volume's allow-list.
    let (_, other) = t.volume("bay2-os", 8 * MIB, None);
    let id = other.trim_start_matches(TARGET_PREFIX).to_string();
    t.store
        .export_add_iscsi(&id, vec!["10.9.9.9/32".parse().unwrap()], false, None)
        .unwrap();
    assert!(
        !run(Command::new("iscsi-inq")
            .args(["-i", INITIATOR])
            .arg(t.url(&other)))
        .status
        .success()
    );
}

/// A login PDU with `data`, as an initiator would send it.
fn login_pdu(data: &[u8]) -> Vec<u8> {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43; // immediate Login
    bhs[1] = 0x87; // T, CSG 1, NSG 3
    bhs[5] = (data.len() >> 16) as u8;
    bhs[6] = (data.len() >> 8) as u8;
    bhs[7] = data.len() as u8;
    bhs[8] = 0x80; // ISID
    let mut out = bhs.to_vec();
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// Sends `bytes` and reads what comes back until the target closes or goes quiet.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn hostile_bytes_end_only_their_own_connection() {
    let t = Target::start();
    let (id, target) = t.volume("victim", 8 * MIB, None);
    // A session that stays up meanwhile: qemu-io writes before and after.
    let url = t.url(&target);
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff; 48],
        vec![0; 47],
        // A data segment longer than the target takes.
        {
            let mut p = login_pdu(b"");
            p[5] = 0xff;
            p
        },
        // Text that is not key=value, or not UTF-8.
        login_pdu(b"InitiatorName\0"),
        login_pdu(&[0xc3, 0x28, b'=', b'1', 0]),
        // A normal session for a target that does not exist.
        login_pdu(
            format!("InitiatorName={INITIATOR}\0TargetName={TARGET_PREFIX}nope\0").as_bytes(),
        ),
        // A SCSI command before any login.
        {
            let mut p = vec![0u8; 48];
            p[0] = 0x01;
            p
        },
    ];
    // Random bytes, and a good login followed by random PDUs.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for n in 0..40 {
        let len = (next() % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if n % 2 == 0 {
            let mut good = login_pdu(
                format!("InitiatorName={INITIATOR}\0TargetName={target}\0SessionType=Normal\0")
                    .as_bytes(),
            );
            // Random PDUs after it: a header with a random opcode and lengths kept small.
            for _ in 0..4 {
                let mut h = [0u8; 48];
                for b in h.iter_mut() {
                    *b = next() as u8;
                }
                // Not a SCSI command nor its data: those may legitimately write.
                if matches!(h[0] & 0x3f, 0x01 | 0x05) {
                    h[0] = 0x1f;
                }
                h[4] = 0;
                h[5] = 0;
                h[6] = (next() % 2) as u8;
                good.extend_from_slice(&h);
                let dl = ((h[6] as usize) << 8 | h[7] as usize).div_ceil(4) * 4;
                good.extend((0..dl).map(|_| next() as u8));
            }
            junk = good;
        }
        cases.push(junk);
    }
    for case in &cases {
        exchange(t.addr, case);
    }
    // The target still serves, and nothing was written by the junk (the volume holds only
    // what this client writes).
    let out = run(Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "write -P 0x77 0 64k",
            "-c",
            "read -P 0x77 0 64k",
        ])
        .arg(&url));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("read 65536/65536"));
    let rest = t.read(&id, 64 << 10, (8 * MIB - (64 << 10)) as usize);
    assert!(rest.iter().all(|b| *b == 0), "junk reached the volume");
}
