//! Which fields of the records are secrets, sealed at rest by the metadata store
//! (`meta::sealed`): password values of custom attributes in build and deployment plans,
//! every attribute value of a server profile (which of them are passwords depends on its
//! plan, so all are sealed), and compute modules' Redfish passwords.

use serde_json::Value;

use crate::meta::{Kind, SecretFields};
use planscript::attributes::AttrType;

/// The kinds whose records hold secrets.
pub const KINDS: [Kind; 4] = [
    Kind::BuildPlan,
    Kind::DeploymentPlan,
    Kind::ServerProfile,
    Kind::ServerHardware,
];

/// The appliance's secret fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Secrets;

impl SecretFields for Secrets {
    fn each(&self, kind: Kind, value: &mut Value, f: &mut dyn FnMut(&mut Value)) {
        match kind {
            Kind::BuildPlan | Kind::DeploymentPlan => {
                let attrs = value
                    .get_mut("customAttributes")
                    .and_then(Value::as_array_mut);
                for a in attrs.into_iter().flatten() {
                    let password =
                        a["type"].as_str().and_then(AttrType::parse) == Some(AttrType::Password);
                    if password && let Some(v) = a.get_mut("value") {
                        f(v);
                    }
                }
            }
            Kind::ServerProfile => {
                let attrs = value
                    .get_mut("osDeploymentSettings")
                    .and_then(|s| s.get_mut("osCustomAttributes"))
                    .and_then(Value::as_array_mut);
                for a in attrs.into_iter().flatten() {
                    if let Some(v) = a.get_mut("value") {
                        f(v);
                    }
                }
            }
            Kind::ServerHardware => {
                if let Some(p) = value.get_mut("redfish").and_then(|r| r.get_mut("password")) {
                    f(p);
                }
            }
            _ => {}
        }
    }
}
