//! ironvirt device models.
//!
//! Devices are plain structs behind the [`bus::BusDevice`] trait; they know nothing of KVM. Interrupts are
//! raised through [`vm_superio::Trigger`] implementations (an irqfd `EventFd` in the VMM, a counter in tests),
//! and requests a guest makes of the whole machine (power off, reset) go through a [`GuestRequestSink`].

pub mod block;
pub mod bus;
pub mod legacy;
pub mod net;
pub mod virtio;

use std::sync::Arc;

/// Something a guest asked of the machine as a whole through a platform device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRequest {
    /// ACPI S5 (soft off).
    PowerOff,
    /// A platform reset (i8042 pulse, ACPI reset register).
    Reset,
}

/// Where platform devices deliver [`GuestRequest`]s; the VMM stops the vCPUs when it is called.
pub type GuestRequestSink = Arc<dyn Fn(GuestRequest) + Send + Sync>;

/// An interrupt line backed by an `EventFd` (an irqfd registered with KVM by the VMM).
#[derive(Debug)]
pub struct EventFdTrigger(pub vmm_sys_util::eventfd::EventFd);

impl vm_superio::Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

impl EventFdTrigger {
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(EventFdTrigger(self.0.try_clone()?))
    }
}
