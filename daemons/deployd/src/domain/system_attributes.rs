//! System attributes: the `_`-prefixed values the appliance fills in from what it knows about
//! the compute module being deployed. Profiles cannot set them.
//!
//! Filled in:
//! - `_Initiator1.ip`: the module's `deploymentIpv4` (the address its OS volume is exported to);
//! - `_Initiator1.mac`: the module's first MAC address;
//! - `_Initiator2.mac`: its second MAC address, when it has one.
//!
//! HPE also fills `_Initiator1.netmask` and the `_Initiator2` address for its iSCSI
//! deployment networks; this appliance boots over NBD from one address and does not know a
//! netmask, so scripts using them get their default (or an empty string).

use std::collections::BTreeMap;

/// The system attributes for a module with these addresses.
pub fn system_attributes(deployment_ipv4: &str, macs: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("_Initiator1.ip".to_string(), deployment_ipv4.to_string());
    if let Some(mac) = macs.first() {
        m.insert("_Initiator1.mac".to_string(), mac.clone());
    }
    if let Some(mac) = macs.get(1) {
        m.insert("_Initiator2.mac".to_string(), mac.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_mac_and_deployment_address() {
        let m = system_attributes("10.0.0.7", &["aa:bb".into(), "cc:dd".into()]);
        assert_eq!(m["_Initiator1.ip"], "10.0.0.7");
        assert_eq!(m["_Initiator1.mac"], "aa:bb");
        assert_eq!(m["_Initiator2.mac"], "cc:dd");
        assert!(!system_attributes("1.2.3.4", &[]).contains_key("_Initiator1.mac"));
    }
}
