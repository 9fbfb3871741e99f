//! virtio-balloon (virtio 1.2 §5.5): the host asks the guest to give memory back (`setmem --live`) and reads
//! its memory statistics (`dommemstat`).
//!
//! Pages the guest puts in the inflate queue are returned to the host with MADV_DONTNEED; deflated pages need
//! nothing, since touching them faults fresh zeroed memory back in. Every PFN comes from the guest and is
//! checked against guest memory before anything is released.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{QueueT, Reader};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{
    read_config_bytes, ActivateError, ActiveQueue, QueueEvent, QueueWatch, VirtioDevice,
    VirtioInterrupt, INT_CONFIG_CHANGE, INT_USED_RING,
};
use crate::bus::lock;

pub const VIRTIO_ID_BALLOON: u32 = 5;
/// The balloon always counts in 4 KiB pages, whatever the guest's page size.
pub const PAGE_SIZE: u64 = 4096;
const QUEUE_SIZE: u16 = 256;
const INFLATE: usize = 0;
const DEFLATE: usize = 1;
const STATS: usize = 2;

pub const F_MUST_TELL_HOST: u64 = 1 << 0;
pub const F_STATS_VQ: u64 = 1 << 1;
pub const F_DEFLATE_ON_OOM: u64 = 1 << 2;

/// Statistics tags (§5.5.6.3).
pub mod tag {
    pub const SWAP_IN: u16 = 0;
    pub const SWAP_OUT: u16 = 1;
    pub const MAJFLT: u16 = 2;
    pub const MINFLT: u16 = 3;
    pub const MEMFREE: u16 = 4;
    pub const MEMTOT: u16 = 5;
    pub const AVAIL: u16 = 6;
    pub const CACHES: u16 = 7;
    pub const HTLB_PGALLOC: u16 = 8;
    pub const HTLB_PGFAIL: u16 = 9;
}

/// What the guest last reported, in bytes for memory figures (as libvirt's dommemstat shows them in KiB).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BalloonStats {
    /// (tag, value) pairs as the guest sent them.
    pub values: Vec<(u16, u64)>,
    /// Seconds since the Unix epoch when they arrived.
    pub last_update: u64,
}

impl BalloonStats {
    pub fn get(&self, tag: u16) -> Option<u64> {
        self.values.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }
}

/// State shared with the VMM's control side.
#[derive(Debug, Default)]
pub struct BalloonShared {
    /// Pages the host wants the guest to give up.
    pub target_pages: u32,
    /// Pages the guest says it has given up (config `actual`).
    pub actual_pages: u32,
    pub stats: BalloonStats,
}

struct Active {
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    queues: Vec<ActiveQueue>,
    /// The head of the stats buffer the guest handed us, kept until we want fresh figures.
    stats_head: Option<u16>,
}

pub struct Balloon {
    shared: Arc<Mutex<BalloonShared>>,
    features: u64,
    active: Option<Active>,
    activate_evt: EventFd,
    /// Written by the control side to ask for fresh statistics or to announce a new target.
    request_evt: EventFd,
    /// Asks for statistics every `<stats period>` seconds.
    stats_timer: Option<vmm_sys_util::timerfd::TimerFd>,
    watch: QueueWatch,
}

impl Balloon {
    /// `deflate_on_oom` mirrors libvirt's `<memballoon><driver deflate_on_oom='on'>`; `stats_period` its
    /// `<stats period=…>` (seconds; 0 or absent: statistics only when asked).
    pub fn new(
        stats: bool,
        deflate_on_oom: bool,
        stats_period: Option<u32>,
    ) -> std::io::Result<Self> {
        let mut features = F_MUST_TELL_HOST;
        if stats {
            features |= F_STATS_VQ;
        }
        if deflate_on_oom {
            features |= F_DEFLATE_ON_OOM;
        }
        Ok(Balloon {
            shared: Arc::new(Mutex::new(BalloonShared::default())),
            features,
            active: None,
            activate_evt: EventFd::new(EFD_NONBLOCK)?,
            request_evt: EventFd::new(EFD_NONBLOCK)?,
            stats_timer: match stats_period.filter(|p| *p > 0 && stats) {
                Some(secs) => {
                    let mut t = vmm_sys_util::timerfd::TimerFd::new()?;
                    let period = std::time::Duration::from_secs(u64::from(secs));
                    t.reset(period, Some(period))?;
                    Some(t)
                }
                None => None,
            },
            watch: QueueWatch::default(),
        })
    }

    pub fn shared(&self) -> Arc<Mutex<BalloonShared>> {
        self.shared.clone()
    }

    /// An eventfd that makes the event loop tell the guest about a new target and request statistics.
    pub fn request_evt(&self) -> std::io::Result<EventFd> {
        self.request_evt.try_clone()
    }

