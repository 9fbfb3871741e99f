//! Checks a [`VmConfig`] for things this VMM cannot run, before anything is created, so that an embedder
//! gets the same `unsupported configuration` errors as the CLI.

use crate::config::{LifecycleAction, VmConfig};
use crate::VmError;

/// The most vCPUs the firmware tables and APIC ID layout here are built for.
pub const MAX_VCPUS: u32 = 254;

pub fn validate(config: &VmConfig) -> Result<(), VmError> {
    let unsupported = |msg: String| Err(VmError::Unsupported(msg));
    if config.vcpus == 0 {
        return unsupported("a domain needs at least one vCPU".into());
    }
    if config.vcpus > config.max_vcpus {
        return unsupported(format!(
            "{} current vCPUs exceed the maximum of {}",
            config.vcpus, config.max_vcpus
        ));
    }
    if config.max_vcpus > MAX_VCPUS {
        return unsupported(format!(
            "{} vCPUs requested, at most {MAX_VCPUS} are supported",
            config.max_vcpus
        ));
    }
    if config.topology.total() != u64::from(config.max_vcpus) {
        return unsupported(format!(
            "CPU topology {} sockets x {} dies x {} cores x {} threads doesn't match maximum vcpu count {}",
            config.topology.sockets, config.topology.dies, config.topology.cores, config.topology.threads, config.max_vcpus
        ));
    }
    if config.current_memory_bytes > config.memory_bytes {
        return unsupported("current memory exceeds the maximum memory".into());
    }
    for (what, action) in [
        ("on_poweroff", config.on_poweroff),
        ("on_reboot", config.on_reboot),
        ("on_crash", config.on_crash),
    ] {
        if !matches!(action, LifecycleAction::Destroy | LifecycleAction::Restart) {
            return unsupported(format!(
                "{what} action '{}' is not supported by this hypervisor",
                action.as_str()
            ));
        }
    }
    Ok(())
}
