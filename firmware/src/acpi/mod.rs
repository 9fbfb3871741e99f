//! ACPI 6.x tables for a hardware-reduced x86_64 platform: RSDP, XSDT, FADT,
//! MADT and DSDT, written into the BIOS area below 1 MiB.

mod dsdt;
mod fadt;
mod madt;
mod platform;
#[cfg(test)]
mod tests;

use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::layout::{ACPI_AREA_END, RSDP_START};

pub use dsdt::{DSDT_REVISION, POWER_BUTTON_PATH};
pub use fadt::{
    FADT_FLAGS, IAPC_BOOT_ARCH_8042, IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT,
    IAPC_BOOT_ARCH_VGA_NOT_PRESENT,
};
pub use madt::{
    entry_type as madt_entry_type, LAPIC_ENABLED, LAPIC_ONLINE_CAPABLE, MADT_PCAT_COMPAT,
    MADT_REVISION,
};
pub use platform::{
    AcpiPlatform, Cpu, OemIds, VirtioMmioDevice, MAX_VCPUS, MAX_VIRTIO_MMIO_DEVICES,
};

/// Why the ACPI tables could not be built or written.
#[derive(Debug, Error)]
pub enum AcpiError {
    /// `apic_ids` is empty.
    #[error("the platform has no boot vCPU: at least one APIC ID is required")]
    NoVcpus,
    /// More possible vCPUs than the tables support.
    #[error("{count} vCPUs requested but the ACPI tables describe at most {max}")]
    TooManyVcpus {
        /// Requested maximum.
        count: u32,
        /// Supported maximum.
        max: u32,
    },
    /// `max_vcpus` is smaller than the number of boot vCPUs.
    #[error("max_vcpus ({max_vcpus}) is smaller than the number of boot vCPUs ({boot_vcpus}); raise max_vcpus")]
    MaxVcpusBelowBootVcpus {
        /// The configured maximum.
        max_vcpus: u32,
        /// The boot vCPU count.
        boot_vcpus: usize,
    },
    /// Two vCPUs share an APIC ID.
    #[error("APIC ID {0} is assigned to more than one vCPU; APIC IDs must be unique")]
    DuplicateApicId(u32),
    /// Hot-pluggable vCPUs would get APIC IDs beyond u32.
    #[error("APIC IDs for hot-pluggable vCPUs would exceed 2^32-1; use lower boot APIC IDs")]
    ApicIdOverflow,
    /// Too many virtio-mmio devices.
    #[error("{count} virtio-mmio devices requested but the DSDT can name at most {max}")]
    TooManyVirtioDevices {
        /// Requested count.
        count: usize,
        /// Supported maximum.
        max: usize,
    },
    /// A virtio-mmio register window is empty or outside the 32-bit MMIO hole.
    #[error("virtio-mmio device {index}: window {base:#x}+{size:#x} must be non-empty and lie inside the 32-bit MMIO hole 0xc0000000..0x100000000")]
    BadVirtioMmioWindow {
        /// Index in `virtio_mmio`.
        index: usize,
        /// Window base.
        base: u64,
        /// Window size.
        size: u64,
    },
    /// A virtio-mmio GSI is out of range or taken by a platform device.
    #[error("virtio-mmio device {index}: GSI {gsi} is unusable: it must be below 24 and not 0, 2 (PIT), 4 (COM1) or 5 (GED)")]
    BadVirtioMmioGsi {
        /// Index in `virtio_mmio`.
        index: usize,
        /// The GSI.
        gsi: u32,
    },
    /// The tables overflow the ACPI area below 1 MiB.
    #[error("the ACPI tables need {needed} bytes but only {available} are available at 0xe0000..0x100000; reduce vCPUs or devices")]
    TablesTooLarge {
        /// Bytes needed from the start of the area.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// Writing a table into guest memory failed (is the first MiB of RAM mapped?).
    #[error("cannot write the {table} table at guest address {addr:#x}: {source}")]
    GuestMemory {
        /// Table signature.
        table: &'static str,
        /// Where it was being written.
        addr: u64,
        /// The guest memory error.
        #[source]
        source: GuestMemoryError,
    },
}

// Structure equality for tests and callers matching on variants; the guest
// memory error has no PartialEq, so those compare by table and address only.
impl PartialEq for AcpiError {
    fn eq(&self, other: &Self) -> bool {
        use AcpiError::*;
        match (self, other) {
            (NoVcpus, NoVcpus) | (ApicIdOverflow, ApicIdOverflow) => true,
            (DuplicateApicId(a), DuplicateApicId(b)) => a == b,
            (TooManyVcpus { count: a, max: m }, TooManyVcpus { count: b, max: n }) => {
                a == b && m == n
            }
            (
                MaxVcpusBelowBootVcpus {
                    max_vcpus: a,
                    boot_vcpus: x,
                },
                MaxVcpusBelowBootVcpus {
                    max_vcpus: b,
                    boot_vcpus: y,
                },
            ) => a == b && x == y,
            (
                TooManyVirtioDevices { count: a, max: m },
                TooManyVirtioDevices { count: b, max: n },
            ) => a == b && m == n,
            (
                BadVirtioMmioWindow {
                    index: i,
                    base: a,
                    size: s,
                },
                BadVirtioMmioWindow {
                    index: j,
                    base: b,
                    size: t,
                },
            ) => i == j && a == b && s == t,
            (BadVirtioMmioGsi { index: i, gsi: a }, BadVirtioMmioGsi { index: j, gsi: b }) => {
                i == j && a == b
            }
            (
                TablesTooLarge {
                    needed: a,
                    available: x,
                },
                TablesTooLarge {
                    needed: b,
                    available: y,
                },
            ) => a == b && x == y,
            (
                GuestMemory {
                    table: a, addr: x, ..
                },
                GuestMemory {
                    table: b, addr: y, ..
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

/// Where each table was placed by [`write_acpi_tables`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiTableAddresses {
    /// RSDP (always [`RSDP_START`]).
    pub rsdp: GuestAddress,
    /// XSDT.
    pub xsdt: GuestAddress,
    /// FADT.
    pub fadt: GuestAddress,
    /// MADT.
    pub madt: GuestAddress,
    /// DSDT.
    pub dsdt: GuestAddress,
    /// First byte after the last table.
    pub end: GuestAddress,
}

/// Tables are 16-byte aligned: more than any table requires (8 for the XSDT's
/// 64-bit entries), and easy to read in a hex dump.
const TABLE_ALIGN: u64 = 16;

fn align_up(addr: u64) -> u64 {
    // Addresses here are below 1 MiB plus a bounded table size: no overflow.
    (addr + TABLE_ALIGN - 1) & !(TABLE_ALIGN - 1)
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn write_table<M: GuestMemory>(
    mem: &M,
    table: &'static str,
    addr: u64,
    bytes: &[u8],
) -> Result<(), AcpiError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| AcpiError::GuestMemory {
            table,
            addr,
            source,
        })
}

/// Builds every table for `platform` and writes them into `mem`, RSDP at
/// [`RSDP_START`] (0xE0000) and the others after it, below 1 MiB.
///
/// Returns the addresses used; `.rsdp` is what goes into `boot_params.acpi_rsdp_addr`
/// or `hvm_start_info.rsdp_paddr`.
pub fn write_acpi_tables_at<M: GuestMemory>(
    mem: &M,
    platform: &AcpiPlatform,
) -> Result<AcpiTableAddresses, AcpiError> {
    platform.validate()?;
    let oem = &platform.oem;

    let dsdt = dsdt::build(platform);
    let madt = madt::build(platform)?;

    // Layout: RSDP, DSDT, FADT, MADT, XSDT. The XSDT goes last because it
    // needs everyone else's address; the FADT needs the DSDT's.
    let dsdt_addr = align_up(RSDP_START + Rsdp::len() as u64);
    let fadt_addr = align_up(dsdt_addr + dsdt.len() as u64);
    let fadt = to_bytes(&fadt::build(oem, dsdt_addr));
    let madt_addr = align_up(fadt_addr + fadt.len() as u64);
    let xsdt_addr = align_up(madt_addr + madt.len() as u64);
    let mut xsdt = XSDT::new(oem.oem_id, oem.oem_table_id, oem.oem_revision);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = to_bytes(&xsdt);
    let end = xsdt_addr + xsdt.len() as u64;
    if end > ACPI_AREA_END {
        return Err(AcpiError::TablesTooLarge {
            needed: end - RSDP_START,
            available: ACPI_AREA_END - RSDP_START,
        });
    }
    let rsdp = to_bytes(&Rsdp::new(oem.oem_id, xsdt_addr));

    write_table(mem, "DSDT", dsdt_addr, dsdt.as_slice())?;
    write_table(mem, "FACP", fadt_addr, &fadt)?;
    write_table(mem, "APIC", madt_addr, madt.as_slice())?;
    write_table(mem, "XSDT", xsdt_addr, &xsdt)?;
    // RSDP last: a half-written set is never reachable from it.
    write_table(mem, "RSDP", RSDP_START, &rsdp)?;

    Ok(AcpiTableAddresses {
        rsdp: GuestAddress(RSDP_START),
        xsdt: GuestAddress(xsdt_addr),
        fadt: GuestAddress(fadt_addr),
        madt: GuestAddress(madt_addr),
        dsdt: GuestAddress(dsdt_addr),
        end: GuestAddress(end),
    })
}

/// Like [`write_acpi_tables_at`], returning only the RSDP address.
pub fn write_acpi_tables<M: GuestMemory>(
    mem: &M,
    platform: &AcpiPlatform,
) -> Result<GuestAddress, AcpiError> {
    write_acpi_tables_at(mem, platform).map(|a| a.rsdp)
}
