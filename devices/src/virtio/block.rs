//! virtio-blk (virtio 1.2 §5.2) over a [`BlockBackend`].
//!
//! Requests are served on the event loop thread when the guest kicks a queue. Every field of a request comes
//! from the guest and is checked: a request that cannot be parsed gets VIRTIO_BLK_S_IOERR (or UNSUPP for an
//! unknown type); a chain that leaves no room for the status byte, or points outside guest memory, cannot be
//! answered at all and puts the device in NEEDS_RESET.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{QueueT, Reader, Writer};
use vm_memory::{ByteValued, GuestMemoryMmap, VolatileSlice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::chain_buffers::chain_slices;
use super::{
    read_config_bytes, ActivateError, ActiveQueue, QueueEvent, QueueWatch, VirtioDevice,
    VirtioInterrupt, INT_USED_RING, VIRTIO_RING_F_EVENT_IDX,
};
use crate::block::{BlockBackend, BlockError};

pub const VIRTIO_ID_BLOCK: u32 = 2;
pub const SECTOR_SHIFT: u32 = 9;
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// Queue size offered to the driver.
pub const QUEUE_SIZE: u16 = 256;

/// Feature bits (§5.2.3).
pub mod features {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;
/// Largest data transfer per request we accept; Linux never sends more than seg_max * size_max.
const SEG_MAX: u32 = 126;
const SIZE_MAX: u32 = 1 << 20;
/// Bytes moved between the backend and guest memory per step, bounding the bounce buffer.
const CHUNK: usize = crate::block::guest_io::BOUNCE_CHUNK;
/// Discard / write-zeroes limits advertised in config space.
const MAX_DISCARD_SECTORS: u32 = u32::MAX >> SECTOR_SHIFT;
const MAX_DISCARD_SEG: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct RequestHeader {
    kind: u32,
    reserved: u32,
    sector: u64,
}
// SAFETY: plain integers, no padding (4 + 4 + 8 bytes).
unsafe impl ByteValued for RequestHeader {}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct DiscardSegment {
    sector: u64,
    num_sectors: u32,
    flags: u32,
}
// SAFETY: plain integers, no padding (8 + 4 + 4 bytes).
unsafe impl ByteValued for DiscardSegment {}
const WRITE_ZEROES_UNMAP: u32 = 1;

/// Per-device settings from the domain's `<disk>`.
#[derive(Debug, Clone)]
pub struct BlockConfig {
    /// `<serial>`, returned by GET_ID (truncated to 20 bytes).
    pub serial: Option<String>,
    /// `<driver discard='unmap'>`: offer DISCARD and let WRITE_ZEROES unmap.
    pub discard: bool,
}

/// Counters for `domblkstat`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    pub read_reqs: u64,
    pub read_bytes: u64,
    pub write_reqs: u64,
    pub write_bytes: u64,
    pub flush_reqs: u64,
    pub errors: u64,
}

struct Active {
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    queues: Vec<ActiveQueue>,
    acked: u64,
}

pub struct Block {
    backend: Box<dyn BlockBackend>,
    config: BlockConfig,
    config_space: Vec<u8>,
    active: Option<Active>,
    /// Written by `activate` (a vCPU thread) so the event loop registers the queue eventfds.
    activate_evt: EventFd,
    watch: QueueWatch,
    /// A request could not be answered: serve nothing more until the driver resets the device.
    broken: bool,
    stats: BlockStats,
    /// Bounce buffer for backends that cannot move data straight to and from guest memory, kept between
    /// requests so a request does not allocate and zero one.
    scratch: Vec<u8>,
}

fn build_config_space(capacity_sectors: u64, discard: bool) -> Vec<u8> {
    let mut c = vec![0u8; 60];
    c[0..8].copy_from_slice(&capacity_sectors.to_le_bytes());
    c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
    c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes()); // blk_size
    if discard {
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        c[44..48].copy_from_slice(&1u32.to_le_bytes()); // discard_sector_alignment
    }
    c[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes()); // max_write_zeroes_sectors
    c[52..56].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes()); // max_write_zeroes_seg
    c[56] = u8::from(discard); // write_zeroes_may_unmap
    c
}

