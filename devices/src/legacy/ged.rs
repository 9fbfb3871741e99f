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

    /// A platform reset clears pending events: a press the old guest never acknowledged is not replayed to
    /// the next boot.
    pub fn reset(&mut self) {
        self.status = 0;
    }

    /// Latches a power-button event and interrupts the guest.
    pub fn press_power_button(&mut self) -> std::io::Result<()> {
        self.status |= GED_POWER_BUTTON;
        self.irq.trigger()
    }
}

impl BusDevice for Ged {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = self.status;
        }
    }

    /// Write-1-to-clear, as the DSDT's `_EVT` acknowledges before notifying, so a press that lands between
    /// the two is not lost.
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&ack) = data.first() {
            self.status &= !ack;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn press_latches_status_until_acknowledged() {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut ged = Ged::new(EventFdTrigger(irq.try_clone().unwrap()));
        ged.press_power_button().unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        let mut v = [0u8];
        ged.read(0, &mut v);
        assert_eq!(v, [GED_POWER_BUTTON]);
        ged.read(0, &mut v);
        assert_eq!(v, [GED_POWER_BUTTON], "reading does not acknowledge");
        ged.write(0, &[GED_POWER_BUTTON]);
        ged.read(0, &mut v);
        assert_eq!(v, [0]);
    }
}
