//! The hardware-reduced ACPI sleep control/status and reset registers (their ports are described to the guest
//! in the FADT by the firmware crate).

use crate::bus::BusDevice;
use crate::{GuestRequest, GuestRequestSink};

/// Sleep control register offset within the device (FADT `SLEEP_CONTROL_REG`).
pub const SLEEP_CONTROL: u64 = 0;
/// Sleep status register offset (FADT `SLEEP_STATUS_REG`).
pub const SLEEP_STATUS: u64 = 1;
/// Reset register offset (FADT `RESET_REG`).
pub const RESET: u64 = 2;
/// The ports the device spans.
pub const ACPI_PM_LEN: u64 = 3;

/// ACPI 6.x §4.8.3.7: SLP_EN is bit 5 and SLP_TYPx bits 2..4 of the sleep control register.
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;

pub struct AcpiPmDevice {
    s5_sleep_type: u8,
    reset_value: u8,
    sink: GuestRequestSink,
}

impl AcpiPmDevice {
    /// `s5_sleep_type` must match the `\_S5_` package in the DSDT; `reset_value` the FADT's RESET_VALUE.
    pub fn new(s5_sleep_type: u8, reset_value: u8, sink: GuestRequestSink) -> Self {
        AcpiPmDevice {
            s5_sleep_type,
            reset_value,
            sink,
        }
    }
}

impl BusDevice for AcpiPmDevice {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Nothing ever sleeps and resumes, so no wake status is ever pending.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            SLEEP_CONTROL if value & SLP_EN != 0 => {
                let sleep_type = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
                if sleep_type == self.s5_sleep_type {
                    (self.sink)(GuestRequest::PowerOff);
                } else {
                    // S1-S4 are not offered in the DSDT; a guest asking anyway keeps running.
                    log::warn!("guest requested unsupported ACPI sleep type {sleep_type}; ignored");
                }
            }
            RESET if value == self.reset_value => (self.sink)(GuestRequest::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn device() -> (AcpiPmDevice, Arc<Mutex<Vec<GuestRequest>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            AcpiPmDevice::new(5, 1, Arc::new(move |r| s.lock().unwrap().push(r))),
            seen,
        )
    }

    #[test]
    fn s5_with_slp_en_powers_off() {
        let (mut dev, seen) = device();
        dev.write(SLEEP_CONTROL, &[5 << 2]); // no SLP_EN
        dev.write(SLEEP_CONTROL, &[(3 << 2) | SLP_EN]); // S3: not offered
        assert!(seen.lock().unwrap().is_empty());
        dev.write(SLEEP_CONTROL, &[(5 << 2) | SLP_EN]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::PowerOff]);
    }

    #[test]
    fn reset_register_resets_only_with_its_value() {
        let (mut dev, seen) = device();
        dev.write(RESET, &[2]);
        dev.write(RESET, &[1]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Reset]);
        let mut status = [0xff];
        dev.read(SLEEP_STATUS, &mut status);
        assert_eq!(status, [0]);
    }
}
