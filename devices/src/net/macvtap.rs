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

/// A link deleted on drop, with the `/dev/tapN` node when we made it (rather than udev).
pub struct OwnedLink {
    name: String,
    node: Option<PathBuf>,
}

impl Drop for OwnedLink {
    fn drop(&mut self) {
        if let Err(e) = netlink::delete_link(&self.name) {
            log::warn!("{e}");
        }
        if let Some(node) = &self.node {
            let _ = std::fs::remove_file(node);
        }
        forget_at_exit(&self.name);
    }
}

/// Links still to delete when the process exits. A VMM's devices may still be referenced by its
/// device threads when `main` returns, so their destructors never run; unlike a TAP, a macvtap
/// device does not vanish when its last descriptor closes, so it is removed from an `atexit`
/// handler (a SIGKILLed VMM still leaves it behind).
static AT_EXIT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static HOOKED: std::sync::Once = std::sync::Once::new();

extern "C" fn delete_remaining() {
    let names = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()));
    for name in names {
        let _ = netlink::delete_link(&name);
    }
}

fn delete_at_exit(name: &str) {
    HOOKED.call_once(|| {
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            libc::atexit(delete_remaining);
        }
    });
    AT_EXIT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(name.to_string());
}

fn forget_at_exit(name: &str) {
    AT_EXIT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|n| n != name);
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
    delete_at_exit(&name);
    let mut link = OwnedLink {
        name: name.clone(),
        node: None,
    };
    netlink::set_up(&name, true).map_err(|e| fail(&name, e.to_string()))?;
    let index = netlink::ifindex(&name).map_err(|e| fail(&name, e.to_string()))?;
    let (dev, made) = char_device(&name, index).map_err(|e| fail(&name, e))?;
    if made {
        link.node = Some(dev.clone());
    }
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

/// `/dev/tapN`, made from sysfs's `dev` file when udev has not made it (then `true`).
fn char_device(name: &str, index: u32) -> Result<(PathBuf, bool), String> {
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
            return Ok((path, false));
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
    Ok((path, true))
}
