//! COM1: a 16550A UART (vm-superio's model) on a port range, with interrupts through an irqfd and guest input
//! fed by the VMM.

use std::io::Write;

use vm_superio::serial::SerialEvents;
use vm_superio::Serial;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::EventFdTrigger;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_LEN: u16 = 8;
pub const COM1_GSI: u32 = 4;

/// Tells the input pump that the guest has drained the receive FIFO, so it can send more.
pub struct InputDrained(pub EventFd);

impl SerialEvents for InputDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // Only a counter overflow can fail; the pump wakes on the next one anyway.
        let _ = self.0.write(1);
    }
}

pub struct SerialDevice {
    uart: Serial<EventFdTrigger, InputDrained, Box<dyn Write + Send>>,
}

impl SerialDevice {
    /// `irq` is raised for every interrupt the UART asserts; `drained` is written when the receive FIFO empties.
    pub fn new(irq: EventFdTrigger, drained: EventFd, out: Box<dyn Write + Send>) -> Self {
        SerialDevice {
            uart: Serial::with_events(irq, InputDrained(drained), out),
        }
    }

    /// Room left in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues guest input; returns how many bytes fit. Input the guest has masked still queues, as on hardware.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.uart.fifo_capacity() == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: could not queue guest input: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(offset)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(offset)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(offset, value) {
                // Output that cannot be written (a closed console) must not stop the guest.
                log::debug!("serial: write to register {offset} failed: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_input_and_drain_signal() {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let drained = EventFd::new(EFD_NONBLOCK).unwrap();
        let out = Sink::default();
        let mut dev = SerialDevice::new(
            EventFdTrigger(irq.try_clone().unwrap()),
            drained.try_clone().unwrap(),
            Box::new(out.clone()),
        );
        dev.write(0, b"h");
        dev.write(0, b"i");
        assert_eq!(&*out.0.lock().unwrap(), b"hi");

        dev.write(1, &[0x01]); // IER: received-data interrupt
        assert_eq!(dev.enqueue_input(b"ok"), 2);
        assert!(irq.read().unwrap() >= 1);
        let mut b = [0u8];
        dev.read(0, &mut b);
        assert_eq!(b, *b"o");
        dev.read(0, &mut b);
        assert_eq!(b, *b"k");
        assert_eq!(drained.read().unwrap(), 1);
    }

    #[test]
    fn full_fifo_takes_nothing() {
        let mut dev = SerialDevice::new(
            EventFdTrigger(EventFd::new(EFD_NONBLOCK).unwrap()),
            EventFd::new(EFD_NONBLOCK).unwrap(),
            Box::new(std::io::sink()),
        );
        let big = vec![b'x'; 1000];
        let n = dev.enqueue_input(&big);
        assert!(n > 0 && n < big.len());
        assert_eq!(dev.input_capacity(), 0);
        assert_eq!(dev.enqueue_input(b"y"), 0);
    }
}
