//! The real `storaged` binary: every volume and export command through the CLI with `--json`,
//! the documented exit codes, and image files made and checked by qemu-img.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn s(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn every_volume_and_export_command_via_the_cli() {
    let Some(qemu_img) = tool("qemu-img") else {
        return;
    };
    let d = Daemon::start();
    let src = d.dir.join("golden.raw");
    let content = write_golden(&src);
    let expected_sum = sha256(&content);
    // The recorded checksum is what sha256sum says about the raw content.
    let sha256sum = run_ok(Command::new("sha256sum").arg(&src));
    assert_eq!(
        expected_sum,
        format!("sha256:{}", sha256sum.split_whitespace().next().unwrap())
    );
    let qcow = d.dir.join("golden.qcow2");
    run_ok(
        Command::new(&qemu_img)
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&src)
            .arg(&qcow),
    );

    // create
    let os = d.ok(&["volume", "create", "--size", "64M", "--name", "os1"]);
    assert_eq!(os["name"], "os1");
    assert_eq!(os["size"], 64 * MIB);
    assert_eq!(os["state"], "writable");
    assert_eq!(os["parent"], json!(null));
    let os_id = s(&os["id"]).to_string();

    // import raw and qcow2: frozen, checksummed, same content
    let g = d.ok(&[
        "volume",
        "import",
        src.to_str().unwrap(),
        "--name",
        "golden",
    ]);
    assert_eq!(g["state"], "frozen");
    assert_eq!(g["size"], GOLDEN_SIZE);
    assert_eq!(g["checksum"], json!(expected_sum));
    assert_eq!(g["origin"], "golden.raw");
    let gq = d.ok(&[
        "volume",
        "import",
        qcow.to_str().unwrap(),
        "--name",
        "golden-q",
        "--format",
        "qcow2",
    ]);
    assert_eq!(gq["checksum"], json!(expected_sum), "qcow2 import differs");
    assert_eq!(gq["size"], GOLDEN_SIZE);
    let gw = d.ok(&[
        "volume",
        "import",
        src.to_str().unwrap(),
        "--name",
        "golden-w",
        "--writable",
    ]);
    assert_eq!(gw["state"], "writable");
    // Sparse import: only the data extents take space.
    assert!(g["allocated_bytes"].as_u64().unwrap() < 4 * MIB, "{g}");

    // export to raw and qcow2 files, compared by qemu-img with the source
    let out_raw = d.dir.join("out.raw");
    let out_qcow = d.dir.join("out.qcow2");
    let r = d.ok(&["volume", "export", "golden-q", out_raw.to_str().unwrap()]);
    assert!(s(&r["result"]).contains("golden-q"), "{r}");
    d.ok(&[
        "volume",
        "export",
        "golden",
        out_qcow.to_str().unwrap(),
        "--format",
        "qcow2",
    ]);
    assert_eq!(std::fs::read(&out_raw).unwrap(), content);
    run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(&out_raw),
    );
    run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&src)
            .arg(&out_qcow),
    );
    let info = run_ok(
        Command::new(&qemu_img)
            .args(["info", "--output=json"])
            .arg(&out_qcow),
    );
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");

    // clone, info, children
    let c = d.ok(&["volume", "clone", "golden", "--name", "c1"]);
    assert_eq!(c["state"], "writable");
    assert_eq!(c["parent"], g["id"]);
    assert_eq!(c["parent_chain"], json!([g["id"]]));
    let gi = d.ok(&["volume", "info", "golden"]);
    assert_eq!(gi["children"], json!([c["id"]]));
    let by_id = d.ok(&["volume", "info", s(&c["id"])]);
    assert_eq!(by_id["name"], "c1");

    // snapshot: the returned volume is the new frozen one; os1 continues on top of it
    let snap = d.ok(&["volume", "snapshot", "os1", "--name", "os1-snap"]);
    assert_eq!(snap["state"], "frozen");
    assert_eq!(snap["name"], "os1-snap");
    let os_after = d.ok(&["volume", "info", "os1"]);
    assert_eq!(
        os_after["id"],
        json!(os_id),
        "snapshot changed the volume's id"
    );
    assert_eq!(os_after["parent"], snap["id"]);

    // flatten detaches the clone and keeps its content
    let f = d.ok(&["volume", "flatten", "c1"]);
    assert_eq!(f["parent"], json!(null));
    assert_eq!(f["parent_chain"], json!([]));
    let flat_out = d.dir.join("c1.raw");
    d.ok(&["volume", "export", "c1", flat_out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&flat_out).unwrap(),
        content,
        "flatten changed c1"
    );

    // list
    let list = d.ok(&["volume", "list"]);
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| s(&v["name"]))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["c1", "golden", "golden-q", "golden-w", "os1", "os1-snap"]
    );

    // exports
    let e = d.ok(&[
        "export",
        "add",
        "os1",
        "--allow",
        "10.0.0.5",
        "--allow",
        "10.1.0.0/16",
        "--read-only",
    ]);
    assert_eq!(
        e,
        json!([{ "volume": os_id, "allow": ["10.0.0.5/32", "10.1.0.0/16"], "read_only": true }])
    );
    d.ok(&["export", "add", "golden"]);
    let el = d.ok(&["export", "list"]);
    assert_eq!(el.as_array().unwrap().len(), 2, "{el}");
    assert_eq!(
        d.ok(&["volume", "info", "os1"])["export"]["read_only"],
        true
    );
    let removed = d.ok(&["export", "remove", "os1"]);
    assert!(s(&removed["result"]).contains("os1"), "{removed}");
    let el = d.ok(&["export", "list"]);
    assert_eq!(
        el,
        json!([{ "volume": g["id"], "allow": [], "read_only": false }])
    );
    let err = d.fails(&["export", "remove", "os1"], 1);
    assert!(err.contains("os1") && err.contains("not exported"), "{err}");
    let err = d.fails(&["export", "add", "os1", "--allow", "not-an-ip"], 1);
    assert!(err.contains("not-an-ip"), "{err}");
    // iSCSI logins: initiator names and a CHAP secret read from a file, never printed.
    let secret = d.dir.join("chap");
    std::fs::write(&secret, "a-secret-of-12+\n").unwrap();
    let e = d.ok(&[
        "export",
        "add",
        "os1",
        "--initiator",
        "iqn.2026-12.test:bay1",
        "--chap-user",
        "bay1",
        "--chap-secret-file",
        secret.to_str().unwrap(),
    ]);
    assert_eq!(
        e[0]["iscsi"],
        json!({"initiators": ["iqn.2026-12.test:bay1"],
               "chap": {"user": "bay1", "secret": "(hidden)"}})
    );
    assert!(
        !d.ok(&["export", "list"])
            .to_string()
            .contains("a-secret-of-12+")
    );
    std::fs::write(&secret, "short\n").unwrap();
    let err = d.fails(
        &[
            "export",
            "add",
            "os1",
            "--chap-user",
            "bay1",
            "--chap-secret-file",
            secret.to_str().unwrap(),
        ],
        3,
    );
    assert!(err.contains("12 to 255 bytes"), "{err}");
    d.ok(&["export", "remove", "os1"]);

    // delete
    let del = d.ok(&["volume", "delete", "c1"]);
    assert!(s(&del["result"]).contains("c1"), "{del}");
    assert!(!d.names().contains(&"c1".to_string()));

    let report = d.verify_clean();
    assert_eq!(report["volumes_checked"], 5);
    assert_eq!(
        report["checksums_checked"], 2,
        "golden and golden-q are frozen imports"
    );

    // Everything survives a clean restart.
    d_restart_keeps(d, &names);
}

