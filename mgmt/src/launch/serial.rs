//! COM1 from `<serial>` / `<console>`, with libvirt's console semantics: a console whose target is
//! serial (or unspecified) is another view of the first `<serial>`; a domain with only such a
//! console gets it as its serial port.

use ironvirt_vmm::SerialConfig;

use super::{absolute, LaunchError};
use crate::xml::domain::{Chardev, ChardevType};
use crate::xml::Domain;

pub(super) fn serial_config(domain: &Domain) -> Result<Option<SerialConfig>, LaunchError> {
    let serials = domain.serials();
    if serials.len() > 1 {
        return Err(LaunchError::unsupported(format!(
            "{} <serial> ports are defined: only one serial port (COM1) is supported yet",
            serials.len()
        )));
    }
    for console in domain.consoles() {
        if let Some(t) = console.target_type.as_deref().filter(|t| *t != "serial") {
            return Err(LaunchError::unsupported(format!(
                "<console> with target type '{t}' is not supported yet: only serial consoles are"
            )));
        }
    }
    let chosen = serials.first().or_else(|| domain.consoles().first());
    chosen.map(convert).transpose()
}

fn convert(dev: &Chardev) -> Result<SerialConfig, LaunchError> {
    if let Some(t) = dev
        .target_type
        .as_deref()
        .filter(|t| !matches!(*t, "isa-serial" | "serial"))
    {
        return Err(LaunchError::unsupported(format!(
            "serial target type '{t}' is not supported yet: only isa-serial (COM1) is"
        )));
    }
    if let Some(port) = dev.target_port.filter(|p| *p != 0) {
        return Err(LaunchError::unsupported(format!(
            "serial port {port} is not supported yet: only port 0 (COM1) is"
        )));
    }
    let path = || dev.source_path.as_deref().unwrap_or_default();
    Ok(match dev.kind {
        ChardevType::Pty => SerialConfig::Pty,
        ChardevType::Stdio => SerialConfig::Stdio,
        ChardevType::File => SerialConfig::File {
            path: absolute("serial <source>", path())?,
            // libvirt truncates unless append='on'.
            append: dev.source_append.unwrap_or(false),
        },
        ChardevType::Unix => SerialConfig::Unix {
            path: absolute("serial <source>", path())?,
            listen: match dev.source_mode.as_deref() {
                Some("bind") => true,
                None | Some("connect") => false,
                Some(other) => {
                    return Err(LaunchError::unsupported(format!(
                        "serial source mode '{other}' is not supported: use 'bind' or 'connect'"
                    )))
                }
            },
        },
        other => {
            return Err(LaunchError::unsupported(format!(
                "serial type '{}' is not supported yet: only pty, file, unix and stdio are",
                other.as_str()
            )))
        }
    })
}
