//! Virtio: a transport-independent device trait, the virtio-mmio transport, and devices.
//!
//! A device's queues are driven from the VMM's event loop: the transport hands the device its queues and
//! notification eventfds at activation (the VMM registers those eventfds as KVM ioeventfds on the queue-notify
//! register, so a guest kick costs no exit to userspace), and the device raises its interrupt through a
//! [`VirtioInterrupt`]. Everything a guest puts in a queue is untrusted: a malformed chain fails that request,
//! or puts the device in NEEDS_RESET, and never panics or touches memory outside the guest.

pub mod balloon;
pub mod block;
mod chain_buffers;
pub mod mmio;
pub mod net;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// Feature bits common to all devices.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// Interrupt status bits (virtio-mmio InterruptStatus).
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG_CHANGE: u32 = 2;

/// How a device signals the guest.
pub trait VirtioInterrupt: Send + Sync {
    /// Latches `reason` (INT_USED_RING / INT_CONFIG_CHANGE) and raises the interrupt line.
    fn trigger(&self, reason: u32);
    /// The device met something it cannot recover from (a chain it cannot answer): report
    /// DEVICE_NEEDS_RESET in the status register and send a configuration-change interrupt (§2.1.2).
    fn signal_needs_reset(&self);
}

/// The interrupt of a virtio-mmio device: a status word the transport exposes, and an irqfd.
pub struct MmioInterrupt {
    pub status: AtomicU32,
    pub needs_reset: AtomicBool,
    pub irq: EventFd,
}

impl VirtioInterrupt for MmioInterrupt {
    fn trigger(&self, reason: u32) {
        self.status.fetch_or(reason, Ordering::SeqCst);
        if let Err(e) = self.irq.write(1) {
            log::warn!("virtio: cannot raise interrupt: {e}");
        }
    }

    fn signal_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        self.trigger(INT_CONFIG_CHANGE);
    }
}

/// A queue handed to a device at activation, with the eventfd the guest's kicks arrive on.
pub struct ActiveQueue {
    pub queue: Queue,
    pub notify: EventFd,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("virtio device expects {expected} queues, the driver set up {got}")]
    QueueCount { expected: usize, got: usize },
    #[error("virtio queue {0} is not valid (addresses outside guest memory, or a bad size)")]
    InvalidQueue(usize),
    #[error("virtio device activation failed: {0}")]
    Other(String),
}

/// What a transport needs from a device.
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 = block, 1 = net, ...).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Features offered to the driver.
    fn features(&self) -> u64;
    /// Device configuration space; reads past its end return zeroes.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts processing: the driver accepted `acked_features` and set up `queues`.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
        acked_features: u64,
    ) -> Result<(), ActivateError>;
    /// Stops processing; the transport owns the queues' notification eventfds and keeps them.
    fn reset(&mut self);
}

/// Reads `data.len()` bytes of a little-endian config space held as bytes.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let end = (start + data.len()).min(config.len());
    data[..end - start].copy_from_slice(&config[start..end]);
}

/// What a device's event-loop side does with the eventfds of its active queues: watch them after each
/// activation (dropping those of an earlier activation), and forget eventfds left over from before a reset.
/// Devices run on the event loop, so activation (on a vCPU thread) only signals; this does the epoll work.
#[derive(Debug, Default)]
pub struct QueueWatch {
    watched: Vec<std::os::fd::RawFd>,
    /// Notification eventfds of an earlier activation, kept open until the event loop has unwatched them:
    /// closed first, their numbers could be reused by the next activation's eventfds while the event
    /// manager still has the old registrations under those numbers (a reboot hit exactly that).
    retired: Vec<EventFd>,
}

/// How an event on a device's descriptor is to be handled.
pub enum QueueEvent {
    /// The guest kicked queue `n` (its eventfd has been read).
    Kick(usize),
    /// A descriptor from before a reset, now unwatched.
    Stale,
}

impl QueueWatch {
    /// Takes the queues of an activation that is ending (device reset, or a new activation replacing it);
    /// their eventfds close once the event loop has unwatched them.
    pub fn retire(&mut self, queues: Vec<ActiveQueue>) {
        self.retired.extend(queues.into_iter().map(|q| q.notify));
    }

    /// Watches exactly `queues`' eventfds.
    pub fn rewatch(
        &mut self,
        ops: &mut event_manager::EventOps,
        queues: &[ActiveQueue],
        device: &str,
    ) {
        use event_manager::{EventSet, Events};
        use std::os::fd::AsRawFd;
        for old in self.watched.drain(..) {
            let _ = ops.remove(Events::empty_raw(old));
        }
        self.retired.clear();
        for q in queues {
            match ops.add(Events::new(&q.notify, EventSet::IN)) {
                Ok(()) => self.watched.push(q.notify.as_raw_fd()),
                Err(e) => log::error!("{device}: cannot watch a queue: {e}"),
            }
        }
    }

    /// Classifies an event on `fd`, which is not one of the device's own eventfds.
    pub fn event(
        &mut self,
        ops: &mut event_manager::EventOps,
        queues: Option<&[ActiveQueue]>,
        fd: std::os::fd::RawFd,
    ) -> QueueEvent {
        use std::os::fd::AsRawFd;
        let kicked = queues.and_then(|qs| qs.iter().position(|q| q.notify.as_raw_fd() == fd));
        match (kicked, queues) {
            (Some(i), Some(qs)) => {
                let _ = qs[i].notify.read();
                QueueEvent::Kick(i)
            }
            _ => {
                let _ = ops.remove(event_manager::Events::empty_raw(fd));
                self.watched.retain(|&w| w != fd);
                QueueEvent::Stale
            }
        }
    }
}
