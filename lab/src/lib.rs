//! The lab: real Linux guests under ironvirt-vmm inside a QEMU-TCG VM with emulated AMD-V.
//!
//! This machine's `/dev/kvm` is PVM (software nested KVM) and cannot boot a stock Linux kernel, so the
//! lab boots an L1 VM under QEMU TCG (`-cpu max`, with SVM); inside it `kvm_amd` gives a working
//! `/dev/kvm`, where L2 guests (Debian's cloud kernel) run under ironvirt-vmm or QEMU as the baseline.
//!
//! - [`artifacts`]: download and cache the kernel and busybox from Debian packages.
//! - [`cpio`], [`initramfs`]: build the L1 and L2 initramfs without external tools.
//! - [`run`]: boot L1 with a payload script, capture its console, parse `IRONVIRT-LAB:` markers.

pub mod artifacts;
pub mod binaries;
pub mod boot_timer;
pub mod bzimage;
pub mod cpio;
pub mod demo;
pub mod ext4;
pub mod initramfs;
pub mod lab;
pub mod markers;
pub mod modules;
pub mod run;
pub mod tools;

pub use lab::{Lab, LabError};