impl Block {
    pub fn new(backend: Box<dyn BlockBackend>, config: BlockConfig) -> std::io::Result<Self> {
        let config_space = build_config_space(backend.size() >> SECTOR_SHIFT, config.discard);
        Ok(Block {
            backend,
            config,
            config_space,
            active: None,
            activate_evt: EventFd::new(EFD_NONBLOCK)?,
            watch: QueueWatch::default(),
            broken: false,
            stats: BlockStats::default(),
            scratch: Vec::new(),
        })
    }

    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    fn device_features(&self) -> u64 {
        let mut f = features::SIZE_MAX
            | features::SEG_MAX
            | features::BLK_SIZE
            | features::FLUSH
            | features::WRITE_ZEROES
            | VIRTIO_RING_F_EVENT_IDX;
        if self.backend.read_only() {
            f |= features::RO;
        }
        if self.config.discard {
            f |= features::DISCARD;
        }
        f
    }

    /// Serves every available request on queue `index`.
    pub fn process_queue(&mut self, index: usize) {
        if self.broken {
            return;
        }
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let mut used_any = false;
        if let Some(q) = active.queues.get_mut(index) {
            // The guest need not kick while we drain the queue.
            let _ = q.queue.disable_notification(&mem);
        }
        loop {
            let Some(q) = active.queues.get_mut(index) else {
                return;
            };
            let Some(chain) = q.queue.pop_descriptor_chain(&mem) else {
                // Ask for kicks again (with EVENT_IDX: from the next request on), then look once more: a
                // request that came while kicks were off would otherwise wait for the next kick.
                match q.queue.enable_notification(&mem) {
                    Ok(true) => {
                        let _ = q.queue.disable_notification(&mem);
                        continue;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        log::warn!("virtio-blk: bad available ring ({e:?}); device needs reset");
                        self.broken = true;
                        break;
                    }
                }
            };
            let head = chain.head_index();
            let outcome = serve(
                &mut *self.backend,
                &self.config,
                active.acked,
                &mut self.stats,
                &mut self.scratch,
                &mem,
                chain,
            );
            match outcome {
                Ok(written) => {
                    let q = &mut active.queues[index];
                    if let Err(e) = q.queue.add_used(&mem, head, written) {
                        log::warn!(
                            "virtio-blk: cannot return a used buffer ({e:?}); device needs reset"
                        );
                        self.broken = true;
                        break;
                    }
                    used_any = true;
                }
                Err(why) => {
                    log::warn!("virtio-blk: malformed request, device needs reset: {why}");
                    self.broken = true;
                    break;
                }
            }
        }
        if self.broken {
            active.interrupt.signal_needs_reset();
            return;
        }
        if used_any {
            let q = &mut active.queues[index];
            match q.queue.needs_notification(&mem) {
                Ok(false) => {}
                _ => active.interrupt.trigger(INT_USED_RING),
            }
        }
    }
}

/// A chain we cannot even answer.
type Malformed = String;

/// Serves one request; returns the number of bytes written into the guest's buffers (data + status).
fn serve(
    backend: &mut dyn BlockBackend,
    config: &BlockConfig,
    acked: u64,
    stats: &mut BlockStats,
    scratch: &mut Vec<u8>,
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
) -> Result<u32, Malformed> {
    let bufs = RequestBuffers::of(mem, &chain);
    let mut reader =
        Reader::<()>::new(mem, chain.clone()).map_err(|e| format!("readable buffers: {e:?}"))?;
    let mut writer =
        Writer::<()>::new(mem, chain).map_err(|e| format!("writable buffers: {e:?}"))?;
    let writable = writer.available_bytes();
    if writable == 0 {
        return Err("no writable byte for the status".into());
    }
    let mut status_writer = writer
        .split_at(writable - 1)
        .map_err(|e| format!("status byte: {e:?}"))?;
    // Bytes of data put straight into guest buffers, which the writer does not count.
    let mut filled = 0usize;
    let status = match reader.read_obj::<RequestHeader>() {
        Err(_) => S_IOERR,
        Ok(header) => execute(
            backend,
            config,
            acked,
            stats,
            header,
            Transfer {
                reader: &mut reader,
                writer: &mut writer,
                bufs: &bufs,
                scratch,
                filled: &mut filled,
            },
        ),
    };
    if status != S_OK {
        stats.errors += 1;
    }
    status_writer
        .write_all(&[status])
        .map_err(|e| format!("writing the status: {e}"))?;
    Ok((writer.bytes_written() + filled + 1) as u32)
}

