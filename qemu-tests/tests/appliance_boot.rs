//! The appliance image on virtual hardware: boots by direct kernel boot and from its disk
//! under OVMF to `ready`, answers /rest/version on the forwarded port, restarts a killed
//! daemon, creates its data partition on first boot and keeps it across a power cycle and a
//! pulled power cord, and powers off cleanly on the ACPI power button. Needs `make image`
//! (the Makefile's `test` target builds it first); console logs of a failed run are kept
//! under target/qemu-tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use common::Workdir;

use std::time::Duration;

use streamer_vm::api::Api;
use streamer_vm::appliance::{
    ApplianceSpec, Boot, ImageFiles, create_disk, https_get, login_status,
};

/// TCG is slow and CI machines are shared: generous, but bounded.
const BOOT: Duration = Duration::from_secs(300);
const POWER_OFF: Duration = Duration::from_secs(90);

/// The personality flag of a process started at fixed addresses (linux/personality.h).
const ADDR_NO_RANDOMIZE: u32 = 0x0040000;

/// storaged's personality flags, read in the console's open root shell.
fn storaged_persona(a: &mut streamer_vm::appliance::Appliance) -> u32 {
    let hex = a
        .shell(
            "cat /proc/$(pidof storaged)/personality",
            Duration::from_secs(30),
        )
        .unwrap();
    u32::from_str_radix(hex.trim(), 16).unwrap()
}

fn version_ok(port_url: &str) {
    let (status, body) = https_get(&format!("{port_url}/rest/version")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["currentVersion"].as_u64().unwrap() >= 300, "{body}");
}

/// The web console's page and its script, from the image's deployd.
fn console_served(port_url: &str) {
    let (status, page) = https_get(&format!("{port_url}/")).unwrap();
    assert_eq!(status, 200, "{page}");
    let script = page
        .split("<script type=\"module\" src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no script in the console's page: {page}"));
    let (status, js) = https_get(&format!("{port_url}{script}")).unwrap();
    assert_eq!(status, 200);
    assert!(
        js.contains("/rest/login-sessions"),
        "{script} is not the console's script"
    );
}

