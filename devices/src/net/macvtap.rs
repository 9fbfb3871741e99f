//! macvtap: `<interface type='direct'>`. A macvtap interface sits on a host NIC (the "lower" device)
//! with the guest's own MAC address; its character device `/dev/tapN` (N = its ifindex) speaks the
//! TAP protocol, so virtio-net uses it like any TAP.
//!
//! The device is created for one guest NIC and deleted when its [`Tap`] is dropped. `/dev/tapN` is
//! normally made by udev; where no udev runs (a container, the lab's initramfs) it is made here from
//! the major:minor the kernel publishes in sysfs.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::netlink::{self, MacvlanMode};
use super::tap::{Tap, TapError};

/// A link deleted on drop.
pub struct OwnedLink {
    name: String,
}

impl Drop for OwnedLink {
    fn drop(&mut self) {
        if let Err(e) = netlink::delete_link(&self.name) {
            log::warn!("{e}");
        }
    }
}

/// How many `macvtapN` names to try before giving up.
const MAX_INDEX: u32 = 4096;

/// Creates a macvtap device on `lower` (named `name`, else the first free `macvtapN`), brings it up
/// and opens its character device.
pub fn open(
    name: Option<&str>,
    lower: &str,
    mode: MacvlanMode,
    mac: [u8; 6],
) -> Result<Tap, TapError> {
    let fail = |name: &str, reason: String| TapError::Macvtap {
        name: name.to_string(),
        reason,
    };
    let name = match name {
        Some(n) => {
            netlink::create_macvtap(n, lower, mode, mac).map_err(|e| fail(n, e.to_string()))?;
            n.to_string()
        }
        None => create_numbered(lower, mode, mac)?,
    };
    let link = OwnedLink { name: name.clone() };
    netlink::set_up(&name, true).map_err(|e| fail(&name, e.to_string()))?;
    let index = netlink::ifindex(&name).map_err(|e| fail(&name, e.to_string()))?;
    let dev = char_device(&name, index).map_err(|e| fail(&name, e))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&dev)
        .map_err(|e| fail(&name, format!("cannot open {}: {e}", dev.display())))?;
    Tap::from_macvtap(file, name, link)
}

/// Creates `macvtapN` for the first N not taken (another VM may take one between our look and our
/// create, so a name collision just moves on).
fn create_numbered(lower: &str, mode: MacvlanMode, mac: [u8; 6]) -> Result<String, TapError> {
    for i in 0..MAX_INDEX {
        let name = format!("macvtap{i}");
        if netlink::exists(&name) {
            continue;
        }
        match netlink::create_macvtap(&name, lower, mode, mac) {
            Ok(()) => return Ok(name),
            Err(netlink::NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                continue
            }
            Err(e) => {
                return Err(TapError::Macvtap {
                    name,
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(TapError::Macvtap {
        name: "macvtap*".into(),
        reason: format!("every name up to macvtap{MAX_INDEX} is taken"),
    })
}

/// `/dev/tapN`, made from sysfs's `dev` file when udev has not made it.
fn char_device(name: &str, index: u32) -> Result<PathBuf, String> {
    let path = PathBuf::from(format!("/dev/tap{index}"));
    let sys = format!("/sys/class/net/{name}/macvtap/tap{index}/dev");
    let numbers = std::fs::read_to_string(&sys).map_err(|e| format!("cannot read {sys}: {e}"))?;
    let (major, minor) = numbers
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("{sys} says '{}', not MAJOR:MINOR", numbers.trim()))?;
    let want = libc::makedev(major, minor);
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if meta.file_type().is_char_device() && meta.rdev() == want {
            return Ok(path);
        }
        // A stale node from an earlier device with the same index.
        let _ = std::fs::remove_file(&path);
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "bad device path".to_string())?;
    // SAFETY: mknod with a NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, want) } != 0 {
        return Err(format!(
            "cannot create {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(path)
}