    fn release_pages(mem: &GuestMemoryMmap, pfns: &[u32]) {
        for &pfn in pfns {
            let addr = GuestAddress(u64::from(pfn) * PAGE_SIZE);
            let Some(region) = mem.find_region(addr) else {
                log::debug!("virtio-balloon: guest gave page {pfn:#x} outside its memory; ignored");
                continue;
            };
            let Some(offset) = addr.checked_offset_from(region.start_addr()) else {
                continue;
            };
            if offset + PAGE_SIZE > region.len() {
                continue;
            }
            let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(offset)) else {
                continue;
            };
            // SAFETY: `host` points at one page inside a mapping we own for the VM's lifetime; DONTNEED only
            // drops its contents (the guest gave the page up), it does not unmap it.
            let r = unsafe { libc::madvise(host.cast(), PAGE_SIZE as usize, libc::MADV_DONTNEED) };
            if r != 0 {
                log::debug!("virtio-balloon: madvise failed for page {pfn:#x}");
            }
        }
    }

    fn process_page_queue(&mut self, index: usize) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let mut used = false;
        while let Some(chain) = active.queues[index].queue.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            if let Ok(mut reader) = Reader::<()>::new(&mem, chain) {
                let count = reader.available_bytes() / 4;
                let mut pfns = Vec::with_capacity(count.min(QUEUE_SIZE as usize * 256));
                for _ in 0..count {
                    match reader.read_obj::<u32>() {
                        Ok(pfn) => pfns.push(pfn),
                        Err(_) => break,
                    }
                }
                if index == INFLATE {
                    Self::release_pages(&mem, &pfns);
                }
            } else {
                log::debug!("virtio-balloon: a page list outside guest memory; ignored");
            }
            if active.queues[index].queue.add_used(&mem, head, 0).is_err() {
                active.interrupt.signal_needs_reset();
                return;
            }
            used = true;
        }
        if used {
            active.interrupt.trigger(INT_USED_RING);
        }
    }

    fn process_stats_queue(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        while let Some(chain) = active.queues[STATS].queue.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            if let Ok(mut reader) = Reader::<()>::new(&mem, chain) {
                let mut values = Vec::new();
                // Each entry is a packed { le16 tag; le64 val; } (10 bytes).
                while reader.available_bytes() >= 10 {
                    let (Ok(t), Ok(v)) = (reader.read_obj::<u16>(), reader.read_obj::<u64>())
                    else {
                        break;
                    };
                    values.push((t, v));
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                lock(&self.shared).stats = BalloonStats {
                    values,
                    last_update: now,
                };
            }
            // Hold the buffer: giving it back is how the host asks for the next update.
            if let Some(old) = active.stats_head.replace(head) {
                let _ = active.queues[STATS].queue.add_used(&mem, old, 0);
            }
        }
    }

    /// Returns the held stats buffer so the guest refills it, and (when `announce` says so) tells it that the
    /// target may have changed.
    fn handle_request(&mut self, announce: bool) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if let Some(head) = active.stats_head.take() {
            if active.queues.len() > STATS
                && active.queues[STATS]
                    .queue
                    .add_used(&active.mem, head, 0)
                    .is_ok()
            {
                active.interrupt.trigger(INT_USED_RING);
            }
        }
        if announce {
            active.interrupt.trigger(INT_CONFIG_CHANGE);
        }
    }

    fn config_space(&self) -> [u8; 8] {
        let s = lock(&self.shared);
        let mut c = [0u8; 8];
        c[..4].copy_from_slice(&s.target_pages.to_le_bytes());
        c[4..].copy_from_slice(&s.actual_pages.to_le_bytes());
        c
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        let n = if self.features & F_STATS_VQ != 0 {
            3
        } else {
            2
        };
        vec![QUEUE_SIZE; n]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `actual` (bytes 4..8) is writable by the driver.
        if offset == 4 && data.len() == 4 {
            let mut b = [0u8; 4];
            b.copy_from_slice(data);
            lock(&self.shared).actual_pages = u32::from_le_bytes(b);
        }
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
        _acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() < 2 {
            return Err(ActivateError::QueueCount {
                expected: 2,
                got: queues.len(),
            });
        }
        if let Some(old) = self.active.take() {
            self.watch.retire(old.queues);
        }
        self.active = Some(Active {
            mem,
            interrupt,
            queues,
            stats_head: None,
        });
        self.activate_evt
            .write(1)
            .map_err(|e| ActivateError::Other(e.to_string()))
    }

    fn reset(&mut self) {
        lock(&self.shared).actual_pages = 0;
        if let Some(old) = self.active.take() {
            self.watch.retire(old.queues);
        }
    }
}

impl MutEventSubscriber for Balloon {
    fn init(&mut self, ops: &mut EventOps) {
        for evt in [&self.activate_evt, &self.request_evt] {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("virtio-balloon: cannot watch an event: {e}");
            }
        }
        if let Some(t) = &self.stats_timer {
            if let Err(e) = ops.add(Events::new(t, EventSet::IN)) {
                log::error!("virtio-balloon: cannot watch the statistics timer: {e}");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.activate_evt.as_raw_fd() {
            let _ = self.activate_evt.read();
            let queues = self.active.as_ref().map_or(&[][..], |a| &a.queues[..]);
            self.watch.rewatch(ops, queues, "virtio-balloon");
            return;
        }
        if fd == self.request_evt.as_raw_fd() {
            let _ = self.request_evt.read();
            self.handle_request(true);
            return;
        }
        if let Some(t) = self.stats_timer.as_mut().filter(|t| t.as_raw_fd() == fd) {
            let _ = t.wait();
            self.handle_request(false);
            return;
        }
        let queues = self.active.as_ref().map(|a| &a.queues[..]);
        match self.watch.event(ops, queues, fd) {
            QueueEvent::Kick(i @ (INFLATE | DEFLATE)) => self.process_page_queue(i),
            QueueEvent::Kick(_) => self.process_stats_queue(),
            QueueEvent::Stale => {}
        }
    }
}