#[test]
fn direct_boot_serves_the_api_restarts_daemons_and_keeps_data_across_a_power_cycle() {
    let image = ImageFiles::locate().unwrap();
    let work = Workdir::new("direct-");
    let mut spec = ApplianceSpec::new("appliance", Boot::Direct, &work.path()).unwrap();
    assert!(create_disk(&image, &spec.disk, "2G").unwrap());

    // First boot: the data partition is grown and formatted, DHCP gives the address.
    let mut a = spec.start(&image).unwrap();
    a.vm.console
        .expect(r"data partition created \(ext4, (\d+) MiB\)", BOOT)
        .unwrap();
    let ready = a.wait_ready(BOOT).unwrap();
    assert_eq!(ready.hostname, "streamer");
    assert_eq!(ready.address, "10.0.2.15");
    assert!(
        ready.password.is_some(),
        "the first-start password is shown"
    );
    version_ok(&a.api_url());
    console_served(&a.api_url());

    // Drivers for the devices present (virtio, q35's SATA controller), none for absent ones;
    // the later modules (watchdog, nbd, loop) are in once the services run.
    a.open_shell().unwrap();
    let modules = a
        .shell(
            "for i in $(seq 100); do grep -q 'watchdog armed' /run/log/init.log && break; \
             sleep 0.1; done; \
             for m in virtio_blk virtio_net ahci i6300esb nbd loop e1000e nvme; do \
             [ -d /sys/module/$m ] && echo loaded $m || echo absent $m; done; \
             grep -c 'watchdog armed' /run/log/init.log",
            Duration::from_secs(30),
        )
        .unwrap();
    for m in [
        "virtio_blk",
        "virtio_net",
        "ahci",
        "i6300esb",
        "nbd",
        "loop",
    ] {
        assert!(modules.contains(&format!("loaded {m}")), "{modules}");
    }
    for m in ["e1000e", "nvme"] {
        assert!(modules.contains(&format!("absent {m}")), "{modules}");
    }
    assert!(
        modules.trim_end().ends_with('1'),
        "watchdog not armed: {modules}"
    );
    // Under TCG the services run at fixed addresses (one code translation for them all).
    assert!(
        a.vm.console
            .text()
            .contains("software emulation (TCG): the services start at fixed addresses"),
        "{}",
        a.vm.console.text()
    );
    assert_eq!(
        storaged_persona(&mut a) & ADDR_NO_RANDOMIZE,
        ADDR_NO_RANDOMIZE
    );

    // A killed daemon is restarted by init and serves again.
    a.shell(
        "echo kept-across-power-off > /data/marker && sync",
        Duration::from_secs(30),
    )
    .unwrap();
    let pid = a.shell("pidof deployd", Duration::from_secs(30)).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    a.shell(&format!("kill -9 {pid}"), Duration::from_secs(30))
        .unwrap();
    a.vm.console
        .expect(
            &format!(r"deployd \(pid {pid}\) ended: killed by signal 9"),
            Duration::from_secs(30),
        )
        .unwrap();
    a.vm.console
        .expect(r"deployd is ready", Duration::from_secs(120))
        .unwrap();
    version_ok(&a.api_url());
    a.close_shell().unwrap();

    // The power button powers off cleanly: services stopped, disks synced, QEMU exits 0.
    let status = a.vm.power_down(POWER_OFF).unwrap();
    assert!(status.success(), "{status}");
    let text = a.vm.console.text();
    assert!(text.contains("PowerOff: stopping services"), "{text}");
    assert!(text.contains("reboot: Power down"), "{text}");
    drop(a);

    // Second boot from the same disk: the filesystem is mounted, not recreated; the
    // configuration can keep address randomisation on under TCG.
    spec.api_port = streamer_vm::qemu::free_port().unwrap();
    spec.append = "streamer.aslr=on".into();
    let mut a = spec.start(&image).unwrap();
    a.vm.console
        .expect(r"data partition mounted", BOOT)
        .unwrap();
    let ready = a.wait_ready(BOOT).unwrap();
    assert!(
        ready.password.is_some(),
        "unchanged password is still shown"
    );
    assert!(!a.vm.console.text().contains("data partition created"));
    a.open_shell().unwrap();
    let marker = a
        .shell("cat /data/marker", Duration::from_secs(30))
        .unwrap();
    assert_eq!(marker.trim(), "kept-across-power-off");
    assert_eq!(storaged_persona(&mut a) & ADDR_NO_RANDOMIZE, 0);
    assert!(!a.vm.console.text().contains("fixed addresses"));
    a.close_shell().unwrap();
    spec.append.clear();
    version_ok(&a.api_url());

    // An API request powers it off as cleanly as the power button.
    let api = Api::login(&a.api_url(), "Administrator", &ready.password.unwrap()).unwrap();
    let r = api
        .post("/rest/appliance/shutdown?type=HALT", &serde_json::json!({}))
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = a.vm.wait_exit(POWER_OFF).unwrap();
    assert!(status.success(), "{status}");
    let text = a.vm.console.text();
    let second = text.rsplit("data partition mounted").next().unwrap();
    assert!(second.contains("PowerOff: stopping services"), "{second}");
    assert!(second.contains("reboot: Power down"), "{second}");
    drop(a);

    // The power cord: a synced write survives, the data filesystem comes back (the kernel
    // replays its journal), and the config partition, mounted read-only, is not left dirty.
    spec.api_port = streamer_vm::qemu::free_port().unwrap();
    let mut a = spec.start(&image).unwrap();
    let ready = a.wait_ready(BOOT).unwrap();
    a.open_shell().unwrap();
    a.shell(
        "echo synced-before-the-cord > /data/cord && sync",
        Duration::from_secs(30),
    )
    .unwrap();
    a.vm.kill();
    drop(a);
    spec.api_port = streamer_vm::qemu::free_port().unwrap();
    let mut a = spec.start(&image).unwrap();
    let after = a.wait_ready(BOOT).unwrap();
    assert_eq!(after.password, ready.password);
    a.open_shell().unwrap();
    let cord = a.shell("cat /data/cord", Duration::from_secs(30)).unwrap();
    assert_eq!(cord.trim(), "synced-before-the-cord");
    let dmesg = a
        .shell(
            "dmesg | grep -c 'not properly unmounted' || true",
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(dmesg.trim(), "0", "the config partition was left dirty");
    a.close_shell().unwrap();
    version_ok(&a.api_url());
}

#[test]
fn uefi_disk_boot_on_server_hardware_reaches_ready() {
    let image = ImageFiles::locate().unwrap();
    let work = Workdir::new("uefi-");
    let mut spec = ApplianceSpec::new("appliance-uefi", Boot::Uefi, &work.path()).unwrap();
    // The disk on SATA (AHCI) and an Intel NIC: the drivers init loads because their devices
    // are present, not the virtio ones.
    spec.server_hardware = true;
    create_disk(&image, &spec.disk, "2G").unwrap();
    let mut a = spec.start(&image).unwrap();
    let ready = a.wait_ready(BOOT).unwrap();
    assert_eq!(ready.address, "10.0.2.15");
    version_ok(&a.api_url());
    a.open_shell().unwrap();
    let modules = a
        .shell(
            "for m in ahci sd_mod e1000e virtio_blk virtio_net nvme igb; do \
             [ -d /sys/module/$m ] && echo loaded $m || echo absent $m; done; \
             grep -h 'no device here for' /run/log/init.log",
            Duration::from_secs(30),
        )
        .unwrap();
    for m in ["ahci", "sd_mod", "e1000e"] {
        assert!(modules.contains(&format!("loaded {m}")), "{modules}");
    }
    for m in ["virtio_blk", "virtio_net", "nvme", "igb"] {
        assert!(modules.contains(&format!("absent {m}")), "{modules}");
    }
    a.close_shell().unwrap();
    assert!(a.vm.power_down(POWER_OFF).unwrap().success());
}

#[test]
fn console_menu_resets_the_password_dumps_and_reconfigures() {
    let image = ImageFiles::locate().unwrap();
    let work = Workdir::new("console-");
    let mut spec = ApplianceSpec::new("appliance-console", Boot::Direct, &work.path()).unwrap();
    create_disk(&image, &spec.disk, "2G").unwrap();
    let mut a = spec.start(&image).unwrap();
    let ready = a.wait_ready(BOOT).unwrap();
    let first = ready.password.unwrap();
    let url = a.api_url();
    assert_eq!(login_status(&url, "Administrator", &first).unwrap(), 200);
    let t = Duration::from_secs(60);
    let c = &mut a.vm.console;

    // Details show the address and the services.
    c.send("\n").unwrap();
    c.expect("choice> ", t).unwrap();
    c.send("1\n").unwrap();
    c.expect(r"Address    eth0 10\.0\.2\.15/24", t).unwrap();
    c.expect(r"deployd    running", t).unwrap();
    c.expect("choice> ", t).unwrap();

    // Password reset: the old password stops working, the new one works.
    c.send("4\n").unwrap();
    c.expect("new Administrator password: ", t).unwrap();
    c.send("console-reset-1\n").unwrap();
    c.expect("again: ", t).unwrap();
    c.send("console-reset-1\n").unwrap();
    c.expect("Administrator password reset", Duration::from_secs(120))
        .unwrap();
    c.expect("choice> ", t).unwrap();
    a.vm.console
        .expect("deployd is ready", Duration::from_secs(120))
        .ok();
    assert_eq!(
        login_status(&url, "Administrator", "console-reset-1").unwrap(),
        200
    );
    assert_eq!(login_status(&url, "Administrator", &first).unwrap(), 401);

    // Support dump on the data partition.
    let c = &mut a.vm.console;
    c.send("5\n").unwrap();
    let dump = c
        .expect(r"support dump written to (\S+\.tar\.gz)", t)
        .unwrap();
    assert!(dump[1].starts_with("/data/support/"), "{}", dump[1]);
    c.expect("choice> ", t).unwrap();

    // A new hostname is saved on the config partition and used after the reboot.
    c.send("3\n").unwrap();
    c.expect("new setting", t).unwrap();
    c.send("\n").unwrap();
    c.expect(r"hostname \[streamer\]", t).unwrap();
    c.send("lab-streamer-1\n").unwrap();
    c.expect("it applies at the next boot", t).unwrap();
    c.expect(r"Reboot now\? \[y/N\] ", t).unwrap();
    c.send("y\n").unwrap();
    c.expect("Reboot: stopping services", t).unwrap();
    c.expect(r"streamer: lab-streamer-1 10\.0\.2\.15 ready", BOOT)
        .unwrap();
    // init prints the first-login line (if any) before its timing line.
    a.vm.console.expect("ready after", t).unwrap();
    let text = a.vm.console.text();
    let after_reboot = text.rsplit("Reboot: stopping services").next().unwrap();
    assert!(
        !after_reboot.contains("first login"),
        "no first password after a reset"
    );

    // init's shutdown lines reach the operator even when they are still queued on the
    // serial port as the console service stops (its exit hangs the terminal up, and the
    // kernel discards what is queued). The operator's terminal pauses output (XOFF) just
    // before the power button is pressed and resumes it (XON) a second later.
    a.vm.console.send("\x13").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    a.vm.press_power_button().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // Not unwrapped: when QEMU has already powered off, the lines below say what was lost.
    let _ = a.vm.console.send("\x11");
    assert!(a.vm.wait_exit(POWER_OFF).unwrap().success());
    let text = a.vm.console.text();
    let tail = text.rsplit("ready after").next().unwrap();
    for line in [
        "PowerOff: stopping services",
        "stopping console",
        "syncing disks",
    ] {
        assert!(tail.contains(line), "{line:?} is missing from: {tail}");
    }
}
