//! The virtio-mmio transport (virtio 1.2 §4.2, version 2 register layout).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{
    status, ActiveQueue, MmioInterrupt, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
use crate::bus::{lock, BusDevice};

pub const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
pub const MMIO_VERSION: u32 = 2;
/// Vendor ID reported to the guest ("IRVT").
pub const VENDOR_ID: u32 = 0x5456_5249;
/// Offset of the QueueNotify register, where the VMM places its ioeventfds.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;
/// Size of one device's register window.
pub const MMIO_WINDOW: u64 = 0x1000;

mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<MmioInterrupt>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    device_status: u32,
    features_select: u32,
    driver_features_select: u32,
    acked_features: u64,
    queue_select: u32,
    config_generation: u32,
    activated: bool,
}

impl MmioTransport {
    /// `irq` is the eventfd the VMM registered as this device's irqfd.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        irq: EventFd,
    ) -> std::io::Result<Self> {
        let max_sizes = lock(&device).queue_max_sizes();
        let mut queues = Vec::with_capacity(max_sizes.len());
        let mut queue_evts = Vec::with_capacity(max_sizes.len());
        for max in max_sizes {
            let q = Queue::new(max)
                .map_err(|e| std::io::Error::other(format!("virtio queue of size {max}: {e:?}")))?;
            queues.push(q);
            queue_evts.push(EventFd::new(EFD_NONBLOCK)?);
        }
        Ok(MmioTransport {
            device,
            mem,
            interrupt: Arc::new(MmioInterrupt {
                status: AtomicU32::new(0),
                needs_reset: AtomicBool::new(false),
                irq,
            }),
            queues,
            queue_evts,
            device_status: 0,
            features_select: 0,
            driver_features_select: 0,
            acked_features: 0,
            queue_select: 0,
            config_generation: 0,
            activated: false,
        })
    }

    /// The eventfd of each queue and the value the guest writes to QueueNotify for it, for KVM ioeventfds.
    pub fn queue_notifiers(&self) -> std::io::Result<Vec<(EventFd, u32)>> {
        self.queue_evts
            .iter()
            .enumerate()
            .map(|(i, e)| Ok((e.try_clone()?, i as u32)))
            .collect()
    }

    pub fn device_status(&self) -> u32 {
        let needs_reset = self.interrupt.needs_reset.load(Ordering::SeqCst);
        self.device_status
            | if needs_reset {
                status::DEVICE_NEEDS_RESET
            } else {
                0
            }
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        if self.device_status & status::DRIVER_OK != 0 {
            // Queue configuration is frozen once the driver is running.
            return None;
        }
        self.queues.get_mut(self.queue_select as usize)
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.device_status;
        // A driver may only add bits (other than through reset).
        if value & old != old {
            log::warn!("virtio-mmio: driver cleared status bits ({old:#x} -> {value:#x}); ignored");
            return;
        }
        let mut new = value;
        if new & status::FEATURES_OK != 0
            && old & status::FEATURES_OK == 0
            && self.acked_features & VIRTIO_F_VERSION_1 == 0
        {
            // We only speak virtio 1.x: refuse the feature set, as the spec lets a device do.
            new &= !status::FEATURES_OK;
        }
        self.device_status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            self.activate();
        }
    }

    fn activate(&mut self) {
        if self.device_status & status::FEATURES_OK == 0 {
            self.fail("driver set DRIVER_OK without FEATURES_OK");
            return;
        }
        let mut active = Vec::new();
        for (i, (q, evt)) in self.queues.iter().zip(&self.queue_evts).enumerate() {
            if !q.ready() {
                continue;
            }
            if !q.is_valid(&self.mem) {
                self.fail(&format!("queue {i} is not valid"));
                return;
            }
            let notify = match evt.try_clone() {
                Ok(e) => e,
                Err(e) => {
                    self.fail(&format!("cannot clone queue eventfd: {e}"));
                    return;
                }
            };
            // The device gets its own copy of the queue; the transport keeps the driver's configuration.
            let queue = match Queue::try_from(q.state()) {
                Ok(mut queue) => {
                    queue.set_event_idx(self.acked_features & VIRTIO_RING_F_EVENT_IDX != 0);
                    queue
                }
                Err(e) => {
                    self.fail(&format!("queue {i}: {e:?}"));
                    return;
                }
            };
            active.push(ActiveQueue { queue, notify });
        }
        let interrupt: Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        let result =
            lock(&self.device).activate(self.mem.clone(), interrupt, active, self.acked_features);
        match result {
            Ok(()) => self.activated = true,
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// The device cannot go on with what the driver set up: tell the driver to reset it.
    fn fail(&mut self, why: &str) {
        log::warn!("virtio-mmio: device needs reset: {why}");
        self.interrupt.signal_needs_reset();
    }

    fn reset(&mut self) {
        if self.activated {
            lock(&self.device).reset();
            self.activated = false;
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.device_status = 0;
        self.features_select = 0;
        self.driver_features_select = 0;
        self.acked_features = 0;
        self.queue_select = 0;
        self.interrupt.status.store(0, Ordering::SeqCst);
        self.interrupt.needs_reset.store(false, Ordering::SeqCst);
    }

    fn read32(&mut self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC => MMIO_MAGIC,
            reg::VERSION => MMIO_VERSION,
            reg::DEVICE_ID => lock(&self.device).device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => {
                let features = lock(&self.device).features() | VIRTIO_F_VERSION_1;
                match self.features_select {
                    0 => features as u32,
                    1 => (features >> 32) as u32,
                    _ => 0,
                }
            }
            reg::QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_select as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self
                .queues
                .get(self.queue_select as usize)
                .map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst),
            reg::STATUS => {
                let needs_reset = self.interrupt.needs_reset.load(Ordering::SeqCst);
                self.device_status
                    | if needs_reset {
                        status::DEVICE_NEEDS_RESET
                    } else {
                        0
                    }
            }
            reg::CONFIG_GENERATION => self.config_generation,
            _ => {
                log::debug!("virtio-mmio: read of write-only or unknown register {offset:#x}");
                0
            }
        }
    }

    fn write32(&mut self, offset: u64, v: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.features_select = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_select = v,
            reg::DRIVER_FEATURES => {
                if self.device_status & status::FEATURES_OK != 0 {
                    return;
                }
                let offered = lock(&self.device).features() | VIRTIO_F_VERSION_1;
                let shift = match self.driver_features_select {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = 0xffff_ffffu64 << shift;
                // Features the device never offered cannot be accepted.
                self.acked_features =
                    (self.acked_features & !mask) | ((u64::from(v) << shift) & offered & mask);
            }
            reg::QUEUE_SEL => self.queue_select = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(v as u16);
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            reg::QUEUE_NOTIFY => {
                // Only reached when no ioeventfd is registered for this address (tests, or KVM refused it).
                if let Some(evt) = self.queue_evts.get(v as usize) {
                    let _ = evt.write(1);
                }
            }
            reg::INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!v, Ordering::SeqCst);
            }
            reg::STATUS => self.set_status(v),
            reg::QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            reg::QUEUE_DESC_HIGH => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            reg::QUEUE_DRIVER_LOW => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            reg::QUEUE_DRIVER_HIGH => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            reg::QUEUE_DEVICE_LOW => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            reg::QUEUE_DEVICE_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            _ => log::debug!("virtio-mmio: write of read-only or unknown register {offset:#x}"),
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue() {
            f(q);
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            lock(&self.device).read_config(offset - reg::CONFIG, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            // The register block only supports aligned 32-bit accesses (virtio 1.2 §4.2.2.2).
            data.fill(0);
            return;
        }
        let v = self.read32(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            lock(&self.device).write_config(offset - reg::CONFIG, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if !offset.is_multiple_of(4) {
            return;
        }
        self.write32(offset, u32::from_le_bytes(bytes));
    }
}
