//! Scenario deploy-linux: a real Debian golden image (mmdebstrap: systemd, a kernel and
//! systemd-boot on an ESP, open-iscsi) uploaded with plans that set the hostname, the
//! network and a user; two compute modules boot from their OS volumes to a login prompt
//! with their own hostnames and answer ping on their addresses: node 1 through its NIC's
//! firmware over iSCSI (no disk in the VM; the root on iSCSI through the firmware's iBFT,
//! the initiator name set by the plan), node 2 over NBD. Inside node 1, Linux's own
//! initiator (open-iscsi) then discovers a second volume on the appliance's target, logs in
//! with CHAP, makes a filesystem on it, checks it, writes and reads back 48 MiB, checks it
//! again and logs out.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use streamer_vm::compute::ModuleBoot;
use streamer_vm::rig::{APPLIANCE_IP, Rig, initiator_name, module_ip};
use streamer_vm::{debian, linux};

#[test]
fn deploy_linux_two_modules_boot_to_login_and_answer_ping() {
    let golden = debian::golden_image(&common::cache_dir()).unwrap();
    let work = common::Workdir::new("deploy-linux-");
    let boots = [ModuleBoot::Iscsi, ModuleBoot::Nbd];
    let mut rig = Rig::start(&work.path(), &boots).unwrap();
    let t0 = Instant::now();
    let gi = linux::upload_golden_image(&rig.api, "debian12", &golden).unwrap();
    common::record(
        "deploy-linux: golden image upload (832 MiB raw, gzip)",
        t0.elapsed().as_secs_f64(),
    );

    let mut started = Vec::new();
    for (i, boot) in boots.into_iter().enumerate() {
        let host = format!("node{}", i + 1);
        let plan = linux::deployment_plan(&rig.api, &gi, boot).unwrap();
        let values = linux::values(&host, &rig.os_network(i)).unwrap();
        started.push(Instant::now());
        let t = rig.deploy(i, &host, &plan, values).unwrap();
        assert_eq!(t["taskState"], "Completed", "{t}");
        eprintln!(
            "{host}: deploy task {:.1} s",
            started[i].elapsed().as_secs_f64()
        );
    }
    for (i, m) in rig.modules.iter().enumerate() {
        let host = format!("node{}", i + 1);
        m.expect(&format!(r"\n{host} login: "), Duration::from_secs(900))
            .unwrap();
        common::record(
            &format!(
                "deploy-linux: deploy request → login prompt ({host}, {:?}, two at once)",
                boots[i]
            ),
            started[i].elapsed().as_secs_f64(),
        );
    }
    for i in 0..boots.len() {
        let ip = rig.os_address(i);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !rig.enclosure.ping(&ip, 2) {
            if Instant::now() > deadline {
                let m = &rig.modules[i];
                m.login(linux::USER, linux::PASSWORD).unwrap();
                let diag = m.shell(
                    "ip -br link; ip -br addr; ip route; cat /etc/network/interfaces; true",
                    Duration::from_secs(60),
                );
                panic!("{ip} does not answer ping; in the guest: {diag:?}");
            }
        }
    }
    // Node 1's root is on iSCSI, logged in by the initramfs from the firmware's table with
    // the initiator name the appliance gave the NIC; the OS's own initiator has the name
    // the plan set.
    let n1 = &rig.modules[0];
    let t = Duration::from_secs(60);
    n1.login(linux::USER, linux::PASSWORD).unwrap();
    let root = n1
        .shell(
            "findmnt -n -o SOURCE / && ls -l /dev/disk/by-path/ | grep -c iscsi",
            t,
        )
        .unwrap();
    assert!(root.contains("/dev/sda2"), "node1's root: {root}");
    let ibft = n1
        .shell("sudo cat /sys/firmware/ibft/initiator/initiator-name", t)
        .unwrap();
    assert_eq!(ibft.trim(), initiator_name(0), "the iBFT's initiator");
    let own = n1.shell("cat /etc/iscsi/initiatorname.iscsi", t).unwrap();
    assert_eq!(own.trim(), format!("InitiatorName={}", initiator_name(0)));

    // open-iscsi in node 1 against a scratch volume the appliance exports to it alone.
    let (iqn, secret) = (initiator_name(0), "scratch-chap-secret-42");
    rig.appliance.open_shell().unwrap();
    let id = rig
        .appliance
        .shell(
            &format!(
                "storaged volume create --size 256M --name scratch >/dev/null && \
                 printf %s {secret} > /run/scratch.chap && \
                 storaged export add scratch --allow {ip} --initiator {iqn} --chap-user {iqn} \
                 --chap-secret-file /run/scratch.chap >/dev/null && \
                 storaged volume info scratch | sed -n 's/^id: *//p'",
                ip = module_ip(0)
            ),
            t,
        )
        .unwrap()
        .trim()
        .to_owned();
    rig.appliance.close_shell().unwrap();
    let target = format!("iqn.2026-12.org.streamer:{id}");
    let found = n1
        .shell(
            &format!("sudo iscsiadm -m discovery -t sendtargets -p {APPLIANCE_IP}"),
            t,
        )
        .unwrap();
    assert!(found.contains(&target), "discovery: {found}");
    let node = format!("sudo iscsiadm -m node -T {target} -p {APPLIANCE_IP}");
    n1.shell(
        &format!(
            "{node} -o update -n node.session.auth.authmethod -v CHAP && \
             {node} -o update -n node.session.auth.username -v {iqn} && \
             {node} -o update -n node.session.auth.password -v {secret} && \
             {node} --login && sudo udevadm settle"
        ),
        t,
    )
    .unwrap();
    let dev = format!("/dev/disk/by-path/ip-{APPLIANCE_IP}:3260-iscsi-{target}-lun-0");
    let long = Duration::from_secs(600);
    n1.shell(
        &format!(
            "sudo mkfs.ext4 -q {dev} && sudo fsck.ext4 -fn {dev} && sudo mount {dev} /mnt && \
             head -c 48M /dev/urandom > /tmp/data && sudo cp /tmp/data /mnt/data && \
             sudo umount /mnt && sudo fsck.ext4 -fn {dev} && sudo mount -o ro {dev} /mnt && \
             cmp /tmp/data /mnt/data && sudo umount /mnt && {node} --logout"
        ),
        long,
    )
    .unwrap();

    // Each console shows only its own hostname.
    let one = rig.modules[0].console(|c| c.text()).unwrap();
    assert!(!one.contains("node2 login"), "node1's console shows node2");
}