/// A request's data buffers as slices of guest memory: the device-writable bytes before the status byte (for
/// reads) and the device-readable bytes after the header (for writes). A side is None when one of its buffers
/// straddles two memory regions; that request then goes through the Reader/Writer copy path.
struct RequestBuffers<'m> {
    writable: Option<Vec<VolatileSlice<'m>>>,
    readable: Option<Vec<VolatileSlice<'m>>>,
}

impl<'m> RequestBuffers<'m> {
    fn of(
        mem: &'m GuestMemoryMmap,
        chain: &virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    ) -> RequestBuffers<'m> {
        RequestBuffers {
            writable: chain_slices(mem, chain, true, 0, 1),
            readable: chain_slices(mem, chain, false, std::mem::size_of::<RequestHeader>(), 0),
        }
    }
}

/// Where a request's data comes from and goes to.
struct Transfer<'r, 'a, 'm> {
    reader: &'r mut Reader<'a>,
    writer: &'r mut Writer<'a>,
    bufs: &'r RequestBuffers<'m>,
    scratch: &'r mut Vec<u8>,
    filled: &'r mut usize,
}

fn range(sector: u64, len: u64, size: u64) -> Option<u64> {
    let offset = sector.checked_mul(SECTOR_SIZE)?;
    let end = offset.checked_add(len)?;
    (end <= size).then_some(offset)
}

