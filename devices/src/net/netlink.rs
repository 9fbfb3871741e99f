//! A minimal rtnetlink client: just the link and address requests ironvirt needs (bridges for virtual
//! networks, macvtap devices for `<interface type='direct'>`, addresses, up/down, enslaving).
//!
//! Each call opens its own `NETLINK_ROUTE` socket in the calling thread's network namespace, sends one
//! request with `NLM_F_ACK` and waits for the kernel's acknowledgement, so an error names the request
//! that failed.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_BR_FORWARD_DELAY: u16 = 1;
const IFLA_BR_STP_STATE: u16 = 5;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const NLMSG_HDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(io::Error),
    #[error("netlink I/O while {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what}: {source}")]
    Kernel { what: String, source: io::Error },
    #[error("interface name '{0}' is too long or contains a NUL byte (at most 15 bytes)")]
    BadName(String),
    #[error("no network interface named '{0}'")]
    NoSuchInterface(String),
}

/// The macvtap/macvlan modes of `<source mode=…>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Private = 1,
    Vepa = 2,
    Bridge = 4,
    Passthru = 8,
}

impl MacvlanMode {
    /// libvirt's spelling; `None` for a mode it does not have.
    pub fn parse(s: &str) -> Option<MacvlanMode> {
        Some(match s {
            "private" => MacvlanMode::Private,
            "vepa" => MacvlanMode::Vepa,
            "bridge" => MacvlanMode::Bridge,
            "passthrough" => MacvlanMode::Passthru,
            _ => return None,
        })
    }
}

/// The interface index of `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, NetlinkError> {
    let c = std::ffi::CString::new(name).map_err(|_| NetlinkError::BadName(name.into()))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(NetlinkError::NoSuchInterface(name.into()));
    }
    Ok(index)
}

/// Whether an interface called `name` exists.
pub fn exists(name: &str) -> bool {
    ifindex(name).is_ok()
}

/// One request being built: header, fixed part, then attributes (nested ones via `nest`).
struct Msg {
    buf: Vec<u8>,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut buf = vec![0u8; NLMSG_HDR_LEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
        buf.extend_from_slice(fixed);
        Msg { buf }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Starts a nested attribute; `end` fills in its length.
    fn nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// Sends `msg` and waits for the kernel's acknowledgement.
fn request(msg: Msg, what: impl Fn() -> String) -> Result<(), NetlinkError> {
    // SAFETY: socket() with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(NetlinkError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let io_err = |source| NetlinkError::Io {
        what: what(),
        source,
    };
    let data = msg.finish();
    // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `data` and `kernel` are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io_err(io::Error::last_os_error()));
    }
    let mut reply = vec![0u8; 8192];
    loop {
        // SAFETY: `reply` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err(e));
        }
        let n = n as usize;
        let mut off = 0;
        while off + NLMSG_HDR_LEN <= n {
            let len = u32::from_ne_bytes(reply[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
            let kind = u16::from_ne_bytes([reply[off + 4], reply[off + 5]]);
            if len < NLMSG_HDR_LEN || off + len > n {
                break;
            }
            if kind == NLMSG_ERROR && len >= NLMSG_HDR_LEN + 4 {
                let code = i32::from_ne_bytes(
                    reply[off + NLMSG_HDR_LEN..off + NLMSG_HDR_LEN + 4]
                        .try_into()
                        .unwrap_or([0; 4]),
                );
                if code == 0 {
                    return Ok(());
                }
                return Err(NetlinkError::Kernel {
                    what: what(),
                    source: io::Error::from_raw_os_error(-code),
                });
            }
            off += align(len);
        }
    }
}

fn check_name(name: &str) -> Result<(), NetlinkError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(NetlinkError::BadName(name.into()));
    }
    Ok(())
}

/// How a new bridge is set up.
#[derive(Debug, Clone, Default)]
pub struct BridgeOptions {
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// Spanning tree on or off.
    pub stp: bool,
    /// Forward delay in seconds.
    pub delay_secs: u32,
}

