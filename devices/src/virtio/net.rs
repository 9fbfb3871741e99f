//! virtio-net (virtio 1.2 §5.1) over a TAP device.
//!
//! Frames move with their virtio-net header, which the TAP device understands (IFF_VNET_HDR), so checksum
//! and TSO offloads pass straight between guest and host. Receive uses mergeable buffers when the driver
//! accepts them. Everything in the queues is guest-controlled: bad chains drop that frame (counted), never
//! the VMM; a chain that cannot be returned puts the device in NEEDS_RESET.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::chain_buffers;
use super::{
    read_config_bytes, ActivateError, ActiveQueue, QueueEvent, QueueWatch, VirtioDevice,
    VirtioInterrupt, INT_CONFIG_CHANGE, INT_USED_RING, VIRTIO_RING_F_EVENT_IDX,
};
use crate::bus::lock;
use crate::net::tap::{offload, Tap, VNET_HDR_LEN};

pub const VIRTIO_ID_NET: u32 = 1;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
/// Largest frame a TAP hands us: 64 KiB GSO packet plus header.
const MAX_FRAME: usize = 65_562;

pub mod features {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
}
const STATUS_LINK_UP: u16 = 1;

/// Traffic counters, as `domifstat` reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// State the control side reads and changes while the guest runs.
#[derive(Debug)]
pub struct NetShared {
    pub stats: Mutex<NetStats>,
    pub link_up: AtomicBool,
}

/// What became of an attempt to receive straight into guest memory.
enum Direct {
    /// A frame of this many bytes (with its header) is in the guest's buffers.
    Delivered(usize),
    /// The TAP gave a frame too short to carry a header; it is gone and no buffer was used.
    Runt,
    /// Nothing to read from the TAP.
    TapEmpty,
    /// Not possible now (too little room offered, or a buffer outside guest memory): copy instead.
    Fallback,
    /// A used buffer could not be returned: the device needs a reset.
    Broken,
}

/// What became of a received frame.
enum Rx {
    Delivered,
    /// Did not fit the guest's (non-mergeable) buffer.
    Dropped,
    /// The guest has no receive buffers now; try again when it adds some.
    NoBuffers,
}

struct Active {
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    queues: Vec<ActiveQueue>,
    acked: u64,
}

pub struct Net {
    tap: Tap,
    mac: [u8; 6],
    mtu: Option<u16>,
    shared: Arc<NetShared>,
    active: Option<Active>,
    activate_evt: EventFd,
    /// Written by the control side after changing the link state.
    link_evt: EventFd,
    watch: QueueWatch,
    /// `frame` holds a frame read from the TAP that did not fit in the guest's receive buffers yet.
    pending: bool,
    /// Whether the TAP's fd is in the event loop (it is dropped while the guest has no receive buffers).
    tap_watched: bool,
    frame: Vec<u8>,
    /// Bytes of `frame` holding the frame being delivered.
    frame_len: usize,
    /// The guest's available index when we last ran out of receive buffers and armed its kick.
    rx_armed_at: Option<u16>,
}

impl Net {
    pub fn new(tap: Tap, mac: [u8; 6], mtu: Option<u16>, link_up: bool) -> std::io::Result<Self> {
        Ok(Net {
            tap,
            mac,
            mtu,
            shared: Arc::new(NetShared {
                stats: Mutex::new(NetStats::default()),
                link_up: AtomicBool::new(link_up),
            }),
            active: None,
            activate_evt: EventFd::new(EFD_NONBLOCK)?,
            link_evt: EventFd::new(EFD_NONBLOCK)?,
            watch: QueueWatch::default(),
            pending: false,
            frame_len: 0,
            rx_armed_at: None,
            tap_watched: false,
            frame: vec![0u8; MAX_FRAME],
        })
    }

    pub fn tap_name(&self) -> &str {
        self.tap.name()
    }

