//! The platform an ironvirt guest sees at boot, for direct kernel boot on
//! x86_64 (no BIOS): the physical [`layout`], the [`e820`] memory map, the
//! [`acpi`] tables and the Linux [`boot`] structures (zero page, PVH start
//! info, command line, initrd placement).
//!
//! Nothing here knows about KVM: everything is written through vm-memory's
//! [`vm_memory::GuestMemory`], so it is testable against a plain
//! `GuestMemoryMmap`.

#![warn(missing_docs)]

pub mod acpi;
pub mod boot;
pub mod e820;
pub mod layout;
pub mod reset_vector;
