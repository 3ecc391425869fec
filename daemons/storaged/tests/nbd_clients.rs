//! The NBD server against real clients: qemu-img, qemu-io, nbdinfo and nbdcopy.
//!
//! Each test starts the server in-process on 127.0.0.1 with in-memory devices, runs a client
//! binary, and checks both the client's verdict and the bytes the device ended up holding. A
//! missing client binary makes the test print why it skipped; nothing passes silently.

// Tests fail by panicking; an unexpected client or setup error should do exactly that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use storaged::block::BlockDevice;
use storaged::testing::{MemCatalog, MemDevice};

const MIB: u64 = 1 << 20;

struct Server {
    port: u16,
    catalog: Arc<MemCatalog>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let catalog = Arc::new(MemCatalog::new());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let served: Arc<dyn storaged::export::ExportCatalog> = catalog.clone();
        runtime.spawn(storaged::nbd::serve(listener, served));
        Server {
            port,
            catalog,
            _runtime: runtime,
        }
    }

    fn add(&self, name: &str, device: Arc<MemDevice>) -> Arc<MemDevice> {
        self.catalog
            .insert(name, &format!("{name} description"), device.clone(), None);
        device
    }

    fn uri(&self, name: &str) -> String {
        format!("nbd://127.0.0.1:{}/{name}", self.port)
    }
}

