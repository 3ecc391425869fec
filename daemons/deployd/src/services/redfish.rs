//! A minimal Redfish client: a compute module's power state and power actions.
//!
//! Only what a deployment needs: read `PowerState` of the first system and post
//! `ComputerSystem.Reset`. Credentials travel in HTTP basic authentication and are never
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
