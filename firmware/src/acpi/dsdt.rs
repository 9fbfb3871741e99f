//! DSDT: the AML namespace — S5, COM1, the power button, the Generic Event
//! Device that delivers power-button presses, and virtio-mmio devices.

use acpi_tables::aml::{
    self, Device, EISAName, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, Interrupt,
    Memory32Fixed, Method, Name, OpRegion, OpRegionSpace, Path, ResourceTemplate, Scope, IO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use crate::acpi::platform::{AcpiPlatform, VirtioMmioDevice};
use crate::layout::{
    ACPI_S5_SLP_TYP, COM1_GSI, COM1_PORT, COM1_PORT_LEN, GED_EVENT_POWER_BUTTON, GED_GSI,
    GED_STATUS_PORT,
};

/// DSDT revision 2: AML integers are 64 bits wide.
pub const DSDT_REVISION: u8 = 2;

/// The ACPI name of the power button device.
pub const POWER_BUTTON_PATH: &str = "\\_SB_.PWRB";

/// `Notify` code for a power button press ("button pressed").
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// An `Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }`
/// descriptor. Every line we describe is raised through an irqfd, which
/// delivers an edge (see [`crate::layout::GED_GSI`]).
fn edge_interrupt(gsi: u32) -> Interrupt {
    Interrupt::new(true, true, false, false, gsi)
}

fn serialize(aml: &dyn Aml, out: &mut Vec<u8>) {
    aml.to_aml_bytes(out);
}

/// `Name (\_S5_, Package () { 5, 0, 0, 0 })`: S5 is SLP_TYP 5. On a
/// hardware-reduced platform only SLP_TYPa (element 0) is used: the OS writes
/// `SLP_TYP << 2 | SLP_EN` to the sleep control register.
fn s5(out: &mut Vec<u8>) {
    let pkg = aml::Package::new(vec![&ACPI_S5_SLP_TYP, &0u8, &0u8, &0u8]);
    serialize(&Name::new(Path::new("\\_S5_"), &pkg), out);
}

/// COM1 as a 16550 (`PNP0501`) at 0x3f8 on IRQ 4.
fn com1(out: &mut Vec<u8>) {
    let hid = Name::new(Path::new("_HID"), &EISAName::new("PNP0501"));
    let uid = Name::new(Path::new("_UID"), &0u8);
    let io = IO::new(COM1_PORT, COM1_PORT, 1, COM1_PORT_LEN);
    let irq = edge_interrupt(COM1_GSI);
    let crs = Name::new(Path::new("_CRS"), &ResourceTemplate::new(vec![&io, &irq]));
    serialize(&Device::new(Path::new("COM1"), vec![&hid, &uid, &crs]), out);
}

/// The control-method power button (`PNP0C0C`). Linux's ACPI button driver
/// turns `Notify (PWRB, 0x80)` into a KEY_POWER event, which systemd-logind
/// or acpid turn into an orderly shutdown.
fn power_button(out: &mut Vec<u8>) {
    let hid = Name::new(Path::new("_HID"), &EISAName::new("PNP0C0C"));
    let uid = Name::new(Path::new("_UID"), &0u8);
    serialize(&Device::new(Path::new("PWRB"), vec![&hid, &uid]), out);
}

/// The Generic Event Device (`ACPI0013`): on a hardware-reduced platform it
/// replaces the GPE blocks. Its interrupt makes Linux run `_EVT`, which reads
/// the status byte and dispatches:
///
/// ```text
/// OperationRegion (GDST, SystemIO, 0x608, 1)
/// Field (GDST, ByteAcc, NoLock, WriteAsZeros) { GDAT, 8 }
/// Method (_EVT, 1, Serialized) {
///     If (And (GDAT, 1)) {
///         GDAT = 1                       // write-1-to-clear acknowledge
///         Notify (\_SB.PWRB, 0x80)
///     }
/// }
/// ```
/// Acknowledging before notifying means a second press that arrives while the
/// first is handled sets the bit and raises a fresh edge, and is not lost.
fn ged(out: &mut Vec<u8>) {
    let hid = Name::new(Path::new("_HID"), &"ACPI0013");
    let uid = Name::new(Path::new("_UID"), &0u8);
    let irq = edge_interrupt(GED_GSI);
    let crs = Name::new(Path::new("_CRS"), &ResourceTemplate::new(vec![&irq]));
    let region = OpRegion::new(
        Path::new("GDST"),
        OpRegionSpace::SystemIO,
        &GED_STATUS_PORT,
        &1u8,
    );
    let field = aml::Field::new(
        Path::new("GDST"),
        FieldAccessType::Byte,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![FieldEntry::Named(*b"GDAT", 8)],
    );
    let gdat = Path::new("GDAT");
    let bit = GED_EVENT_POWER_BUTTON;
    let pressed = aml::And::new(&aml::ZERO, &gdat, &bit);
    let ack = aml::Store::new(&gdat, &bit);
    let button = Path::new(POWER_BUTTON_PATH);
    let notify = aml::Notify::new(&button, &NOTIFY_BUTTON_PRESSED);
    let on_press = aml::If::new(&pressed, vec![&ack, &notify]);
    let evt = Method::new(Path::new("_EVT"), 1, true, vec![&on_press]);
    serialize(
        &Device::new(
            Path::new("GED0"),
            vec![&hid, &uid, &crs, &region, &field, &evt],
        ),
        out,
    );
}

/// A virtio-mmio transport (`LNRO0005`, the ID Linux's virtio_mmio driver
/// matches), named `Vnnn` with `nnn` the hexadecimal index.
fn virtio_mmio(index: usize, dev: &VirtioMmioDevice, out: &mut Vec<u8>) {
    let name = format!("V{index:03X}");
    let hid = Name::new(Path::new("_HID"), &"LNRO0005");
    let uid = Name::new(Path::new("_UID"), &(index as u32));
    // validate() checked the window lies below 4 GiB, so both fit 32 bits.
    let mem = Memory32Fixed::new(true, dev.base as u32, dev.size as u32);
    let irq = edge_interrupt(dev.gsi);
    let crs = Name::new(Path::new("_CRS"), &ResourceTemplate::new(vec![&mem, &irq]));
    serialize(&Device::new(Path::new(&name), vec![&hid, &uid, &crs]), out);
}

/// Builds the DSDT for an already validated `platform`.
pub fn build(platform: &AcpiPlatform) -> Sdt {
    let oem = &platform.oem;
    let mut dsdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        oem.oem_id,
        oem.oem_table_id,
        oem.oem_revision,
    );
    let mut body = Vec::new();
    s5(&mut body);

    let mut sb = Vec::new();
    if platform.serial {
        com1(&mut sb);
    }
    power_button(&mut sb);
    ged(&mut sb);
    for (index, dev) in platform.virtio_mmio.iter().enumerate() {
        virtio_mmio(index, dev, &mut sb);
    }
    body.extend_from_slice(&Scope::raw(Path::new("\\_SB_"), sb));

    dsdt.append_slice(&body);
    dsdt
}