/// The client binary, or `None` after saying why the test is skipped.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (Debian: qemu-utils / libnbd-bin)");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn client");
    eprintln!(
        "$ {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "command failed: {cmd:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs qemu-io commands against `uri` and asserts none of them failed.
fn qemu_io(qemu_io: &Path, uri: &str, cmds: &[&str]) -> String {
    qemu_io_with(qemu_io, &[], uri, cmds)
}

fn qemu_io_with(qemu_io: &Path, opts: &[&str], uri: &str, cmds: &[&str]) -> String {
    let mut cmd = Command::new(qemu_io);
    cmd.args(opts).args(["-f", "raw", uri]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    let out = run(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu-io failed: {text}");
    assert!(!text.contains("Pattern verification failed"), "{text}");
    assert!(!text.contains("failed:"), "{text}");
    text
}

/// Deterministic, incompressible-ish test data with some zero runs for sparseness.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|i| {
            if (i / (256 << 10)) % 3 == 1 {
                return 0;
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn qemu_img_convert_and_compare_round_trip() {
    let Some(qemu_img) = tool("qemu-img") else {
        return;
    };
    let srv = Server::start();
    let dev = srv.add("disk", Arc::new(MemDevice::new(8 * MIB)));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.raw");
    let data = pattern(8 * MIB as usize);
    std::fs::write(&src, &data).expect("write src");

    ok(Command::new(&qemu_img)
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&src)
        .arg(srv.uri("disk")));
    assert!(
        dev.contents() == data,
        "device differs from source after qemu-img convert"
    );
    ok(Command::new(&qemu_img)
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(srv.uri("disk")));

    // Change one byte on the device: compare must now notice.
    dev.write_at(&[data[5 * MIB as usize] ^ 0xff], 5 * MIB, false)
        .expect("poke");
    let out = run(Command::new(&qemu_img)
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(srv.uri("disk")));
    assert_eq!(
        out.status.code(),
        Some(1),
        "qemu-img compare should report a difference"
    );

    let back = dir.path().join("back.raw");
    ok(Command::new(&qemu_img)
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(srv.uri("disk"))
        .arg(&back));
    assert!(std::fs::read(&back).expect("read back") == dev.contents());
}

#[test]
fn qemu_io_writes_verify_and_reach_the_device() {
    let Some(qemu_io_bin) = tool("qemu-io") else {
        return;
    };
    let srv = Server::start();
    let dev = srv.add("disk", Arc::new(MemDevice::new(8 * MIB)));
    dev.write_at(&vec![0x11; 2 * MIB as usize], MIB, false)
        .expect("prefill");
    let uri = srv.uri("disk");
    qemu_io(
        &qemu_io_bin,
        &uri,
        &[
            "write -P 0xab 0 1M",
            "read -P 0xab 0 1M",
            "write -z 1M 1M",
            "read -P 0 1M 1M",
            "discard 2M 1M",
            "read -P 0 2M 1M",
            "write -f -P 0xcd 3M 64k",
            "read -P 0xcd 3M 64k",
            "aio_write -P 0x77 4M 512k",
            "aio_write -P 0x78 5M 512k",
            "aio_flush",
            "read -P 0x77 4M 512k",
            "read -P 0x78 5M 512k",
            "flush",
            "write -P 0x42 8191k 1k",
            "read -P 0x42 8191k 1k",
        ],
    );
    let c = dev.contents();
    let m = MIB as usize;
    assert!(c[..m].iter().all(|&b| b == 0xab));
    assert!(c[m..3 * m].iter().all(|&b| b == 0));
    assert!(c[3 * m..3 * m + 65536].iter().all(|&b| b == 0xcd));
    assert!(c[4 * m..4 * m + m / 2].iter().all(|&b| b == 0x77));
    assert!(c[8 * m - 1024..].iter().all(|&b| b == 0x42));
    assert!(dev.fua_writes() >= 1, "write -f must arrive with FUA");
    assert!(dev.flushes() >= 1, "flush must reach the device");
}

#[test]
fn read_only_export_refuses_writes() {
    let Some(qemu_io_bin) = tool("qemu-io") else {
        return;
    };
    let srv = Server::start();
    let dev = srv.add(
        "golden",
        Arc::new(MemDevice::read_only_with(&vec![0x5a; MIB as usize])),
    );
    let uri = srv.uri("golden");
    qemu_io_with(&qemu_io_bin, &["-r"], &uri, &["read -P 0x5a 0 1M"]);
    // qemu sees NBD_FLAG_READ_ONLY and refuses a read-write open (EPERM); the server's own
    // EPERM for write commands is covered by the unit tests, as qemu never sends them.
    let out = run(Command::new(&qemu_io_bin).args(["-f", "raw", &uri, "-c", "write -P 0x01 0 4k"]));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() || text.contains("failed"),
        "write to read-only export succeeded: {text}"
    );
    assert!(
        text.contains("Permission denied") || text.contains("read-only"),
        "{text}"
    );
    assert!(dev.contents().iter().all(|&b| b == 0x5a));
}

#[test]
fn nbdinfo_lists_visible_exports_and_maps_holes_and_zeroes() {
    let Some(nbdinfo) = tool("nbdinfo") else {
        return;
    };
    let srv = Server::start();
    let dev = srv.add("disk", Arc::new(MemDevice::new(4 * MIB)));
    srv.add("other", Arc::new(MemDevice::new(MIB)));
    let hidden = Arc::new(MemDevice::new(MIB));
    let someone_else = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    srv.catalog
        .insert("secret", "not for you", hidden, Some(vec![someone_else]));

    let list =
        ok(Command::new(&nbdinfo).args(["--list", &format!("nbd://127.0.0.1:{}", srv.port)]));
    assert!(list.contains("export=\"disk\""), "{list}");
    assert!(list.contains("export=\"other\""), "{list}");
    assert!(list.contains("disk description"), "{list}");
    assert!(!list.contains("secret"), "hidden export listed: {list}");

    let info = ok(Command::new(&nbdinfo).arg(srv.uri("disk")));
    assert!(info.contains("export-size: 4194304"), "{info}");
    assert!(info.contains("can_multi_conn: true"), "{info}");

    // 1 MiB of data, then 1 MiB allocated zeroes, then 2 MiB hole.
    dev.write_at(&vec![1; MIB as usize], 0, false)
        .expect("data");
    dev.write_zeroes(MIB, MIB, false, false).expect("zeroes");
    let map = ok(Command::new(&nbdinfo).args(["--map", &srv.uri("disk")]));
    let rows: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{map}");
    assert_eq!(rows[0][..3], ["0", "1048576", "0"]);
    assert_eq!(rows[1][..3], ["1048576", "1048576", "2"]);
    assert_eq!(rows[2][..3], ["2097152", "2097152", "3"]);
    assert!(map.contains("hole,zero"), "{map}");

    let denied = run(Command::new(&nbdinfo).arg(srv.uri("secret")));
    assert!(!denied.status.success(), "denied export opened");
    let unknown = run(Command::new(&nbdinfo).arg(srv.uri("nope")));
    assert!(!unknown.status.success(), "unknown export opened");
}

#[test]
fn nbdcopy_both_directions() {
    let Some(nbdcopy) = tool("nbdcopy") else {
        return;
    };
    let srv = Server::start();
    let dev = srv.add("disk", Arc::new(MemDevice::new(16 * MIB)));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.raw");
    let data = pattern(16 * MIB as usize);
    std::fs::write(&src, &data).expect("write src");

    ok(Command::new(&nbdcopy).arg(&src).arg(srv.uri("disk")));
    assert!(
        dev.contents() == data,
        "device differs after nbdcopy file -> nbd"
    );

    let out = dir.path().join("out.raw");
    std::fs::File::create(&out)
        .and_then(|f| f.set_len(16 * MIB))
        .expect("create out");
    ok(Command::new(&nbdcopy).arg(srv.uri("disk")).arg(&out));
    assert!(
        std::fs::read(&out).expect("read out") == data,
        "file differs after nbdcopy nbd -> file"
    );

    // nbd -> nbd between two exports of the same server, with several connections.
    let copy = srv.add("copy", Arc::new(MemDevice::new(16 * MIB)));
    ok(Command::new(&nbdcopy).args(["--connections=4", &srv.uri("disk"), &srv.uri("copy")]));
    assert!(copy.contents() == data);
}

#[test]
fn concurrent_clients_do_not_disturb_each_other() {
    let Some(qemu_io_bin) = tool("qemu-io") else {
        return;
    };
    let srv = Server::start();
    let dev = srv.add("disk", Arc::new(MemDevice::new(8 * MIB)));
    let uri = srv.uri("disk");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                let (qemu_io_bin, uri) = (&qemu_io_bin, &uri);
                s.spawn(move || {
                    let pat = format!("0x{:x}", 0x10 + i);
                    let w = format!("write -P {pat} {}M 2M", i * 2);
                    let r = format!("read -P {pat} {}M 2M", i * 2);
                    qemu_io(qemu_io_bin, uri, &[&w, &r, "flush", &r]);
                })
            })
            .collect();
        // Meanwhile a broken client sends garbage; only its own connection may suffer.
        use std::io::{Read, Write};
        let mut junk = std::net::TcpStream::connect(("127.0.0.1", srv.port)).expect("connect");
        let mut greeting = [0u8; 18];
        junk.read_exact(&mut greeting).expect("greeting");
        junk.write_all(&[0xde; 64]).expect("garbage");
        let mut rest = Vec::new();
        let _ = junk.read_to_end(&mut rest);
        for h in handles {
            h.join().expect("client thread");
        }
    });
    let c = dev.contents();
    for i in 0..4usize {
        let want = 0x10 + i as u8;
        assert!(
            c[i * 2 * MIB as usize..(i + 1) * 2 * MIB as usize]
                .iter()
                .all(|&b| b == want)
        );
    }
    assert_eq!(
        srv.catalog.open_leases(),
        0,
        "every connection released its export"
    );
}