/// Creates a Linux bridge (down, no ports).
pub fn create_bridge(name: &str, opts: &BridgeOptions) -> Result<(), NetlinkError> {
    check_name(name)?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
    m.attr_str(IFLA_IFNAME, name);
    if let Some(mac) = opts.mac {
        m.attr(IFLA_ADDRESS, &mac);
    }
    if let Some(mtu) = opts.mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    let info = m.nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "bridge");
    let data = m.nest(IFLA_INFO_DATA);
    // The kernel applies the forward delay before the STP state, so a delay below STP's minimum
    // (libvirt's default of 0) is accepted; the unit is USER_HZ (centiseconds).
    m.attr_u32(IFLA_BR_FORWARD_DELAY, opts.delay_secs.saturating_mul(100));
    m.attr_u32(IFLA_BR_STP_STATE, u32::from(opts.stp));
    m.end(data);
    m.end(info);
    request(m, || format!("cannot create bridge '{name}'"))
}

/// Creates a macvtap device `name` on top of `lower` in `mode`, with the guest's MAC address.
pub fn create_macvtap(
    name: &str,
    lower: &str,
    mode: MacvlanMode,
    mac: [u8; 6],
) -> Result<(), NetlinkError> {
    check_name(name)?;
    let lower_index = ifindex(lower)?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
    m.attr_str(IFLA_IFNAME, name)
        .attr_u32(IFLA_LINK, lower_index)
        .attr(IFLA_ADDRESS, &mac);
    let info = m.nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "macvtap");
    let data = m.nest(IFLA_INFO_DATA);
    m.attr_u32(IFLA_MACVLAN_MODE, mode as u32);
    m.end(data);
    m.end(info);
    request(m, || {
        format!("cannot create macvtap device '{name}' on '{lower}'")
    })
}

/// Deletes the interface `name`.
pub fn delete_link(name: &str) -> Result<(), NetlinkError> {
    let index = ifindex(name)?;
    let m = Msg::new(RTM_DELLINK, 0, &ifinfomsg(index, 0, 0));
    request(m, || format!("cannot delete interface '{name}'"))
}

/// Brings `name` up or down.
pub fn set_up(name: &str, up: bool) -> Result<(), NetlinkError> {
    let index = ifindex(name)?;
    let flags = if up { libc::IFF_UP as u32 } else { 0 };
    let m = Msg::new(
        RTM_NEWLINK,
        0,
        &ifinfomsg(index, flags, libc::IFF_UP as u32),
    );
    request(m, || {
        format!(
            "cannot bring interface '{name}' {}",
            if up { "up" } else { "down" }
        )
    })
}

/// Sets the MTU of `name`.
pub fn set_mtu(name: &str, mtu: u32) -> Result<(), NetlinkError> {
    let index = ifindex(name)?;
    let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, 0, 0));
    m.attr_u32(IFLA_MTU, mtu);
    request(m, || format!("cannot set the MTU of '{name}' to {mtu}"))
}

/// Enslaves `name` to the bridge `master`.
pub fn set_master(name: &str, master: &str) -> Result<(), NetlinkError> {
    let index = ifindex(name)?;
    let master_index = ifindex(master)?;
    let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, 0, 0));
    m.attr_u32(IFLA_MASTER, master_index);
    request(m, || format!("cannot add '{name}' to bridge '{master}'"))
}

/// Adds `addr/prefix` to `name` (with the broadcast address for IPv4, as `ip addr add … brd +`).
pub fn add_address(name: &str, addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
    let index = ifindex(name)?;
    let (family, bytes): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut fixed = [0u8; IFADDRMSG_LEN];
    fixed[0] = family;
    fixed[1] = prefix;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &fixed);
    m.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
    if let IpAddr::V4(a) = addr {
        let host_bits = 32u32.saturating_sub(u32::from(prefix));
        let mask = if host_bits >= 32 {
            u32::MAX
        } else {
            (1u32 << host_bits) - 1
        };
        let brd = u32::from(a) | mask;
        m.attr(IFA_BROADCAST, &brd.to_be_bytes());
    }
    request(m, || {
        format!("cannot add address {addr}/{prefix} to '{name}'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nested_lengths_filled() {
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, "br0");
        let at = m.nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        m.end(at);
        let buf = m.finish();
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize,
            buf.len()
        );
        // "br0\0" is 8 bytes with its header; the nest holds "bridge\0" (11, padded to 12) + 4.
        let nest = NLMSG_HDR_LEN + IFINFOMSG_LEN + 8;
        assert_eq!(u16::from_ne_bytes([buf[nest], buf[nest + 1]]), 4 + 11 + 1);
    }

    #[test]
    fn unknown_interface_is_named() {
        let e = ifindex("no-such-if0").unwrap_err();
        assert!(e.to_string().contains("no-such-if0"));
    }
}
