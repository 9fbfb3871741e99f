//! TAP devices: a guest NIC's host side. Opened with a vnet header so checksum and segmentation offloads pass
//! between the guest and the host stack untouched.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// Offload flags for [`Tap::set_offload`] (what the reader of the tap can take).
pub mod offload {
    pub const CSUM: u32 = 0x01;
    pub const TSO4: u32 = 0x02;
    pub const TSO6: u32 = 0x04;
    pub const TSO_ECN: u32 = 0x08;
}

/// Size of the virtio-net header the tap adds to every frame (virtio 1.x, with num_buffers).
pub const VNET_HDR_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open /dev/net/tun: {0} (is the tun module loaded, and is this process allowed to create TAP devices?)")]
    OpenTun(io::Error),
    #[error("interface name '{0}' is too long or contains a NUL byte (at most 15 bytes)")]
    BadName(String),
    #[error("cannot create TAP device '{name}': {source}")]
    Create { name: String, source: io::Error },
    #[error("TAP device '{name}': {what}: {source}")]
    Configure {
        name: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("macvtap device '{name}': {reason}")]
    Macvtap { name: String, reason: String },
}

#[repr(C)]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    /// Union of flags (short), ifindex (int), mtu (int), ... — 24 bytes, as in <net/if.h>.
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Result<Self, TapError> {
        let bytes = name.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(TapError::BadName(name.into()));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..bytes.len()].copy_from_slice(bytes);
        Ok(r)
    }

    fn short(&self) -> libc::c_short {
        libc::c_short::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn set_short(&mut self, v: libc::c_short) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    fn set_int(&mut self, v: libc::c_int) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }

    fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// # Safety
/// `req` must be the argument type the `request` ioctl expects.
unsafe fn ioctl_ptr<T>(fd: RawFd, request: libc::c_ulong, req: *mut T) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    if unsafe { libc::ioctl(fd, request as _, req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub struct Tap {
    file: File,
    name: String,
    /// A link this TAP owns and removes when dropped (a macvtap device made for one guest NIC).
    owned_link: Option<crate::net::macvtap::OwnedLink>,
}

impl Tap {
    /// Creates (or attaches to an existing persistent) TAP device. `name` may contain `%d` for the kernel to
    /// number it (`vnet%d`, like libvirt).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let mut req = IfReq::new(name)?;
        req.set_short(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        // SAFETY: TUNSETIFF takes a struct ifreq, which IfReq mirrors (16-byte name + 24-byte union).
        unsafe { ioctl_ptr(file.as_raw_fd(), TUNSETIFF, &mut req) }.map_err(|source| {
            TapError::Create {
                name: name.into(),
                source,
            }
        })?;
        let tap = Tap {
            name: req.name(),
            file,
            owned_link: None,
        };
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// Wraps the character device of a macvtap interface (opened by [`crate::net::macvtap`]), which
    /// speaks the TAP protocol; `link` is removed when the TAP is dropped.
    pub(crate) fn from_macvtap(
        file: File,
        name: String,
        link: crate::net::macvtap::OwnedLink,
    ) -> Result<Tap, TapError> {
        let tap = Tap {
            file,
            name,
            owned_link: Some(link),
        };
        let mut req = IfReq::new(&tap.name)?;
        req.set_short(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        // SAFETY: TUNSETIFF takes a struct ifreq; macvtap reads only the flags from it.
        unsafe { ioctl_ptr(tap.file.as_raw_fd(), TUNSETIFF, &mut req) }
            .map_err(|e| tap.configure_error("enabling the vnet header", e))?;
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    fn set_vnet_hdr_len(&self) -> Result<(), TapError> {
        let tap = self;
        let mut hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ takes a pointer to an int.
        unsafe { ioctl_ptr(tap.file.as_raw_fd(), TUNSETVNETHDRSZ, &mut hdr_len) }
            .map_err(|source| tap.configure_error("setting the vnet header size", source))?;
        Ok(())
    }

    /// Whether this is a macvtap device (it goes to the host NIC itself, not to a bridge).
    pub fn is_macvtap(&self) -> bool {
        self.owned_link.is_some()
    }

    fn configure_error(&self, what: &'static str, source: io::Error) -> TapError {
        TapError::Configure {
            name: self.name.clone(),
            what,
            source,
        }
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tells the kernel which offloads the reader (the guest) can take: see [`offload`].
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes an unsigned int by value.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD as _,
                flags as libc::c_ulong,
            )
        };
        if r < 0 {
            return Err(self.configure_error("setting offloads", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Brings the interface up (and sets its MTU when given).
    pub fn up(&self, mtu: Option<u32>) -> Result<(), TapError> {
        let sock =
            inet_socket().map_err(|e| self.configure_error("opening a control socket", e))?;
        let mut req = IfReq::new(&self.name)?;
        if let Some(mtu) = mtu {
            req.set_int(mtu as libc::c_int);
            // SAFETY: SIOCSIFMTU takes a struct ifreq.
            unsafe { ioctl_ptr(sock.as_raw_fd(), libc::SIOCSIFMTU, &mut req) }
                .map_err(|e| self.configure_error("setting the MTU", e))?;
        }
        let mut req = IfReq::new(&self.name)?;
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS take a struct ifreq.
        unsafe { ioctl_ptr(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }
            .map_err(|e| self.configure_error("reading its flags", e))?;
        let flags = req.short() | libc::IFF_UP as libc::c_short;
        req.set_short(flags);
        // SAFETY: as above.
        unsafe { ioctl_ptr(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) }
            .map_err(|e| self.configure_error("bringing it up", e))
    }

    /// Enslaves the interface to the Linux bridge `bridge`.
    pub fn attach_to_bridge(&self, bridge: &str) -> Result<(), TapError> {
        let c_name = std::ffi::CString::new(self.name.clone())
            .map_err(|_| TapError::BadName(self.name.clone()))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(self.configure_error("looking up its index", io::Error::last_os_error()));
        }
        let sock =
            inet_socket().map_err(|e| self.configure_error("opening a control socket", e))?;
        let mut req = IfReq::new(bridge)?;
        req.set_int(index as libc::c_int);
        // SAFETY: SIOCBRADDIF takes a struct ifreq naming the bridge, with the port's ifindex.
        unsafe { ioctl_ptr(sock.as_raw_fd(), SIOCBRADDIF, &mut req) }.map_err(|e| {
            TapError::Configure {
                name: self.name.clone(),
                what: "adding it to the bridge",
                source: io::Error::new(e.kind(), format!("bridge '{bridge}': {e}")),
            }
        })
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
