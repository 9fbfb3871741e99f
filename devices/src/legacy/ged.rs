//! The ACPI generic event device's status register: how the VMM presses the guest's power button.
//!
//! The DSDT's GED `_EVT` method reads this register when its interrupt fires and notifies the power button
//! device when bit 0 is set, so the guest's ACPI button driver starts an orderly shutdown.

use vm_superio::Trigger;

use crate::bus::BusDevice;
use crate::EventFdTrigger;

/// Status bit: the power button was pressed.
pub const GED_POWER_BUTTON: u8 = 1 << 0;

pub struct Ged {
    status: u8,
    irq: EventFdTrigger,
}

impl Ged {
    pub fn new(irq: EventFdTrigger) -> Self {
        Ged { status: 0, irq }
    }

    /// Latches a power-button event and interrupts the guest.
    pub fn press_power_button(&mut self) -> std::io::Result<()> {
        self.status |= GED_POWER_BUTTON;
        self.irq.trigger()
    }
}

impl BusDevice for Ged {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Reading acknowledges: each press is delivered once.
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = std::mem::take(&mut self.status);
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn press_latches_status_and_interrupts_once() {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut ged = Ged::new(EventFdTrigger(irq.try_clone().unwrap()));
        ged.press_power_button().unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        let mut v = [0u8];
        ged.read(0, &mut v);
        assert_eq!(v, [GED_POWER_BUTTON]);
        ged.read(0, &mut v);
        assert_eq!(v, [0]);
    }
}