fn d_restart_keeps(mut d: Daemon, before: &[&str]) {
    d.stop();
    d.restart();
    let mut after = d.names();
    after.sort();
    let expected: Vec<String> = before
        .iter()
        .filter(|n| **n != "c1")
        .map(|n| n.to_string())
        .collect();
    assert_eq!(after, expected);
    d.verify_clean();
}

#[test]
fn errors_have_documented_exit_codes_and_name_the_volume() {
    let d = Daemon::start();
    let src = d.dir.join("golden.raw");
    write_golden(&src);
    d.import(&src, "base-image");
    let child = d.clone_of("base-image", "child-one");
    d.clone_of("base-image", "child-two");

    // deleting a parent names its children
    let err = d.fails(&["volume", "delete", "base-image"], 1);
    assert!(err.contains("base-image"), "{err}");
    assert!(
        err.contains("child-one") && err.contains("child-two"),
        "{err}"
    );
    assert!(err.contains(&child), "{err}");

    // a clone needs a frozen parent
    let err = d.fails(&["volume", "clone", "child-one"], 1);
    assert!(
        err.contains("child-one") && err.contains("snapshot"),
        "{err}"
    );

    // duplicate names, for every command that names a volume
    d.create("dup", "1M");
    for args in [
        vec!["volume", "create", "--size", "1M", "--name", "dup"],
        vec!["volume", "clone", "base-image", "--name", "dup"],
        vec!["volume", "snapshot", "child-one", "--name", "dup"],
        vec!["volume", "import", src.to_str().unwrap(), "--name", "dup"],
    ] {
        let err = d.fails(&args, 1);
        assert!(
            err.contains("\"dup\"") && err.contains("already exists"),
            "{err}"
        );
    }
    assert_eq!(d.names().iter().filter(|n| *n == "dup").count(), 1);

    // unknown volume
    for args in [
        vec!["volume", "info", "no-such-vol"],
        vec!["volume", "delete", "no-such-vol"],
        vec!["volume", "clone", "no-such-vol"],
        vec!["volume", "snapshot", "no-such-vol"],
        vec!["volume", "flatten", "no-such-vol"],
        vec!["export", "add", "no-such-vol"],
    ] {
        let err = d.fails(&args, 1);
        assert!(err.contains("no-such-vol"), "{args:?}: {err}");
    }

    // a frozen volume cannot be snapshotted; a volume in use cannot be deleted
    let err = d.fails(&["volume", "snapshot", "base-image"], 1);
    assert!(
        err.contains("base-image") && err.contains("frozen"),
        "{err}"
    );
    d.export("dup");
    let conn = d.nbd("dup");
    let err = d.fails(&["volume", "delete", "dup"], 1);
    assert!(err.contains("dup") && err.contains("in use"), "{err}");
    conn.disconnect();

    // usage errors: exit 2, naming the bad value
    let err = d.fails(&["volume", "create", "--size", "ten"], 2);
    assert!(err.contains("ten"), "{err}");
    d.fails(&["volume", "frobnicate"], 2);
    // a size the daemon refuses is exit 1
    let err = d.fails(&["volume", "create", "--size", "1000"], 1);
    assert!(err.contains("1000") && err.contains("512"), "{err}");

    // local file problems: exit 3
    let err = d.fails(&["volume", "import", "/nonexistent/img.raw"], 3);
    assert!(err.contains("/nonexistent/img.raw"), "{err}");

    // the daemon is not running: exit 3 with a hint
    let gone = d.dir.join("nobody-here.sock");
    let r = cli_at(&gone, &["volume", "list"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("nobody-here.sock"), "{}", r.stderr);
    assert!(r.stderr.contains("storaged serve"), "no hint: {}", r.stderr);
    // --control on the command line works the same as the environment variable
    let out = Command::new(BIN)
        .args(["volume", "list", "--json", "--control"])
        .arg(&d.socket)
        .env_remove("STORAGED_CONTROL")
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);

    // the refusals left nothing behind
    d.verify_clean();
}
