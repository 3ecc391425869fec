//! A minimal Redfish client: a compute module's power state and power actions, and its
//! NIC's iSCSI boot settings.
//!
//! Only what a deployment needs: read `PowerState` of the first system, post
//! `ComputerSystem.Reset`, and patch the standard `iSCSIBoot` properties (and `BootMode`) of
//! the network device function that carries the module's deployment MAC address. Credentials travel in HTTP basic authentication and are never
//! logged. A module registered as `insecure` is reached without checking its certificate
//! (iLOs ship self-signed ones).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How to reach a module's management processor.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedfishEndpoint {
    /// `host:port`, or a full `https://host:port` (`http://` for test doubles).
    pub address: String,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub insecure: bool,
}

/// Failures talking to a management processor.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("Redfish endpoint {0}: {1}")]
    Http(String, String),
    /// The status, and the start of what the endpoint said (its error message).
    #[error("Redfish endpoint {0} answered {1}{2}")]
    Status(String, u16, String),
    #[error("Redfish endpoint {0}: {1}")]
    Reply(String, String),
}

/// OneView's power request mapped to a Redfish `ResetType`.
pub fn reset_type(power_state: &str, power_control: &str) -> Option<&'static str> {
    match (power_state, power_control) {
        ("On", "MomentaryPress" | "PressAndHold") => Some("On"),
        ("On", "Reset") => Some("ForceRestart"),
        ("On", "ColdBoot") => Some("PowerCycle"),
        ("Off", "MomentaryPress") => Some("GracefulShutdown"),
        ("Off", "PressAndHold") => Some("ForceOff"),
        _ => None,
    }
}

impl RedfishEndpoint {
    fn base(&self) -> String {
        if self.address.starts_with("https://") || self.address.starts_with("http://") {
            self.address.trim_end_matches('/').to_string()
        } else {
            format!("https://{}", self.address)
        }
    }

    fn client(&self) -> Result<reqwest::Client, RedfishError> {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(self.insecure)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RedfishError::Http(self.address.clone(), e.to_string()))
    }

    async fn get(&self, c: &reqwest::Client, path: &str) -> Result<Value, RedfishError> {
        let r = c
            .get(format!("{}{path}", self.base()))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| RedfishError::Http(self.address.clone(), e.to_string()))?;
        if !r.status().is_success() {
            return Err(self.status_error(r).await);
        }
        r.json()
            .await
            .map_err(|e| RedfishError::Reply(self.address.clone(), e.to_string()))
    }

    /// The `@odata.id` of the first computer system.
    async fn system(&self, c: &reqwest::Client) -> Result<String, RedfishError> {
        let systems = self.get(c, "/redfish/v1/Systems").await?;
        systems["Members"][0]["@odata.id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RedfishError::Reply(self.address.clone(), "no computer system".into()))
    }

    /// `On`, `Off`, or what the module reports.
    pub async fn power_state(&self) -> Result<String, RedfishError> {
        let c = self.client()?;
        let system = self.system(&c).await?;
        let s = self.get(&c, &system).await?;
        s["PowerState"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RedfishError::Reply(self.address.clone(), "no PowerState".into()))
    }

    /// Posts `ComputerSystem.Reset` with `reset_type`.
    pub async fn reset(&self, reset_type: &str) -> Result<(), RedfishError> {
        let c = self.client()?;
        let system = self.system(&c).await?;
        let r = c
            .post(format!(
                "{}{system}/Actions/ComputerSystem.Reset",
                self.base()
            ))
            .basic_auth(&self.username, Some(&self.password))
            .json(&json!({"ResetType": reset_type}))
            .send()
            .await
            .map_err(|e| RedfishError::Http(self.address.clone(), e.to_string()))?;
        if !r.status().is_success() {
            return Err(self.status_error(r).await);
        }
        Ok(())
    }

    /// Sets the iSCSI boot of the network device function whose MAC address is `mac` (the
    /// first one when none matches, or none is given): Redfish's standard `iSCSIBoot`
    /// properties, and `BootMode: iSCSI`. Returns the function's `@odata.id`.
    pub async fn set_iscsi_boot(
        &self,
        mac: Option<&str>,
        boot: &IscsiBoot,
    ) -> Result<String, RedfishError> {
        let c = self.client()?;
        let system = self.system(&c).await?;
        let s = self.get(&c, &system).await?;
        let no = |what: &str| RedfishError::Reply(self.address.clone(), format!("no {what}"));
        let interfaces = s["NetworkInterfaces"]["@odata.id"]
            .as_str()
            .ok_or_else(|| no("NetworkInterfaces in the computer system"))?;
        let mut functions = Vec::new();
        for i in members(&self.get(&c, interfaces).await?) {
            let interface = self.get(&c, &i).await?;
            let Some(f) = interface["NetworkDeviceFunctions"]["@odata.id"].as_str() else {
                continue;
            };
            functions.extend(members(&self.get(&c, f).await?));
        }
        let mut chosen = None;
        for f in &functions {
            let func = self.get(&c, f).await?;
            let its = func["Ethernet"]["MACAddress"].as_str().unwrap_or_default();
            if mac.is_some_and(|m| m.eq_ignore_ascii_case(its)) {
                chosen = Some(f.clone());
                break;
            }
        }
        let function = chosen
            .or_else(|| functions.first().cloned())
            .ok_or_else(|| no("network device function"))?;
        let r = c
            .patch(format!("{}{function}", self.base()))
            .basic_auth(&self.username, Some(&self.password))
            .json(&json!({"BootMode": "iSCSI", "iSCSIBoot": boot.redfish()}))
            .send()
            .await
            .map_err(|e| RedfishError::Http(self.address.clone(), e.to_string()))?;
        if !r.status().is_success() {
            return Err(self.status_error(r).await);
        }
        Ok(function)
    }

    /// A refusal, with the start of the endpoint's own words (a Redfish error message).
    async fn status_error(&self, r: reqwest::Response) -> RedfishError {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        let said: String = body.trim().chars().take(300).collect();
        RedfishError::Status(
            self.address.clone(),
            status,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            },
        )
    }
}

