//! Legacy x86 platform devices: COM1, the i8042 reset line, the CMOS RTC, ACPI power management registers,
//! the ACPI generic event device (power button), and the boot-timer port.

pub mod acpi_pm;
pub mod boot_timer;
pub mod cmos;
pub mod ged;
pub mod i8042;
pub mod serial;

pub use acpi_pm::AcpiPmDevice;
pub use boot_timer::BootTimer;
pub use cmos::Cmos;
pub use ged::Ged;
pub use i8042::I8042;
pub use serial::SerialDevice;

use crate::{GuestRequest, GuestRequestSink};

/// A [`vm_superio::Trigger`] that delivers a fixed [`GuestRequest`] to the VMM.
pub struct RequestTrigger {
    request: GuestRequest,
    sink: GuestRequestSink,
}

impl RequestTrigger {
    pub fn new(request: GuestRequest, sink: GuestRequestSink) -> Self {
        RequestTrigger { request, sink }
    }
}

impl vm_superio::Trigger for RequestTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        (self.sink)(self.request);
        Ok(())
    }
}
