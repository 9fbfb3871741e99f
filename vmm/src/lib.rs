//! ironvirt's virtual machine monitor as a library.
//!
//! Build a [`VmConfig`] (by hand, or from domain XML through `ironvirt-mgmt`), create a [`Vm`], and call
//! [`Vm::run`]; a [`VmHandle`] from [`Vm::handle`] stops it or presses its power button from another thread.
//! The `ironvirt-vmm` binary is a thin wrapper around this.

pub mod arch;
mod boot;
pub mod config;
mod console;
pub mod control;
mod memory;
mod run_control;
pub mod validate;
mod vcpu;
pub mod virtio_devices;
mod vm;

pub use boot::BootError;
pub use config::*;
pub use console::{terminal, ConsoleError};
pub use ironvirt_devices::bus::BusDevice;
pub use ironvirt_devices::virtio::balloon::BalloonStats;
pub use ironvirt_devices::virtio::block::BlockStats;
pub use ironvirt_devices::virtio::net::NetStats;
pub use run_control::RunControlError;
pub use virtio_devices::NetHandle;
pub use vm::{Vm, VmExit, VmHandle};

/// Everything that can stop a VM from being built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The libvirt-style message for a configuration this build cannot run.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error("cannot open /dev/kvm: {0} (is the kvm module loaded and is /dev/kvm accessible to this user?)")]
    KvmOpen(kvm_ioctls::Error),
    #[error("KVM refused {0}: {1}")]
    Kvm(&'static str, kvm_ioctls::Error),
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("firmware tables: {0}")]
    Firmware(String),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error("vCPU setup: {0}")]
    Regs(#[from] arch::regs::RegsError),
    #[error("vCPU setup: {0}")]
    Cpuid(#[from] arch::cpuid::CpuidError),
    #[error("device setup: {0}")]
    Device(String),
    #[error("disk '{target}': {reason}")]
    Disk { target: String, reason: String },
    #[error("interface {index}: {reason}")]
    Net { index: usize, reason: String },
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("event loop: {0}")]
    EventLoop(String),
    #[error("cannot start a vCPU thread: {0}")]
    Thread(std::io::Error),
}
