//! Domain → [`VmConfig`]: what this build can run, and a libvirt-style refusal for the rest.
//!
//! Define accepts any valid domain; only starting it goes through here, so a domain that uses a
//! feature we lack stays defined and starts once the feature lands.

mod clock;
mod devices;
mod disks;
pub mod interfaces;
mod serial;

use std::path::{Path, PathBuf};

use ironvirt_vmm::{BootConfig, CpuTopology, LifecycleAction, VmConfig};

use crate::xml::Domain;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// Valid for libvirt, but not something this build can run.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error("invalid argument: {what} path '{path}' must be absolute")]
    RelativePath { what: &'static str, path: String },
    /// The document says something libvirt itself would refuse.
    #[error("XML error: {0}")]
    Invalid(String),
}

impl LaunchError {
    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        LaunchError::Unsupported(msg.into())
    }
}

/// The host architecture we emulate, as libvirt spells it.
const ARCH: &str = "x86_64";

pub fn vm_config(domain: &Domain) -> Result<VmConfig, LaunchError> {
    check_hypervisor(domain)?;
    let boot = boot_config(domain)?;
    let (on_poweroff, on_reboot, on_crash) = lifecycle(domain)?;
    devices::check(domain)?;
    let serial = serial::serial_config(domain)?;
    let disks = disks::disk_configs(domain)?;
    let vcpus = domain.vcpus();
    Ok(VmConfig {
        name: domain.name().to_string(),
        uuid: domain.uuid_string(),
        memory_bytes: domain.memory().memory_bytes,
        current_memory_bytes: domain.memory().current_bytes,
        vcpus: vcpus.current,
        max_vcpus: vcpus.max,
        topology: topology(domain)?,
        boot,
        on_poweroff,
        on_reboot,
        on_crash,
        serial,
        disks,
        virtio_mmio_on_cmdline: metadata_flag(domain, "virtio-mmio-cmdline"),
        balloon: devices::balloon_config(domain)?,
        interfaces: interfaces::net_configs(domain)?,
        pit: clock::pit(domain)?,
    })
}

fn check_hypervisor(domain: &Domain) -> Result<(), LaunchError> {
    // type='qemu' asks for TCG emulation, which a KVM-only VMM cannot honour.
    if domain.domain_type() != "kvm" {
        return Err(LaunchError::unsupported(format!(
            "domain type '{}' is not supported: only type='kvm' domains can run",
            domain.domain_type()
        )));
    }
    let os = domain.os();
    if os.os_type != "hvm" {
        return Err(LaunchError::unsupported(format!(
            "OS type '{}' is not supported: only 'hvm' guests can run",
            os.os_type
        )));
    }
    // Without an arch libvirt picks the host's; only an explicit other one is a problem.
    if let Some(arch) = os.arch.as_deref().filter(|a| *a != ARCH) {
        return Err(LaunchError::unsupported(format!(
            "architecture '{arch}' is not supported: only {ARCH} guests can run"
        )));
    }
    if cfg!(not(target_arch = "x86_64")) {
        return Err(LaunchError::unsupported(format!(
            "this host is not {ARCH}: only {ARCH} guests on {ARCH} hosts can run"
        )));
    }
    Ok(())
}

fn boot_config(domain: &Domain) -> Result<BootConfig, LaunchError> {
    let os = domain.os();
    let Some(kernel) = os.kernel.as_deref().filter(|k| !k.is_empty()) else {
        return Err(LaunchError::unsupported(
            "booting without <kernel> (firmware/disk boot) is not supported yet",
        ));
    };
    if os.loader.is_some() || os.firmware.is_some() {
        return Err(LaunchError::unsupported(
            "firmware (<loader> or <os firmware=...>) is not supported yet: use direct kernel boot with <kernel> only",
        ));
    }
    Ok(BootConfig {
        kernel: absolute("<kernel>", kernel)?,
        initrd: os
            .initrd
            .as_deref()
            .filter(|i| !i.is_empty())
            .map(|i| absolute("<initrd>", i))
            .transpose()?,
        cmdline: os.cmdline.clone().unwrap_or_default(),
    })
}

/// libvirt requires absolute paths: a relative one would resolve against whatever directory the
/// VMM process happens to run in.
pub(crate) fn absolute(what: &'static str, path: &str) -> Result<PathBuf, LaunchError> {
    let p = Path::new(path);
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Err(LaunchError::RelativePath {
            what,
            path: path.to_string(),
        })
    }
}

fn lifecycle(
    domain: &Domain,
) -> Result<(LifecycleAction, LifecycleAction, LifecycleAction), LaunchError> {
    let lc = domain.lifecycle();
    let check = |event: &str, action: LifecycleAction| match action {
        LifecycleAction::Destroy | LifecycleAction::Restart => Ok(action),
        other => Err(LaunchError::unsupported(format!(
            "{event} action '{}' is not supported yet: only 'destroy' and 'restart' are",
            other.as_str()
        ))),
    };
    Ok((
        check("on_poweroff", lc.on_poweroff)?,
        check("on_reboot", lc.on_reboot)?,
        check("on_crash", lc.on_crash)?,
    ))
}

fn topology(domain: &Domain) -> Result<CpuTopology, LaunchError> {
    let max = domain.vcpus().max;
    let Some(t) = domain.cpu().and_then(|c| c.topology) else {
        return Ok(CpuTopology::flat(max));
    };
    if t.clusters != 1 {
        return Err(LaunchError::unsupported(format!(
            "CPU topology with clusters='{}' is not supported: x86 guests need clusters='1'",
            t.clusters
        )));
    }
    Ok(CpuTopology {
        sockets: t.sockets,
        dies: t.dies,
        cores: t.cores,
        threads: t.threads,
    })
}

#[cfg(test)]
mod tests;

/// The XML namespace of ironvirt's own settings in `<metadata>` (libvirt keeps such elements verbatim).
pub const METADATA_NS: &str = "https://ironvirt.dev/xmlns/domain/1.0";

/// Whether `<metadata>` has an element in [`METADATA_NS`] with an empty child named `flag`, e.g.
/// `<metadata><iv:vmm xmlns:iv='https://ironvirt.dev/xmlns/domain/1.0'><iv:virtio-mmio-cmdline/></iv:vmm></metadata>`.
fn metadata_flag(domain: &Domain, flag: &str) -> bool {
    let Some(metadata) = domain.document().root.child("metadata") else {
        return false;
    };
    metadata
        .elements()
        .filter(|el| {
            el.attributes
                .iter()
                .any(|(k, v)| k.starts_with("xmlns") && v == METADATA_NS)
        })
        .flat_map(|el| el.elements())
        .any(|child| child.name.rsplit(':').next() == Some(flag))
}
