//! Semantic checks on `<devices>` that libvirt makes at define time: every disk has a target, no
//! two disks share a target or a drive address, and PCI addresses are in range.

use super::DomainError;
use crate::xml::tree::Element;

fn disk_source(disk: &Element) -> String {
    disk.child("source")
        .and_then(|s| {
            ["file", "dev", "dir", "name", "volume"]
                .iter()
                .find_map(|a| s.attr(a))
        })
        .unwrap_or_default()
        .to_string()
}

/// Index of a disk target name: `sda` → 0, `hdb` → 1, `vdaa` → 26 (libvirt's virDiskNameToIndex).
fn target_index(dev: &str) -> Option<u32> {
    let letters = ["fd", "hd", "vd", "sd", "xvd", "ubd"]
        .iter()
        .find_map(|p| dev.strip_prefix(p))?;
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut idx: u32 = 0;
    for (i, b) in letters.bytes().enumerate() {
        let v = u32::from(b - b'a');
        idx = if i == 0 {
            v
        } else {
            (idx + 1).checked_mul(26)?.checked_add(v)?
        };
    }
    Some(idx)
}

/// The drive address libvirt assigns a disk without an explicit one, for the buses that use them.
fn auto_drive_address(bus: &str, idx: u32) -> Option<[u32; 4]> {
    match bus {
        "ide" => Some([idx / 4, (idx % 4) / 2, 0, idx % 2]),
        "sata" => Some([idx / 6, 0, 0, idx % 6]),
        "scsi" => Some([idx / 7, 0, 0, idx % 7]),
        _ => None,
    }
}

fn number(v: &str) -> Option<u32> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn explicit_drive_address(disk: &Element) -> Option<[u32; 4]> {
    let a = disk
        .child("address")
        .filter(|a| a.attr("type") == Some("drive"))?;
    let f = |n: &str| a.attr(n).and_then(number).unwrap_or(0);
    Some([f("controller"), f("bus"), f("target"), f("unit")])
}

pub(super) fn check(root: &Element) -> Result<(), DomainError> {
    let Some(devices) = root.child("devices") else {
        return Ok(());
    };
    let disks: Vec<&Element> = devices.children_named("disk").collect();
    let mut seen: Vec<(&str, String)> = Vec::new();
    for d in &disks {
        let Some(target) = d.child("target").and_then(|t| t.attr("dev")) else {
            // libvirt names the disk by its source; a bare `<disk/>` with neither source nor
            // target is left for `launch` to refuse as an unsupported device.
            if d.child("source").is_some() {
                return Err(DomainError::DiskMissingTarget(disk_source(d)));
            }
            continue;
        };
        if let Some((_, other)) = seen.iter().find(|(t, _)| *t == target) {
            return Err(DomainError::DiskTargetDuplicated {
                target: target.to_string(),
                path: disk_source(d),
                other: other.clone(),
            });
        }
        seen.push((target, disk_source(d)));
    }
    let mut addresses: Vec<(String, String, [u32; 4])> = Vec::new();
    for d in &disks {
        let Some(target) = d.child("target").and_then(|t| t.attr("dev")) else {
            continue;
        };
        let bus = d
            .child("target")
            .and_then(|t| t.attr("bus"))
            .unwrap_or_default();
        let addr = explicit_drive_address(d)
            .or_else(|| target_index(target).and_then(|i| auto_drive_address(bus, i)));
        let Some(addr) = addr else { continue };
        if let Some((name, _, a)) = addresses.iter().find(|(_, b, a)| b == bus && *a == addr) {
            return Err(DomainError::DriveAddressConflict {
                target: name.clone(),
                address: *a,
            });
        }
        addresses.push((target.to_string(), bus.to_string(), addr));
    }
    for dev in devices.elements() {
        check_pci(dev)?;
    }
    Ok(())
}

fn check_pci(dev: &Element) -> Result<(), DomainError> {
    for a in dev
        .children_named("address")
        .filter(|a| a.attr("type") == Some("pci"))
    {
        if let Some(slot) = a.attr("slot").and_then(number) {
            if slot > 0x1f {
                return Err(DomainError::PciSlot(
                    a.attr("slot").unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(function) = a.attr("function").and_then(number) {
            if function > 7 {
                return Err(DomainError::PciFunction(
                    a.attr("function").unwrap_or_default().to_string(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn target_indexes() {
        assert_eq!(super::target_index("sda"), Some(0));
        assert_eq!(super::target_index("hdd"), Some(3));
        assert_eq!(super::target_index("vdz"), Some(25));
        assert_eq!(super::target_index("vdaa"), Some(26));
        assert_eq!(super::target_index("nvme0n1"), None);
    }
}
