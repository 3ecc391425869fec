//! Scenario deploy-hpe: the real HPE Developer 2017 artifact bundle imported through the
//! appliance's API; two compute modules deployed with different attribute values and
//! powered on through Redfish; each boots its OS volume under OVMF (module 1 through its
//! NIC's firmware over iSCSI, module 2 over NBD) and its UEFI loader prints the message
//! the plan script personalized, with its own values.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use streamer_vm::compute::ModuleBoot;
use streamer_vm::rig::Rig;

const BUNDLE: &str = "HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip";
const PLAN: &str = "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24";

#[test]
fn deploy_hpe_two_modules_boot_their_personalized_loader() {
    let work = common::Workdir::new("deploy-hpe-");
    let rig = Rig::start(&work.path(), &[ModuleBoot::Iscsi, ModuleBoot::Nbd]).unwrap();
    rig.api
        .import_bundle(BUNDLE, common::corpus(&format!("bundles/{BUNDLE}")))
        .unwrap();
    let plan = rig.api.uri_named("/rest/deployment-plans", PLAN).unwrap();

    for (i, (s1, fqdn)) in [
        ("alpha-one", "one.example.com"),
        ("beta-two", "two.example.com"),
    ]
    .into_iter()
    .enumerate()
    {
        let values = json!([
            {"name": "ExampleString1", "value": s1},
            {"name": "ExampleString2", "value": format!("module {}", i + 1)},
            {"name": "ExampleNumber1", "value": format!("{}", 100 + i)},
            {"name": "ExampleIPv4Address", "value": format!("10.1.2.{}", 10 + i)},
            {"name": "ExampleFQDN", "value": fqdn},
            {"name": "ExamplePassword", "value": "pw12345"},
        ]);
        let start = Instant::now();
        let t = rig
            .deploy(i, &format!("dev{}", i + 1), &plan, values)
            .unwrap();
        assert_eq!(t["taskState"], "Completed", "{t}");
        let m = &rig.modules[i];
        m.expect(
            "UEFI loader message.txt has been personalized!",
            Duration::from_secs(300),
        )
        .unwrap();
        common::record(
            &format!(
                "deploy-hpe: deploy request → UEFI loader message ({}, {:?})",
                m.name, rig.boots[i]
            ),
            start.elapsed().as_secs_f64(),
        );
        m.expect(&format!("ExampleString1: {s1}"), Duration::from_secs(30))
            .unwrap();
        m.expect(
            &format!("ExampleNumber1: {}", 100 + i),
            Duration::from_secs(30),
        )
        .unwrap();
        m.expect(&format!("ExampleFQDN: {fqdn}"), Duration::from_secs(30))
            .unwrap();
    }
    // Each console shows only its own values.
    let other = rig.modules[0].console(|c| c.text()).unwrap();
    assert!(
        !other.contains("beta-two"),
        "module 1 shows module 2's values"
    );
}
