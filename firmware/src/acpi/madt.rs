//! MADT ("APIC"): the interrupt controllers.
//!
//! acpi_tables' MADT builder has no x86 override/NMI/x2APIC structures and a
//! fixed revision of 1, too old for the online-capable flag (Linux only honours
//! it from MADT revision 5), so the structures are laid out here on top of the
//! generic [`Sdt`] builder.

use acpi_tables::sdt::Sdt;

use crate::acpi::platform::{AcpiPlatform, Cpu};
use crate::acpi::AcpiError;
use crate::layout::{IOAPIC_START, LAPIC_START};

/// MADT revision 5 (ACPI 6.3+): the first where "online capable" exists.
pub const MADT_REVISION: u8 = 5;
/// MADT flag: the platform also has dual 8259 PICs (KVM's irqchip does).
pub const MADT_PCAT_COMPAT: u32 = 1;

/// Local APIC / x2APIC flag: usable at boot.
pub const LAPIC_ENABLED: u32 = 1 << 0;
/// Local APIC / x2APIC flag: not enabled at boot but may be hot-added.
pub const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;

/// MADT structure types used here.
pub mod entry_type {
    /// Processor Local APIC (8 bytes).
    pub const LOCAL_APIC: u8 = 0;
    /// I/O APIC (12 bytes).
    pub const IO_APIC: u8 = 1;
    /// Interrupt Source Override (10 bytes).
    pub const INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
    /// Local APIC NMI (6 bytes).
    pub const LOCAL_APIC_NMI: u8 = 4;
    /// Processor Local x2APIC (16 bytes).
    pub const LOCAL_X2APIC: u8 = 9;
    /// Local x2APIC NMI (12 bytes).
    pub const LOCAL_X2APIC_NMI: u8 = 10;
}

/// The ISA IRQ the PIT raises, and the IOAPIC pin it is wired to (as on
/// every PC since the IOAPIC took over: pin 0 is the 8259 cascade).
const PIT_IRQ: u8 = 0;
const PIT_GSI: u32 = 2;
/// NMI is wired to LINT1 of every local APIC.
const NMI_LINT: u8 = 1;

/// Whether a vCPU fits an xAPIC entry: 8-bit APIC ID and UID, 0xff excluded
/// (it means "broadcast" / "all processors").
fn fits_xapic(cpu: &Cpu) -> bool {
    cpu.apic_id < 0xff && cpu.uid < 0xff
}

fn cpu_flags(cpu: &Cpu) -> u32 {
    if cpu.enabled {
        LAPIC_ENABLED
    } else {
        LAPIC_ONLINE_CAPABLE
    }
}

/// Builds the MADT for `platform`.
pub fn build(platform: &AcpiPlatform) -> Result<Sdt, AcpiError> {
    let cpus = platform.cpus()?;
    let oem = &platform.oem;
    let mut madt = Sdt::new(
        *b"APIC",
        44,
        MADT_REVISION,
        oem.oem_id,
        oem.oem_table_id,
        oem.oem_revision,
    );
    madt.write_u32(36, LAPIC_START as u32);
    madt.write_u32(40, MADT_PCAT_COMPAT);

    let mut any_x2apic = false;
    for cpu in &cpus {
        if fits_xapic(cpu) {
            let mut e = vec![entry_type::LOCAL_APIC, 8, cpu.uid as u8, cpu.apic_id as u8];
            e.extend_from_slice(&cpu_flags(cpu).to_le_bytes());
            madt.append_slice(&e);
        } else {
            any_x2apic = true;
            let mut e = vec![entry_type::LOCAL_X2APIC, 16, 0, 0];
            e.extend_from_slice(&cpu.apic_id.to_le_bytes());
            e.extend_from_slice(&cpu_flags(cpu).to_le_bytes());
            e.extend_from_slice(&cpu.uid.to_le_bytes());
            madt.append_slice(&e);
        }
    }

    let mut ioapic = vec![entry_type::IO_APIC, 12, platform.ioapic_id(), 0];
    ioapic.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    madt.append_slice(&ioapic);

    // Flags 0 = "conforms to the bus": ISA, so edge-triggered, active-high.
    let mut iso = vec![entry_type::INTERRUPT_SOURCE_OVERRIDE, 10, 0, PIT_IRQ];
    iso.extend_from_slice(&PIT_GSI.to_le_bytes());
    iso.extend_from_slice(&0u16.to_le_bytes());
    madt.append_slice(&iso);

    if cpus.iter().any(fits_xapic) {
        // UID 0xff = all processors.
        madt.append_slice(&[entry_type::LOCAL_APIC_NMI, 6, 0xff, 0, 0, NMI_LINT]);
    }
    if any_x2apic {
        let mut nmi = vec![entry_type::LOCAL_X2APIC_NMI, 12, 0, 0];
        nmi.extend_from_slice(&u32::MAX.to_le_bytes()); // all processors
        nmi.extend_from_slice(&[NMI_LINT, 0, 0, 0]);
        madt.append_slice(&nmi);
    }
    Ok(madt)
}
