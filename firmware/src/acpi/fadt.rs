//! FADT ("FACP"): fixed hardware description for a hardware-reduced platform.

use acpi_tables::fadt::{FADTBuilder, Flags, FADT};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use crate::acpi::platform::OemIds;
use crate::layout::{
    ACPI_RESET_PORT, ACPI_RESET_VALUE, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT,
};

/// IA-PC boot architecture flag: an i8042 keyboard controller is present
/// (the VMM emulates it for its reset line; Linux skips probing without it).
pub const IAPC_BOOT_ARCH_8042: u16 = 1 << 1;
/// IA-PC boot architecture flag: do not probe for VGA.
pub const IAPC_BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IA-PC boot architecture flag: no CMOS RTC. Deliberately NOT set: the VMM
/// emulates the CMOS RTC and Linux should use it for wall-clock time.
pub const IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// The FADT flags we set, as a bit mask (the FADT builder documents why each).
pub const FADT_FLAGS: u32 = Flags::Wbinvd as u32
    | Flags::PwrButton as u32
    | Flags::SlpButton as u32
    | Flags::ResetRegSup as u32
    | Flags::HwReducedAcpi as u32;

fn io_byte_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// Builds the FADT pointing at the DSDT at `dsdt_addr`.
///
/// Flags:
/// - `HW_REDUCED_ACPI`: no PM1/GPE blocks, no SCI; sleep and reset go through
///   the sleep control/status and reset registers below, events through the GED.
/// - `PWR_BUTTON` and `SLP_BUTTON` are SET: per the ACPI spec a one means the
///   button is a control-method device (or absent), a zero a fixed-feature
///   button. Fixed features do not exist on a hardware-reduced platform, and
///   our power button is the `PNP0C0C` device notified from the GED. (With the
///   bit clear Linux would also register a fixed power button it never hears
///   from, and refuse the control-method one as a wakeup source.)
/// - `RESET_REG_SUP`: the reset register is valid.
/// - `WBINVD`: required of every modern processor; KVM implements it.
///
/// No FACS: it is optional on hardware-reduced platforms (no global lock, no
/// S4BIOS, no waking vector since we never resume from S3).
pub fn build(oem: &OemIds, dsdt_addr: u64) -> FADT {
    let mut fadt = FADTBuilder::new(oem.oem_id, oem.oem_table_id, oem.oem_revision)
        .dsdt_64(dsdt_addr)
        .flag(Flags::Wbinvd)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .flag(Flags::HwReducedAcpi);
    fadt.reset_reg = io_byte_register(ACPI_RESET_PORT);
    fadt.reset_value = ACPI_RESET_VALUE;
    fadt.sleep_control_reg = io_byte_register(ACPI_SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_byte_register(ACPI_SLEEP_STATUS_PORT);
    // No 8042 flag: the VMM emulates only the i8042's reset line, not a keyboard controller, and a guest told
    // there is one probes it and fails ("Can't read CTR"). Its reboot fallback still pulses port 0x64.
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH_VGA_NOT_PRESENT.into();
    fadt.finalize()
}
