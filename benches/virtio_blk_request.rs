//! Cost of one virtio-blk request through the queue: descriptor parsing, guest-memory copies, the backend
//! call and the used-ring update, as the event loop runs it (no VM, no exits).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ironvirt_devices::block::{self, ImageFormat, OpenOptions};
use ironvirt_devices::virtio::block::{Block, BlockConfig};
use ironvirt_devices::virtio::{ActiveQueue, VirtioDevice, VirtioInterrupt};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HDR: u64 = 0x4000;
const STATUS: u64 = 0x5000;
const DATA: u64 = 0x10_0000;
const QSIZE: u16 = 256;
const BATCH: u16 = 64;

struct NoInterrupt;
impl VirtioInterrupt for NoInterrupt {
    fn trigger(&self, _reason: u32) {}
    fn signal_needs_reset(&self) {}
}

/// Lays out `BATCH` requests of `kind` (0 = IN, 1 = OUT) of `len` bytes and publishes them.
fn publish(mem: &GuestMemoryMmap, kind: u32, len: u32, round: u16) {
    for r in 0..BATCH {
        let d = u64::from(r) * 3;
        let hdr = HDR + u64::from(r) * 16;
        mem.write_obj(kind, GuestAddress(hdr)).unwrap();
        mem.write_obj(u64::from(r) * 8, GuestAddress(hdr + 8))
            .unwrap();
        let desc = |i: u64, addr: u64, l: u32, flags: u16, next: u16| {
            let at = DESC + (d + i) * 16;
            mem.write_obj(addr, GuestAddress(at)).unwrap();
            mem.write_obj(l, GuestAddress(at + 8)).unwrap();
            mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        };
        let data_flags = if kind == 0 { 1 | 2 } else { 1 };
        desc(0, hdr, 16, 1, (d + 1) as u16);
        desc(
            1,
            DATA + u64::from(r) * u64::from(len),
            len,
            data_flags,
            (d + 2) as u16,
        );
        desc(2, STATUS + u64::from(r), 1, 2, 0);
        let slot = (round.wrapping_mul(BATCH).wrapping_add(r)) % QSIZE;
        mem.write_obj(d as u16, GuestAddress(AVAIL + 4 + 2 * u64::from(slot)))
            .unwrap();
    }
    mem.write_obj(
        round.wrapping_add(1).wrapping_mul(BATCH),
        GuestAddress(AVAIL + 2),
    )
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    std::fs::write(&path, vec![0u8; 64 << 20]).unwrap();
    for (name, kind, len) in [
        ("read 4KiB", 0u32, 4096u32),
        ("write 4KiB", 1, 4096),
        ("read 64KiB", 0, 65536),
    ] {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
        let backend = block::open(
            &path,
            &OpenOptions {
                format: ImageFormat::Raw,
                lock: false,
                ..Default::default()
            },
        )
        .unwrap();
        let mut dev = Block::new(
            backend,
            BlockConfig {
                serial: None,
                discard: false,
            },
        )
        .unwrap();
        let mut queue = Queue::new(QSIZE).unwrap();
        queue.set_size(QSIZE);
        queue.set_desc_table_address(Some(DESC as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        queue.set_used_ring_address(Some(USED as u32), Some(0));
        queue.set_ready(true);
        let notify = EventFd::new(EFD_NONBLOCK).unwrap();
        dev.activate(
            mem.clone(),
            Arc::new(NoInterrupt),
            vec![ActiveQueue { queue, notify }],
            1 << 32,
        )
        .unwrap();
        let mut round = 0u16;
        c.bench_function(&format!("virtio-blk {name} x{BATCH} requests"), |b| {
            b.iter_batched(
                || {
                    publish(&mem, kind, len, round);
                    round = round.wrapping_add(1);
                },
                |_| dev.process_queue(0),
                BatchSize::PerIteration,
            )
        });
        assert_eq!(
            dev.stats().errors,
            0,
            "the benchmark's requests must all succeed"
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
