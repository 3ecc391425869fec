//! The management virtual IP: added to and removed from the management interface with
//! rtnetlink, and announced with gratuitous ARP.
//!
//! Adding an address sends no ARP, so the neighbours (switches, the operators' hosts) keep
//! the old node's MAC until their entry expires. The new holder announces the address with
//! ARP *requests* for itself (sender and target = the virtual IP), broadcast from a packet
//! socket: Linux updates an existing entry from such a request, but ignores updates within
//! its `locktime` (1 s) of the last one, so announcements go out 1.1 s apart, ten times, and
//! then every 10 s while the node holds the address: a node that was frozen (its kernel still
//! answers ARP for the address until its clusterd runs again and removes it) may have won a
//! neighbour back in between.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;

use crate::config::VirtualIp;

/// How many announcements at first, and how far apart; then how often.
pub const ANNOUNCEMENTS: usize = 10;
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(1100);
pub const ANNOUNCE_LATER: Duration = Duration::from_secs(10);

/// The announcements of a held address; they stop when this is dropped.
#[derive(Debug)]
pub struct Announcer(Option<tokio::task::AbortHandle>);

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("network interface {0} not found")]
    NoSuchLink(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("gratuitous ARP on {interface}: {source}")]
    Arp {
        interface: String,
        source: std::io::Error,
    },
}

fn nl(e: rtnetlink::Error) -> VipError {
    VipError::Netlink(e.to_string())
}

async fn handle() -> Result<Handle, VipError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(VipError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The interface's index and hardware address.
async fn link(h: &Handle, name: &str) -> Result<(u32, [u8; 6]), VipError> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    let msg = match links.try_next().await {
        Ok(Some(l)) => l,
        Ok(None) => return Err(VipError::NoSuchLink(name.into())),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
            return Err(VipError::NoSuchLink(name.into()));
        }
        Err(e) => return Err(nl(e)),
    };
    let mut mac = [0u8; 6];
    for attr in &msg.attributes {
        if let LinkAttribute::Address(a) = attr
            && a.len() == 6
        {
            mac.copy_from_slice(a);
        }
    }
    Ok((msg.header.index, mac))
}

/// Adds the address (nothing if it is there) and announces it until the [`Announcer`] is
/// dropped.
pub async fn take(vip: &VirtualIp) -> Result<Announcer, VipError> {
    let h = handle().await?;
    let (index, mac) = link(&h, &vip.interface).await?;
    match h
        .address()
        .add(index, vip.address, vip.prefix_len)
        .execute()
        .await
    {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
        Err(e) => return Err(nl(e)),
    }
    let IpAddr::V4(ip) = vip.address else {
        return Ok(Announcer(None));
    };
    let interface = vip.interface.clone();
    let task = tokio::spawn(async move {
        for i in 0.. {
            if i > 0 {
                let wait = if i < ANNOUNCEMENTS {
                    ANNOUNCE_EVERY
                } else {
                    ANNOUNCE_LATER
                };
                tokio::time::sleep(wait).await;
            }
            if let Err(e) = announce(index, mac, ip) {
                tracing::warn!(
                    "{}",
                    VipError::Arp {
                        interface: interface.clone(),
                        source: e
                    }
                );
            }
        }
    });
    Ok(Announcer(Some(task.abort_handle())))
}

/// Removes the address (nothing if it is not there).
pub async fn release(vip: &VirtualIp) -> Result<(), VipError> {
    let h = handle().await?;
    let (index, _) = link(&h, &vip.interface).await?;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl)?;
    for a in addrs {
        let ours = a
            .attributes
            .iter()
            .any(|attr| matches!(attr, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == vip.address));
        if ours {
            match h.address().del(a).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {}
                Err(e) => return Err(nl(e)),
            }
        }
    }
    Ok(())
}

/// An Ethernet frame carrying an ARP request for `ip` from `ip` (a gratuitous ARP).
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // to everyone
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address stays zero; target protocol address is the same IP.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Broadcasts one gratuitous ARP request on interface `index`.
fn announce(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let frame = garp_frame(mac, ip);
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = proto;
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and the address are valid for the lengths given, for the call.
    let sent = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_is_a_request_for_the_address_itself() {
        let mac = [2, 0, 0, 0, 0, 9];
        let f = garp_frame(mac, Ipv4Addr::new(10, 77, 0, 100));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(
            &f[20..22],
            &[0, 1],
            "a request, which Linux accepts as an update"
        );
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 77, 0, 100]);
        assert_eq!(&f[38..42], &[10, 77, 0, 100]);
        assert_eq!(&f[32..38], &[0; 6]);
    }
}
