//! Which `<devices>` children this build can run. Devices get typed support in later work; until
//! then anything that would silently be missing from the guest is refused at start.

use super::LaunchError;
use crate::xml::tree::Element;
use crate::xml::Domain;
use ironvirt_vmm::BalloonConfig;

pub(super) fn check(domain: &Domain) -> Result<(), LaunchError> {
    for dev in domain.devices() {
        if !harmless(dev) && !handled_elsewhere(dev) {
            return Err(LaunchError::unsupported(describe(dev)));
        }
    }
    Ok(())
}

/// `<serial>`/`<console>` are checked by the serial module, `<disk>` by the disks module.
fn handled_elsewhere(dev: &Element) -> bool {
    matches!(
        dev.name.as_str(),
        "serial" | "console" | "disk" | "interface"
    ) || (dev.name == "memballoon" && dev.attr("model") == Some("virtio"))
}

/// Elements libvirt adds by default that change nothing for a microVM without PCI or graphics.
fn harmless(dev: &Element) -> bool {
    match dev.name.as_str() {
        // The QEMU binary path: meaningless here.
        "emulator" => true,
        "controller" => true,
        "memballoon" => dev.attr("model") == Some("none"),
        // The i8042 mouse/keyboard are there regardless; libvirt's default bus for them is ps2.
        "input" => {
            matches!(dev.attr("type"), Some("mouse" | "keyboard"))
                && matches!(dev.attr("bus"), None | Some("ps2"))
        }
        _ => false,
    }
}

fn describe(dev: &Element) -> String {
    match dev.name.as_str() {
        "memballoon" => format!(
            "<memballoon model='{}'> is not supported (only 'virtio' and 'none')",
            dev.attr("model").unwrap_or_default()
        ),
        "input" => format!(
            "<input type='{}' bus='{}'> devices are not supported yet (only ps2 mouse and keyboard)",
            dev.attr("type").unwrap_or_default(),
            dev.attr("bus").unwrap_or("ps2")
        ),
        name => format!("<{name}> devices are not supported yet"),
    }
}

/// `<memballoon model='virtio'>` → [`BalloonConfig`].
pub(super) fn balloon_config(domain: &Domain) -> Result<Option<BalloonConfig>, LaunchError> {
    let Some(el) = domain
        .devices()
        .find(|d| d.name == "memballoon" && d.attr("model") == Some("virtio"))
    else {
        return Ok(None);
    };
    if el.attr("freePageReporting") == Some("on") {
        return Err(LaunchError::unsupported(
            "memballoon freePageReporting is not supported",
        ));
    }
    let stats_period = match el.child("stats").and_then(|s| s.attr("period")) {
        Some(p) => Some(p.parse::<u32>().map_err(|_| {
            LaunchError::Invalid(format!("invalid statistics collection period '{p}'"))
        })?),
        None => None,
    };
    Ok(Some(BalloonConfig {
        stats_period,
        deflate_on_oom: el.attr("autodeflate") == Some("on"),
    }))
}
