//! The i8042 keyboard controller, reduced to what a guest uses it for here: pulsing the CPU reset line.

use crate::bus::BusDevice;
use crate::legacy::RequestTrigger;
use crate::{GuestRequest, GuestRequestSink};

/// First port of the controller (data); the command/status register is at `I8042_BASE + 4`.
pub const I8042_BASE: u16 = 0x60;
pub const I8042_LEN: u16 = 5;

pub struct I8042 {
    inner: vm_superio::I8042Device<RequestTrigger>,
}

impl I8042 {
    pub fn new(sink: GuestRequestSink) -> Self {
        I8042 {
            inner: vm_superio::I8042Device::new(RequestTrigger::new(GuestRequest::Reset, sink)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(first) = data.first_mut() {
            *first = self.inner.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(value), Ok(offset)) = (data.first(), u8::try_from(offset)) {
            // The trigger is infallible.
            let _ = self.inner.write(offset, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reset_command_requests_reset() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut dev = I8042::new(Arc::new(move |r| s.lock().unwrap().push(r)));
        dev.write(4, &[0x00]);
        dev.write(0, &[0xfe]);
        assert!(seen.lock().unwrap().is_empty());
        dev.write(4, &[0xfe]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Reset]);
    }
}