    pub fn shared(&self) -> Arc<NetShared> {
        self.shared.clone()
    }

    /// An eventfd the control side writes after changing `shared.link_up`, so the guest is told.
    pub fn link_evt(&self) -> std::io::Result<EventFd> {
        self.link_evt.try_clone()
    }

    fn link_up(&self) -> bool {
        self.shared.link_up.load(Ordering::SeqCst)
    }

    fn config_space(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..6].copy_from_slice(&self.mac);
        let status = if self.link_up() { STATUS_LINK_UP } else { 0 };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c[10..12].copy_from_slice(&self.mtu.unwrap_or(1500).to_le_bytes());
        c
    }

    fn process_tx(&mut self) {
        let link_up = self.link_up();
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let mut used = false;
        // Only for chains that cannot go straight to the TAP (rare): allocated when first needed.
        let mut buf = Vec::new();
        // The guest need not kick while we drain the queue.
        let _ = active.queues[TX].queue.disable_notification(&mem);
        loop {
            let Some(chain) = active.queues[TX].queue.pop_descriptor_chain(&mem) else {
                // Kicks on again, then one more look for frames queued while they were off.
                match active.queues[TX].queue.enable_notification(&mem) {
                    Ok(true) => {
                        let _ = active.queues[TX].queue.disable_notification(&mem);
                        continue;
                    }
                    Ok(false) => break,
                    Err(_) => {
                        active.interrupt.signal_needs_reset();
                        return;
                    }
                }
            };
            let head = chain.head_index();
            let mut stats = lock(&self.shared.stats);
            let valid = |len: usize| len > VNET_HDR_LEN && len <= MAX_FRAME;
            if let Some((iov, len)) = chain_buffers::chain_iovecs(&mem, &chain, false) {
                // Straight from guest memory to the TAP.
                if !valid(len) {
                    stats.tx_errs += 1;
                } else if !link_up {
                    stats.tx_drop += 1;
                } else {
                    let sent = chain_buffers::write_frame(self.tap.as_raw_fd(), &iov);
                    account_tx(&mut stats, sent, len);
                }
            } else {
                match Reader::<()>::new(&mem, chain) {
                    Ok(mut reader) if valid(reader.available_bytes()) => {
                        let len = reader.available_bytes();
                        buf.clear();
                        buf.resize(len, 0);
                        if reader.read_exact(&mut buf).is_err() {
                            stats.tx_errs += 1;
                        } else if !link_up {
                            stats.tx_drop += 1;
                        } else {
                            let sent = self.tap.write(&buf);
                            account_tx(&mut stats, sent, len);
                        }
                    }
                    _ => stats.tx_errs += 1,
                }
            }
            drop(stats);
            if active.queues[TX].queue.add_used(&mem, head, 0).is_err() {
                active.interrupt.signal_needs_reset();
                return;
            }
            used = true;
        }
        if used && !matches!(active.queues[TX].queue.needs_notification(&mem), Ok(false)) {
            active.interrupt.trigger(INT_USED_RING);
        }
    }

    /// Copies `frame` (vnet header + packet) into the guest's receive buffers. `Err` means a chain could not be
    /// used at all (outside guest memory): the device needs a reset.
    fn deliver(active: &mut Active, frame: &mut [u8]) -> Result<Rx, ()> {
        let mergeable = active.acked & features::MRG_RXBUF != 0;
        let count = if mergeable {
            match Self::chains_needed(active, frame.len()) {
                Some(c) => c,
                None => return Ok(Rx::NoBuffers),
            }
        } else {
            1
        };
        // num_buffers, the last field of the header, tells the guest how many chains this frame spans.
        frame[10..12].copy_from_slice(&(count as u16).to_le_bytes());
        let mem = active.mem.clone();
        let q = &mut active.queues[RX].queue;
        let mut written = 0usize;
        for _ in 0..count {
            let Some(chain) = q.pop_descriptor_chain(&mem) else {
                return Ok(Rx::NoBuffers);
            };
            let head = chain.head_index();
            let mut writer = Writer::<()>::new(&mem, chain).map_err(|_| ())?;
            let n = writer.available_bytes().min(frame.len() - written);
            if !mergeable && n < frame.len() {
                // Without mergeable buffers a frame must fit in one chain.
                q.add_used(&mem, head, 0).map_err(|_| ())?;
                return Ok(Rx::Dropped);
            }
            writer
                .write_all(&frame[written..written + n])
                .map_err(|_| ())?;
            written += n;
            q.add_used(&mem, head, n as u32).map_err(|_| ())?;
        }
        Ok(Rx::Delivered)
    }

    fn process_rx(&mut self, ops: &mut EventOps) {
        if self.active.is_none() {
            return;
        }
        let mut delivered = false;
        loop {
            // Best: the TAP reads the frame straight into the guest's buffers.
            if !self.pending && self.link_up() {
                if let Some(active) = self.active.as_mut() {
                    match Self::receive_direct(active, &self.tap) {
                        Direct::Delivered(len) => {
                            self.rx_armed_at = None;
                            let mut s = lock(&self.shared.stats);
                            s.rx_packets += 1;
                            s.rx_bytes += (len - VNET_HDR_LEN) as u64;
                            delivered = true;
                            continue;
                        }
                        Direct::Runt => continue,
                        Direct::TapEmpty => break,
                        Direct::Broken => {
                            active.interrupt.signal_needs_reset();
                            self.unwatch_tap(ops);
                            return;
                        }
                        Direct::Fallback => {}
                    }
                }
            }
            // Otherwise the frame is read into one reusable buffer and copied once, into the guest's buffers.
            if !self.pending {
                match self.tap.read(&mut self.frame) {
                    Ok(n) if n > VNET_HDR_LEN => self.frame_len = n,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            self.pending = false;
            if !self.link_up() {
                lock(&self.shared.stats).rx_drop += 1;
                continue;
            }
            let Some(active) = self.active.as_mut() else {
                return;
            };
            let len = self.frame_len;
            match Self::deliver(active, &mut self.frame[..len]) {
                Ok(Rx::Delivered) => {
                    self.rx_armed_at = None;
                    let mut s = lock(&self.shared.stats);
                    s.rx_packets += 1;
                    s.rx_bytes += (len - VNET_HDR_LEN) as u64;
                    delivered = true;
                }
                Ok(Rx::Dropped) => {
                    lock(&self.shared.stats).rx_drop += 1;
                    delivered = true;
                }
                Ok(Rx::NoBuffers) => {
                    // No buffers: keep the frame and stop reading the TAP until the guest adds some —
                    // unless it already has since we looked.
                    self.pending = true;
                    let armed_at = Self::arm_rx_kick(active);
                    if armed_at.is_some() && armed_at != self.rx_armed_at {
                        // Buffers may have come before the kick was armed: look once more.
                        self.rx_armed_at = armed_at;
                        continue;
                    }
                    self.unwatch_tap(ops);
                    break;
                }
                Err(()) => {
                    active.interrupt.signal_needs_reset();
                    self.unwatch_tap(ops);
                    return;
                }
            }
        }
        if delivered {
            if let Some(active) = self.active.as_mut() {
                if !matches!(
                    active.queues[RX].queue.needs_notification(&active.mem),
                    Ok(false)
                ) {
                    active.interrupt.trigger(INT_USED_RING);
                }
            }
        }
    }

    /// Reads one frame from the TAP straight into receive buffers, when the guest has offered room for the
    /// largest frame (one chain without mergeable buffers, else as many as that takes); the chains the frame
    /// did not need go back to the available ring.
    fn receive_direct(active: &mut Active, tap: &Tap) -> Direct {
        let mergeable = active.acked & features::MRG_RXBUF != 0;
        let mem = active.mem.clone();
        let q = &mut active.queues[RX].queue;
        let mut chains: Vec<(u16, usize)> = Vec::new();
        let mut iov: Vec<libc::iovec> = Vec::new();
        let mut room = 0usize;
        let rewind = |q: &mut virtio_queue::Queue, n: usize| {
            for _ in 0..n {
                q.go_to_previous_position();
            }
        };
        while room < MAX_FRAME && (mergeable || chains.is_empty()) {
            let Some(chain) = q.pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            let Some((mut v, len)) = chain_buffers::chain_iovecs(&mem, &chain, true) else {
                rewind(q, chains.len() + 1);
                return Direct::Fallback;
            };
            chains.push((head, len));
            iov.append(&mut v);
            room += len;
        }
        // The header (12 bytes) must sit in the first buffer for num_buffers to be written below.
        if room < MAX_FRAME || iov.first().is_none_or(|v| v.iov_len < VNET_HDR_LEN) {
            rewind(q, chains.len());
            return Direct::Fallback;
        }
        let n = match chain_buffers::read_frame(tap.as_raw_fd(), &iov) {
            Ok(n) => n,
            Err(_) => {
                rewind(q, chains.len());
                return Direct::TapEmpty;
            }
        };
        if n <= VNET_HDR_LEN {
            rewind(q, chains.len());
            return Direct::Runt;
        }
        let mut left = n;
        let mut used = Vec::new();
        for &(head, len) in &chains {
            if left == 0 {
                break;
            }
            let take = left.min(len);
            used.push((head, take));
            left -= take;
        }
        rewind(q, chains.len() - used.len());
        let num_buffers = (used.len() as u16).to_le_bytes();
        // SAFETY: the first iovec is a device-writable guest buffer of at least VNET_HDR_LEN (12) bytes,
        // checked above; num_buffers is its bytes 10..12.
        unsafe {
            std::ptr::copy_nonoverlapping(
                num_buffers.as_ptr(),
                iov[0].iov_base.cast::<u8>().add(10),
                2,
            )
        };
        for (head, take) in used {
            if q.add_used(&mem, head, take as u32).is_err() {
                return Direct::Broken;
            }
        }
        Direct::Delivered(n)
    }

    /// Asks the driver to kick the receive queue when it next adds buffers, and returns its available index
    /// as of now. With EVENT_IDX the driver kicks only when its available index passes `avail_event`, so that
    /// is set to the index as it is now: the queue's own `enable_notification` would set it to where we stopped
    /// consuming, which is behind buffers we have seen but could not use (too small for the frame), and the
    /// driver would never kick.
    fn arm_rx_kick(active: &mut Active) -> Option<u16> {
        let mem = &active.mem;
        let q = &mut active.queues[RX].queue;
        let seen = q.avail_idx(mem, Ordering::Acquire).ok()?.0;
        if q.event_idx_enabled() {
            let avail_event = q.used_ring() + 4 + 8 * u64::from(q.size());
            mem.write_obj(seen.to_le(), GuestAddress(avail_event))
                .ok()?;
            // The driver reads avail_event after publishing buffers; make ours visible before we look again.
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        Some(seen)
    }

    /// How many receive chains a frame of `len` bytes needs, without consuming any; None if the guest has not
    /// offered enough.
    fn chains_needed(active: &mut Active, len: usize) -> Option<usize> {
        let mem = active.mem.clone();
        let q = &mut active.queues[RX].queue;
        let mut room = 0usize;
        let mut count = 0usize;
        let mut result = None;
        while let Some(chain) = q.pop_descriptor_chain(&mem) {
            count += 1;
            room += chain
                .clone()
                .writable()
                .map(|d| d.len() as usize)
                .sum::<usize>();
            if room >= len {
                result = Some(count);
                break;
            }
        }
        for _ in 0..count {
            q.go_to_previous_position();
        }
        result
    }

    fn unwatch_tap(&mut self, ops: &mut EventOps) {
        if self.tap_watched {
            let _ = ops.remove(Events::empty(&self.tap));
            self.tap_watched = false;
        }
    }

    fn watch_tap(&mut self, ops: &mut EventOps) {
        if !self.tap_watched && ops.add(Events::new(&self.tap, EventSet::IN)).is_ok() {
            self.tap_watched = true;
        }
    }

    fn apply_offloads(&self, acked: u64) {
        let mut flags = 0;
        if acked & features::GUEST_CSUM != 0 {
            flags |= offload::CSUM;
            if acked & features::GUEST_TSO4 != 0 {
                flags |= offload::TSO4;
            }
            if acked & features::GUEST_TSO6 != 0 {
                flags |= offload::TSO6;
            }
            if acked & features::GUEST_ECN != 0 {
                flags |= offload::TSO_ECN;
            }
        }
        if let Err(e) = self.tap.set_offload(flags) {
            log::warn!("virtio-net: {e}");
        }
    }
}

/// Counts one frame's transmission: a TAP takes or refuses a frame whole.
fn account_tx(stats: &mut NetStats, sent: std::io::Result<usize>, len: usize) {
    match sent {
        Ok(n) if n == len => {
            stats.tx_packets += 1;
            stats.tx_bytes += (len - VNET_HDR_LEN) as u64;
        }
        Ok(n) => {
            log::debug!("virtio-net: TAP took {n} of {len} bytes");
            stats.tx_errs += 1;
        }
        Err(e) => {
            log::debug!("virtio-net: TAP write failed: {e}");
            stats.tx_drop += 1;
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        use features::*;
        let mut f = CSUM
            | GUEST_CSUM
            | MAC
            | GUEST_TSO4
            | GUEST_TSO6
            | GUEST_ECN
            | HOST_TSO4
            | HOST_TSO6
            | HOST_ECN
            | MRG_RXBUF
            | STATUS
            | VIRTIO_RING_F_EVENT_IDX;
        if self.mtu.is_some() {
            f |= MTU;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The MAC is only writable through the control queue, which we do not offer.
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
        acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() != 2 {
            return Err(ActivateError::QueueCount {
                expected: 2,
                got: queues.len(),
            });
        }
        self.apply_offloads(acked_features);
        if let Some(old) = self.active.take() {
            self.watch.retire(old.queues);
        }
        self.active = Some(Active {
            mem,
            interrupt,
            queues,
            acked: acked_features,
        });
        self.activate_evt
            .write(1)
            .map_err(|e| ActivateError::Other(e.to_string()))
    }

    fn reset(&mut self) {
        self.pending = false;
        self.rx_armed_at = None;
        if let Some(old) = self.active.take() {
            self.watch.retire(old.queues);
        }
    }
}

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        for evt in [&self.activate_evt, &self.link_evt] {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("virtio-net: cannot watch an event: {e}");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.activate_evt.as_raw_fd() {
            let _ = self.activate_evt.read();
            let queues = self.active.as_ref().map_or(&[][..], |a| &a.queues[..]);
            self.watch.rewatch(ops, queues, "virtio-net");
            self.watch_tap(ops);
            return;
        }
        if fd == self.link_evt.as_raw_fd() {
            let _ = self.link_evt.read();
            if let Some(active) = &self.active {
                active.interrupt.trigger(INT_CONFIG_CHANGE);
            }
            return;
        }
        if fd == self.tap.as_raw_fd() {
            self.process_rx(ops);
            return;
        }
        let queues = self.active.as_ref().map(|a| &a.queues[..]);
        match self.watch.event(ops, queues, fd) {
            QueueEvent::Kick(TX) => self.process_tx(),
            QueueEvent::Kick(_) => {
                // New receive buffers: deliver what is pending and read the TAP again.
                self.watch_tap(ops);
                self.process_rx(ops);
            }
            QueueEvent::Stale => {}
        }
    }
}