/// The `@odata.id`s of a collection's members.
fn members(collection: &Value) -> Vec<String> {
    collection["Members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["@odata.id"].as_str().map(str::to_string))
        .collect()
}

/// A module's iSCSI boot, as its NIC firmware takes it.
#[derive(Clone)]
pub struct IscsiBoot {
    pub initiator_name: String,
    pub initiator_ip: String,
    pub target_name: String,
    pub target_ip: String,
    pub target_port: u16,
    pub lun: u32,
    pub chap_user: String,
    pub chap_secret: String,
}

impl std::fmt::Debug for IscsiBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IscsiBoot")
            .field("initiator_name", &self.initiator_name)
            .field("target_name", &self.target_name)
            .field("target_ip", &self.target_ip)
            .finish_non_exhaustive()
    }
}

impl IscsiBoot {
    /// Redfish's `iSCSIBoot` object (DSP0268 `NetworkDeviceFunction`). The target comes from
    /// these settings, not DHCP; the initiator's address from DHCP on the deployment network.
    fn redfish(&self) -> Value {
        json!({
            "IPAddressType": "IPv4",
            "InitiatorName": self.initiator_name,
            "InitiatorIPAddress": self.initiator_ip,
            "IPMaskDNSViaDHCP": true,
            "TargetInfoViaDHCP": false,
            "PrimaryTargetName": self.target_name,
            "PrimaryTargetIPAddress": self.target_ip,
            "PrimaryTargetTCPPort": self.target_port,
            "PrimaryLUN": self.lun,
            "PrimaryVLANEnable": false,
            "AuthenticationMethod": "CHAP",
            "CHAPUsername": self.chap_user,
            "CHAPSecret": self.chap_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oneview_power_requests_map_to_reset_types() {
        assert_eq!(reset_type("On", "MomentaryPress"), Some("On"));
        assert_eq!(reset_type("Off", "PressAndHold"), Some("ForceOff"));
        assert_eq!(
            reset_type("Off", "MomentaryPress"),
            Some("GracefulShutdown")
        );
        assert_eq!(reset_type("On", "Reset"), Some("ForceRestart"));
        assert_eq!(reset_type("On", "ColdBoot"), Some("PowerCycle"));
        assert_eq!(reset_type("Off", "Reset"), None);
        assert_eq!(reset_type("Sideways", "MomentaryPress"), None);
    }
}
