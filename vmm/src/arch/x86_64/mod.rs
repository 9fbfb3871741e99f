//! x86_64 vCPU state at boot: segments and page tables, CPUID, MSRs, FPU and local APIC.

pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod msrs;
pub mod regs;
pub mod topology;