fn execute(
    backend: &mut dyn BlockBackend,
    config: &BlockConfig,
    acked: u64,
    stats: &mut BlockStats,
    header: RequestHeader,
    t: Transfer<'_, '_, '_>,
) -> u8 {
    let Transfer {
        reader,
        writer,
        bufs,
        scratch,
        filled,
    } = t;
    let size = backend.size();
    let io = |r: Result<(), BlockError>| match r {
        Ok(()) => S_OK,
        Err(e) => {
            log::warn!("virtio-blk: {e}");
            S_IOERR
        }
    };
    match header.kind {
        req::IN => {
            let len = writer.available_bytes() as u64;
            let Some(mut offset) = range(header.sector, len, size) else {
                return S_IOERR;
            };
            if let Some(slices) = bufs.writable.as_deref() {
                if let Err(e) = backend.read_into(slices, offset, scratch) {
                    log::warn!("virtio-blk: read at {offset}: {e}");
                    return S_IOERR;
                }
                *filled = len as usize;
            } else {
                let mut left = len as usize;
                while left > 0 {
                    let n = left.min(CHUNK);
                    if scratch.len() < n {
                        scratch.resize(n, 0);
                    }
                    if let Err(e) = backend.read_at(&mut scratch[..n], offset) {
                        log::warn!("virtio-blk: read at {offset}: {e}");
                        return S_IOERR;
                    }
                    if writer.write_all(&scratch[..n]).is_err() {
                        return S_IOERR;
                    }
                    offset += n as u64;
                    left -= n;
                }
            }
            stats.read_reqs += 1;
            stats.read_bytes += len;
            S_OK
        }
        req::OUT => {
            if backend.read_only() {
                return S_IOERR;
            }
            let len = reader.available_bytes() as u64;
            let Some(mut offset) = range(header.sector, len, size) else {
                return S_IOERR;
            };
            if let Some(slices) = bufs.readable.as_deref() {
                if let Err(e) = backend.write_from(slices, offset, scratch) {
                    log::warn!("virtio-blk: write at {offset}: {e}");
                    return S_IOERR;
                }
            } else {
                let mut left = len as usize;
                while left > 0 {
                    let n = left.min(CHUNK);
                    if scratch.len() < n {
                        scratch.resize(n, 0);
                    }
                    if reader.read_exact(&mut scratch[..n]).is_err() {
                        return S_IOERR;
                    }
                    if let Err(e) = backend.write_at(&scratch[..n], offset) {
                        log::warn!("virtio-blk: write at {offset}: {e}");
                        return S_IOERR;
                    }
                    offset += n as u64;
                    left -= n;
                }
            }
            stats.write_reqs += 1;
            stats.write_bytes += len;
            S_OK
        }
        req::FLUSH => {
            stats.flush_reqs += 1;
            io(backend.flush())
        }
        req::GET_ID => {
            let mut id = [0u8; ID_BYTES];
            if let Some(serial) = &config.serial {
                let bytes = serial.as_bytes();
                let n = bytes.len().min(ID_BYTES);
                id[..n].copy_from_slice(&bytes[..n]);
            }
            let n = writer.available_bytes().min(ID_BYTES);
            if writer.write_all(&id[..n]).is_err() {
                return S_IOERR;
            }
            S_OK
        }
        req::DISCARD | req::WRITE_ZEROES => {
            let discard = header.kind == req::DISCARD;
            let needed = if discard {
                features::DISCARD
            } else {
                features::WRITE_ZEROES
            };
            if acked & needed == 0 {
                return S_UNSUPP;
            }
            if backend.read_only() {
                return S_IOERR;
            }
            let count = reader.available_bytes() / std::mem::size_of::<DiscardSegment>();
            if count == 0 || count > MAX_DISCARD_SEG as usize {
                return S_IOERR;
            }
            for _ in 0..count {
                let Ok(seg) = reader.read_obj::<DiscardSegment>() else {
                    return S_IOERR;
                };
                let len = u64::from(seg.num_sectors) * SECTOR_SIZE;
                let Some(offset) = range(seg.sector, len, size) else {
                    return S_IOERR;
                };
                let known_flags = if discard { 0 } else { WRITE_ZEROES_UNMAP };
                if seg.flags & !known_flags != 0 {
                    return S_UNSUPP;
                }
                let r = if discard {
                    backend.discard(offset, len)
                } else {
                    let unmap = seg.flags & WRITE_ZEROES_UNMAP != 0 && config.discard;
                    backend.write_zeroes(offset, len, unmap)
                };
                if io(r) != S_OK {
                    return S_IOERR;
                }
            }
            S_OK
        }
        _ => S_UNSUPP,
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.device_features()
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The block config space has only the writeback toggle, which we do not offer; ignore writes.
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
        acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() != 1 {
            return Err(ActivateError::QueueCount {
                expected: 1,
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
            acked: acked_features,
        });
        self.broken = false;
        self.activate_evt
            .write(1)
            .map_err(|e| ActivateError::Other(e.to_string()))
    }

    fn reset(&mut self) {
        self.broken = false;
        if let Some(old) = self.active.take() {
            self.watch.retire(old.queues);
        }
    }
}

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.activate_evt, EventSet::IN)) {
            log::error!("virtio-blk: cannot watch the activation event: {e}");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.activate_evt.as_raw_fd() {
            let _ = self.activate_evt.read();
            let queues = self.active.as_ref().map_or(&[][..], |a| &a.queues[..]);
            self.watch.rewatch(ops, queues, "virtio-blk");
            // Requests queued before activation was noticed.
            self.process_queue(0);
            return;
        }
        let queues = self.active.as_ref().map(|a| &a.queues[..]);
        if let QueueEvent::Kick(i) = self.watch.event(ops, queues, fd) {
            self.process_queue(i);
        }
    }
}
