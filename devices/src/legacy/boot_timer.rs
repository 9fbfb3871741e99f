//! The boot-timer port: a guest writes [`BOOT_COMPLETE_MAGIC`] to [`BOOT_TIMER_PORT`] when it has booted (for
//! instance from its init: `printf '\173' | dd of=/dev/port bs=1 seek=1008 count=1`), and the VMM logs how long
//! that took since the process started. Benchmarks read that line.
//!
//! Port and value are Firecracker's, so guest images built for its boot-time tests work unchanged.

use std::time::Instant;

use crate::bus::BusDevice;

pub const BOOT_TIMER_PORT: u16 = 0x3f0;
pub const BOOT_COMPLETE_MAGIC: u8 = 123;

pub struct BootTimer {
    process_start: Instant,
    report: Box<dyn FnMut(std::time::Duration) + Send>,
}

impl BootTimer {
    /// `report` receives the time from `process_start` to the guest's write.
    pub fn new(process_start: Instant, report: Box<dyn FnMut(std::time::Duration) + Send>) -> Self {
        BootTimer {
            process_start,
            report,
        }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&BOOT_COMPLETE_MAGIC) {
            (self.report)(self.process_start.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reports_only_the_magic_value() {
        let seen = Arc::new(Mutex::new(0));
        let s = seen.clone();
        let mut t = BootTimer::new(Instant::now(), Box::new(move |_| *s.lock().unwrap() += 1));
        t.write(0, &[1]);
        t.write(0, &[BOOT_COMPLETE_MAGIC]);
        assert_eq!(*seen.lock().unwrap(), 1);
    }
}
