//! `<disk>` → [`DiskConfig`]: virtio-blk over file or block sources, raw or qcow2, with libvirt's driver
//! options and explicit backing chains.

use ironvirt_vmm::{BackingSpec, CacheMode, DiskConfig, ImageFormat};

use super::{absolute, LaunchError};
use crate::xml::tree::Element;
use crate::xml::Domain;

pub(super) fn disk_configs(domain: &Domain) -> Result<Vec<DiskConfig>, LaunchError> {
    let mut disks = Vec::new();
    for el in domain.devices().filter(|d| d.name == "disk") {
        disks.push(disk(el)?);
    }
    // The guest enumerates devices in the order they appear in ACPI, so that order is the target order.
    disks.sort_by_key(|d| disk_index(&d.target).unwrap_or(u64::MAX));
    for pair in disks.windows(2) {
        if pair[0].target == pair[1].target {
            return Err(LaunchError::Invalid(format!(
                "target '{}' duplicated for disk sources",
                pair[0].target
            )));
        }
    }
    Ok(disks)
}

/// libvirt's virDiskNameToIndex: the letters after the prefix are a bijective base-26 number (vda = 0,
/// vdz = 25, vdaa = 26).
pub(crate) fn disk_index(target: &str) -> Option<u64> {
    let suffix = ["vd", "hd", "sd", "xvd", "ubd"]
        .iter()
        .find_map(|p| target.strip_prefix(p))?;
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut index: u64 = 0;
    for b in suffix.bytes() {
        index = index
            .checked_mul(26)?
            .checked_add(u64::from(b - b'a') + 1)?;
    }
    Some(index - 1)
}

fn unsupported(target: &str, what: String) -> LaunchError {
    LaunchError::unsupported(format!("disk '{target}': {what}"))
}

fn disk(el: &Element) -> Result<DiskConfig, LaunchError> {
    let target_el = el.child("target");
    let target = target_el
        .and_then(|t| t.attr("dev"))
        .unwrap_or_default()
        .to_string();
    if target.is_empty() {
        return Err(LaunchError::Invalid(
            "missing target information for device".into(),
        ));
    }
    let bus = target_el
        .and_then(|t| t.attr("bus"))
        .map(str::to_string)
        .unwrap_or_else(|| default_bus(&target));
    if bus != "virtio" {
        return Err(unsupported(
            &target,
            format!("bus '{bus}' is not supported (only bus='virtio')"),
        ));
    }
    let device = el.attr("device").unwrap_or("disk");
    if !matches!(device, "disk" | "cdrom") {
        return Err(unsupported(
            &target,
            format!("device '{device}' is not supported (only disk and cdrom)"),
        ));
    }
    let kind = el.attr("type").unwrap_or("file");
    let source_attr = match kind {
        "file" => "file",
        "block" => "dev",
        other => {
            return Err(unsupported(
                &target,
                format!("disk type '{other}' is not supported (only file and block)"),
            ))
        }
    };
    let path = el
        .child("source")
        .and_then(|s| s.attr(source_attr))
        .ok_or_else(|| {
            unsupported(
                &target,
                "a disk without media (no <source>) is not supported".into(),
            )
        })?;
    let path = absolute("disk source", path)?;

    let driver = el.child("driver");
    let format = match driver.and_then(|d| d.attr("type")) {
        None | Some("raw") => ImageFormat::Raw,
        Some("qcow2") => ImageFormat::Qcow2,
        Some(other) => {
            return Err(unsupported(
                &target,
                format!("image format '{other}' is not supported (only raw and qcow2)"),
            ))
        }
    };
    let cache = match driver.and_then(|d| d.attr("cache")) {
        None | Some("default") | Some("writeback") => CacheMode::Writeback,
        Some("none") => CacheMode::None,
        Some("writethrough") => CacheMode::Writethrough,
        Some("directsync") => CacheMode::Directsync,
        Some("unsafe") => CacheMode::Unsafe,
        Some(other) => {
            return Err(LaunchError::Invalid(format!(
                "unknown disk cache mode '{other}'"
            )))
        }
    };
    let discard_unmap = match driver.and_then(|d| d.attr("discard")) {
        None | Some("ignore") => false,
        Some("unmap") => true,
        Some(other) => {
            return Err(LaunchError::Invalid(format!(
                "unknown disk discard mode '{other}'"
            )))
        }
    };
    let backing = match el.child("backingStore") {
        Some(bs) => backing_spec(&target, bs)?,
        None => None,
    };
    Ok(DiskConfig {
        target,
        path,
        format,
        read_only: device == "cdrom" || el.child("readonly").is_some(),
        cache,
        discard_unmap,
        serial: el.child_text("serial").filter(|s| !s.is_empty()),
        backing,
        shareable: el.child("shareable").is_some(),
    })
}

/// libvirt picks the bus from the target name when `<target bus>` is absent.
fn default_bus(target: &str) -> String {
    let bus = if target.starts_with("vd") {
        "virtio"
    } else if target.starts_with("sd") {
        "scsi"
    } else if target.starts_with("hd") {
        "ide"
    } else if target.starts_with("xvd") {
        "xen"
    } else {
        "unknown"
    };
    bus.to_string()
}

/// `<backingStore>`: an empty element ends the chain (no backing), a missing one means "probe the image".
fn backing_spec(target: &str, bs: &Element) -> Result<Option<BackingSpec>, LaunchError> {
    let Some(kind) = bs.attr("type") else {
        return Ok(None);
    };
    let attr = match kind {
        "file" => "file",
        "block" => "dev",
        other => {
            return Err(unsupported(
                target,
                format!("backing store type '{other}' is not supported"),
            ))
        }
    };
    let path = bs
        .child("source")
        .and_then(|s| s.attr(attr))
        .ok_or_else(|| {
            LaunchError::Invalid(format!("disk '{target}': <backingStore> without a source"))
        })?;
    let format = match bs.child("format").and_then(|f| f.attr("type")) {
        Some("qcow2") => ImageFormat::Qcow2,
        None | Some("raw") => ImageFormat::Raw,
        Some(other) => {
            return Err(unsupported(
                target,
                format!("backing image format '{other}' is not supported"),
            ))
        }
    };
    let next = match bs.child("backingStore") {
        Some(inner) => backing_spec(target, inner)?.map(Box::new),
        None => None,
    };
    Ok(Some(BackingSpec {
        path: absolute("backing store", path)?,
        format,
        backing: next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_index_like_libvirt() {
        assert_eq!(disk_index("vda"), Some(0));
        assert_eq!(disk_index("vdz"), Some(25));
        assert_eq!(disk_index("vdaa"), Some(26));
        assert_eq!(disk_index("sdb"), Some(1));
        assert_eq!(disk_index("vd"), None);
        assert_eq!(disk_index("vd1"), None);
    }
}
