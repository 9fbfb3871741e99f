//! `<os>`: guest type, architecture, boot method.

use super::DomainError;
use crate::xml::tree::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    pub path: Option<String>,
    /// `rom` or `pflash`.
    pub loader_type: Option<String>,
    pub readonly: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Os {
    /// `hvm`, `linux`, `xen`, `exe`, …
    pub os_type: String,
    pub arch: Option<String>,
    pub machine: Option<String>,
    /// `<os firmware='efi|bios'>`.
    pub firmware: Option<String>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    /// `<boot dev=…>` in order: `fd`, `hd`, `cdrom`, `network`.
    pub boot_devices: Vec<String>,
    pub loader: Option<Loader>,
}

const BOOT_DEVICES: &[&str] = &["fd", "hd", "cdrom", "network"];

impl Os {
    pub(super) fn parse(root: &Element) -> Result<Os, DomainError> {
        let os = root.child("os").ok_or(DomainError::MissingOsType)?;
        let type_el = os.child("type").ok_or(DomainError::MissingOsType)?;
        let os_type = type_el.text().trim().to_string();
        if os_type.is_empty() {
            return Err(DomainError::MissingOsType);
        }
        let mut boot_devices = Vec::new();
        for boot in os.children_named("boot") {
            let dev = boot.attr("dev").unwrap_or_default();
            if !BOOT_DEVICES.contains(&dev) {
                return Err(DomainError::UnknownBootDevice(dev.to_string()));
            }
            boot_devices.push(dev.to_string());
        }
        if !boot_devices.is_empty() && any_device_has_boot_order(root) {
            return Err(DomainError::BootOrderConflict);
        }
        let text = |name: &str| os.child_text(name).map(|t| t.trim().to_string());
        Ok(Os {
            os_type,
            arch: type_el.attr("arch").map(str::to_string),
            machine: type_el.attr("machine").map(str::to_string),
            firmware: os.attr("firmware").map(str::to_string),
            // Paths are used as written; cmdline keeps its spacing.
            kernel: text("kernel"),
            initrd: text("initrd"),
            cmdline: os.child_text("cmdline"),
            boot_devices,
            loader: os.child("loader").map(|l| Loader {
                path: Some(l.text().trim().to_string()).filter(|p| !p.is_empty()),
                loader_type: l.attr("type").map(str::to_string),
                readonly: l.attr("readonly").map(str::to_string),
            }),
        })
    }
}

fn any_device_has_boot_order(root: &Element) -> bool {
    root.child("devices")
        .is_some_and(|d| d.elements().any(|dev| dev.child("boot").is_some()))
}
