//! Compute modules (OneView's server hardware): what OS volumes are deployed for.
//!
//! A module is registered with its MAC addresses, the address it boots from
//! (`deploymentIpv4`: its OS volume is exported to that address only), how it boots
//! (`bootProtocol`: `nbd`, or `iscsi` through its NIC firmware, as a real server does, with
//! its `iscsiInitiatorName`) and its Redfish management endpoint. The endpoint's credentials are stored but never returned; reads show
//! the power state as Redfish reports it, and `PUT .../powerState` sends OneView's power
//! requests as Redfish `ComputerSystem.Reset` actions.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::collection::{SERVER_HARDWARE, SERVER_PROFILES};
use super::error::DomainError;
use super::input::check_name;
use super::records::{self, Change, with_retries};
use crate::meta::{MetaStore, Record};
use crate::services::Services;
use crate::services::clock::now_iso;
use crate::services::redfish::{RedfishEndpoint, reset_type};
use crate::services::tasks::TaskHandle;

/// A compute module registration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerHardwareInput {
    pub name: String,
    #[serde(default)]
    pub mac_addresses: Vec<String>,
    /// The address the module boots from; its OS volume is exported to this address only.
    #[schema(value_type = String)]
    pub deployment_ipv4: Ipv4Addr,
    pub redfish: RedfishEndpoint,
    /// How the module boots its OS volume: `nbd` (QEMU's NBD client) or `iscsi` (the NIC's
    /// firmware, given its settings through Redfish `iSCSIBoot`).
    #[serde(default)]
    pub boot_protocol: BootProtocol,
    /// The module's iSCSI initiator name (`iqn.…`); made from its id when not given.
    #[serde(default)]
    pub iscsi_initiator_name: Option<String>,
}

/// How a module boots its OS volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BootProtocol {
    #[default]
    Nbd,
    Iscsi,
}

/// The initiator name a module gets when none is given.
fn default_initiator(id: &str) -> String {
    format!("iqn.2026-12.org.streamer:module.{id}")
}

/// An iSCSI name (RFC 3720 §3.2.6): `iqn.yyyy-mm.authority[:anything]`, `eui.` or `naa.`
/// and hex digits; at most 223 bytes, no spaces.
fn check_initiator(name: &str) -> bool {
    let hex = |s: &str, lens: &[usize]| {
        lens.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    let iqn = name.strip_prefix("iqn.").is_some_and(|rest| {
        let date = rest.get(..7).unwrap_or_default();
        date.len() == 7
            && date.as_bytes()[4] == b'-'
            && date
                .chars()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit())
            && rest.get(7..8) == Some(".")
            && rest.len() > 8
    });
    name.len() <= 223
        && !name.chars().any(|c| c.is_whitespace() || c == ',')
        && (iqn
            || name.strip_prefix("eui.").is_some_and(|h| hex(h, &[16]))
            || name.strip_prefix("naa.").is_some_and(|h| hex(h, &[16, 32])))
}

/// What deployment needs to know about a module.
#[derive(Debug, Clone)]
pub struct ComputeModule {
    pub id: String,
    pub uri: String,
    pub name: String,
    pub macs: Vec<String>,
    pub deployment_ipv4: String,
    pub redfish: Option<RedfishEndpoint>,
    pub boot_protocol: BootProtocol,
    pub initiator_name: String,
}

impl ComputeModule {
    pub fn of(r: &Record) -> Self {
        let v = &r.value;
        Self {
            id: r.id.clone(),
            uri: SERVER_HARDWARE.uri(&r.id),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            macs: v["macAddresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect(),
            deployment_ipv4: v["deploymentIpv4"].as_str().unwrap_or_default().to_string(),
            redfish: serde_json::from_value(v["redfish"].clone()).ok(),
            boot_protocol: serde_json::from_value(v["bootProtocol"].clone()).unwrap_or_default(),
            initiator_name: v["iscsiInitiatorName"]
                .as_str()
                .map_or_else(|| default_initiator(&r.id), str::to_string),
        }
    }
}

/// The module at `uri`, if it is one of ours.
pub fn module_at(meta: &dyn MetaStore, uri: &str) -> Result<Option<ComputeModule>, DomainError> {
    Ok(records::at_uri(meta, &SERVER_HARDWARE, uri)?.map(|r| ComputeModule::of(&r)))
}

fn check_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split([':', '-']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Shows module `r` in `doc` (its document as the API renders it) as users may see it: the
/// credentials removed, the power state as its Redfish endpoint reports it.
pub async fn show(doc: &mut Value, r: &Record) {
    let endpoint: Option<RedfishEndpoint> = serde_json::from_value(r.value["redfish"].clone()).ok();
    doc["redfish"] = json!({
        "address": r.value["redfish"]["address"],
        "insecure": r.value["redfish"]["insecure"],
    });
    doc["powerState"] = match endpoint {
        Some(e) => match e.power_state().await {
            Ok(s) => json!(s),
            Err(err) => {
                doc["powerStateError"] = json!(err.to_string());
                json!("Unknown")
            }
        },
        None => json!("Unknown"),
    };
}

/// Registers a compute module; returns its record.
pub fn create(s: &Services, input: &ServerHardwareInput) -> Result<Record, DomainError> {
    check_name("server hardware", &input.name)?;
    records::check_name_free(&*s.meta, &SERVER_HARDWARE, &input.name, None)?;
    let bad_macs: Vec<&String> = input
        .mac_addresses
        .iter()
        .filter(|m| !check_mac(m))
        .collect();
    if !bad_macs.is_empty() {
        return Err(DomainError::invalid(
            "INVALID_MAC_ADDRESS",
            format!("These are not MAC addresses: {bad_macs:?}."),
        ));
    }
    if let Some(name) = &input.iscsi_initiator_name
        && !check_initiator(name)
    {
        return Err(DomainError::invalid(
            "INVALID_INITIATOR_NAME",
            format!(
                "{name:?} is not an iSCSI name: give iqn.yyyy-mm.reversed.domain[:suffix] \
                 (or eui./naa. with hex digits), at most 223 bytes, without spaces."
            ),
        ));
    }
    if input.redfish.address.trim().is_empty() {
        return Err(DomainError::invalid(
            "INVALID_REDFISH_ADDRESS",
            "redfish.address must be host:port of the module's management processor.",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    let value = json!({
        "name": input.name,
        "macAddresses": input.mac_addresses,
        "deploymentIpv4": input.deployment_ipv4.to_string(),
        "bootProtocol": input.boot_protocol,
        "iscsiInitiatorName": input
            .iscsi_initiator_name
            .clone()
            .unwrap_or_else(|| default_initiator(&id)),
        "redfish": input.redfish,
        "created": now,
        "modified": now,
    });
    with_retries(|| {
        records::check_name_free(&*s.meta, &SERVER_HARDWARE, &input.name, None)?;
        let mut change = Change::new(&*s.meta);
        change.create(SERVER_HARDWARE.kind, &id, value.clone());
        change.commit()?;
        Ok(())
    })?;
    records::get(&*s.meta, &SERVER_HARDWARE, &id)
}

/// A server profile assigned to compute module `id`, other than `except`, if any.
pub fn profile_of(
    meta: &dyn MetaStore,
    id: &str,
    except: Option<&str>,
) -> Result<Option<Record>, DomainError> {
    let uri = SERVER_HARDWARE.uri(id);
    Ok(meta.list(SERVER_PROFILES.kind)?.into_iter().find(|p| {
        p.value["serverHardwareUri"].as_str() == Some(uri.as_str()) && Some(p.id.as_str()) != except
    }))
}

/// Removes compute module `current`; refused while a server profile is assigned to it.
pub fn delete(s: &Services, current: &Record) -> Result<(), DomainError> {
    with_retries(|| {
        if let Some(p) = profile_of(&*s.meta, &current.id, None)? {
            return Err(DomainError::conflict(
                "RESOURCE_IN_USE",
                format!(
                    "The server hardware {:?} is assigned to server profile {:?}.",
                    current.value["name"].as_str().unwrap_or(&current.id),
                    p.value["name"].as_str().unwrap_or(&p.id)
                ),
                "Delete the server profile first.",
            )
            .into());
        }
        let mut change = Change::new(&*s.meta);
        change.delete(current)?;
        change.commit()?;
        Ok(())
    })
}

/// A power request in OneView's shape.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerInput {
    /// `On` or `Off`.
    pub power_state: String,
    /// `MomentaryPress`, `PressAndHold`, `ColdBoot` or `Reset`.
    pub power_control: String,
}

/// Sends `ComputerSystem.Reset` to `module`'s Redfish endpoint.
pub async fn set_power(
    module: &ComputeModule,
    power_state: &str,
    power_control: &str,
) -> Result<(), DomainError> {
    let Some(reset) = reset_type(power_state, power_control) else {
        return Err(DomainError::invalid(
            "INVALID_POWER_REQUEST",
            format!(
                "powerState {power_state:?} with powerControl {power_control:?} is not a power \
                 request: use On or Off with MomentaryPress or PressAndHold, or On with Reset or \
                 ColdBoot."
            ),
        ));
    };
    let endpoint = module.redfish.as_ref().ok_or_else(|| {
        DomainError::Internal(format!(
            "compute module {:?} has no Redfish endpoint",
            module.name
        ))
    })?;
    endpoint
        .reset(reset)
        .await
        .map_err(|e| DomainError::Unavailable(e.to_string()))
}

/// Powers module `r` on or off through Redfish, as a task ("Update power state") when the
/// request is a power request; a request that is not is refused before any task.
pub async fn power(
    s: &Services,
    user: &str,
    r: &Record,
    input: &PowerInput,
) -> Result<TaskHandle, DomainError> {
    let module = ComputeModule::of(r);
    if reset_type(&input.power_state, &input.power_control).is_none() {
        set_power(&module, &input.power_state, &input.power_control).await?;
    }
    let task = records::start_task(
        s,
        &SERVER_HARDWARE,
        "Update power state",
        user,
        &module.name,
        &module.uri,
    )?;
    match set_power(&module, &input.power_state, &input.power_control).await {
        Ok(()) => task.complete(None, &format!("Power {}", input.power_state)),
        Err(e) => task.fail(&e),
    }
    Ok(task)
}

#[cfg(test)]
mod initiator_tests {
    use super::check_initiator;

    #[test]
    fn iscsi_names_are_checked() {
        for good in [
            "iqn.2026-12.org.streamer:module.1",
            "iqn.1993-08.org.debian:01:abcdef",
            "eui.02004567A425678D",
            "naa.52004567BA64678D",
        ] {
            assert!(check_initiator(good), "{good}");
        }
        for bad in [
            "",
            "iqn.",
            "iqn.2026-1.org.x",
            "iqn.2026-12",
            "iqn.2026-12.org x",
            "eui.123",
            "bay1",
            &format!("iqn.2026-12.org.{}", "x".repeat(220)),
        ] {
            assert!(!check_initiator(bad), "{bad}");
        }
    }
}
