//! A minimal virtio-mmio driver for tiny guests: emits code that negotiates features, sets up split queues
//! at fixed guest addresses, publishes descriptor chains and waits (boundedly) for the device.

use iced_x86::code_asm::*;

use super::Guest;

/// First virtio-mmio device window (the VMM puts devices there in order: disks, then the balloon).
pub const MMIO: u32 = 0xd000_0000;
/// Each queue's rings live in a 16 KiB block from here: descriptors, avail ring, used ring.
pub const RINGS: u32 = 0x20_0000;
pub const QUEUE_SIZE: u32 = 8;
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;

pub fn desc_table(queue: u32) -> u32 {
    RINGS + queue * 0x4000
}
pub fn avail_ring(queue: u32) -> u32 {
    desc_table(queue) + 0x1000
}
pub fn used_ring(queue: u32) -> u32 {
    desc_table(queue) + 0x2000
}

pub struct Driver {
    pub g: Guest,
    /// Chains published so far, per queue.
    pub submitted: Vec<u32>,
    /// The device's MMIO window.
    pub base: u32,
    /// Added to queue numbers when placing rings, so two drivers in one guest do not share memory.
    pub ring_slot: u32,
}

impl Driver {
    pub fn new(queues: usize) -> Self {
        Driver {
            g: Guest::new32(),
            submitted: vec![0; queues],
            base: MMIO,
            ring_slot: 0,
        }
    }

    /// A driver for the device in MMIO slot `slot`, continuing `g`'s program.
    pub fn for_slot(g: Guest, queues: usize, slot: u32) -> Self {
        Driver {
            g,
            submitted: vec![0; queues],
            base: MMIO + slot * 0x1000,
            ring_slot: slot * 4,
        }
    }

    pub fn a(&mut self) -> &mut CodeAssembler {
        &mut self.g.a
    }

    pub fn reg_write(&mut self, offset: u32, value: u32) {
        let at = self.base + offset;
        self.a().mov(dword_ptr(at), value).unwrap();
    }

    /// Prints `ok` when the comparison `emit_cmp` emits leaves ZF set (equal), `bad` otherwise.
    pub fn check(&mut self, emit_cmp: impl FnOnce(&mut CodeAssembler), ok: &str, bad: &str) {
        let mut fail = self.a().create_label();
        let mut done = self.a().create_label();
        emit_cmp(self.a());
        self.a().jne(fail).unwrap();
        self.g.print(ok);
        self.a().jmp(done).unwrap();
        self.a().set_label(&mut fail).unwrap();
        self.g.print(bad);
        self.a().set_label(&mut done).unwrap();
    }

    /// Negotiates VERSION_1 plus `features` (low 32 bits) and sets up every queue.
    pub fn setup(&mut self, features: u32) {
        self.reg_write(0x70, 1 | 2);
        self.reg_write(0x24, 1);
        self.reg_write(0x20, 1);
        self.reg_write(0x24, 0);
        self.reg_write(0x20, features);
        self.reg_write(0x70, 1 | 2 | 8);
        let status = self.base + 0x70;
        self.check(
            |a| a.cmp(dword_ptr(status), 1 | 2 | 8u32).unwrap(),
            "features ok\n",
            "features BAD\n",
        );
        for q in 0..self.submitted.len() as u32 {
            self.reg_write(0x30, q);
            self.reg_write(0x38, QUEUE_SIZE);
            for (reg, addr) in [
                (0x80, desc_table(q + self.ring_slot)),
                (0x90, avail_ring(q + self.ring_slot)),
                (0xa0, used_ring(q + self.ring_slot)),
            ] {
                self.reg_write(reg, addr);
                self.reg_write(reg + 4, 0);
            }
            self.reg_write(0x44, 1);
        }
        self.reg_write(0x70, 1 | 2 | 8 | 4);
    }

    pub fn desc(&mut self, queue: u32, i: u32, addr: u64, len: u32, flags: u16, next: u16) {
        let at = desc_table(queue + self.ring_slot) + 16 * i;
        self.a().mov(dword_ptr(at), addr as u32).unwrap();
        self.a()
            .mov(dword_ptr(at + 4), (addr >> 32) as u32)
            .unwrap();
        self.a().mov(dword_ptr(at + 8), len).unwrap();
        self.a()
            .mov(
                dword_ptr(at + 12),
                u32::from(flags) | (u32::from(next) << 16),
            )
            .unwrap();
    }

    /// Publishes descriptor 0 of `queue` as a new chain and kicks the queue.
    pub fn publish(&mut self, queue: u32) -> u32 {
        let n = &mut self.submitted[queue as usize];
        let slot = *n % QUEUE_SIZE;
        *n += 1;
        let idx = *n;
        let avail = avail_ring(queue + self.ring_slot);
        self.a().mov(word_ptr(avail + 4 + 2 * slot), 0u32).unwrap();
        self.a().mov(word_ptr(avail + 2), idx).unwrap();
        self.reg_write(0x50, queue);
        idx
    }

    /// Publishes and waits (bounded) for the used index to follow; powers off on timeout.
    pub fn submit_and_wait(&mut self, queue: u32) {
        let idx = self.publish(queue);
        self.a().mov(ecx, 50_000_000u32).unwrap();
        let mut poll = self.a().create_label();
        let mut done = self.a().create_label();
        self.a().set_label(&mut poll).unwrap();
        let used = used_ring(queue + self.ring_slot);
        self.a().cmp(word_ptr(used + 2), idx).unwrap();
        self.a().je(done).unwrap();
        self.a().dec(ecx).unwrap();
        self.a().jnz(poll).unwrap();
        self.g.print("timeout waiting for the device\n");
        self.g.power_off();
        self.a().set_label(&mut done).unwrap();
    }

    /// Publishes without waiting for completion; waits (bounded) for DEVICE_NEEDS_RESET instead.
    pub fn submit_expecting_reset(&mut self, queue: u32) {
        self.publish(queue);
        self.a().mov(ecx, 50_000_000u32).unwrap();
        let mut poll = self.a().create_label();
        let mut done = self.a().create_label();
        self.a().set_label(&mut poll).unwrap();
        let status = self.base + 0x70;
        self.a().test(dword_ptr(status), 64u32).unwrap();
        self.a().jnz(done).unwrap();
        self.a().dec(ecx).unwrap();
        self.a().jnz(poll).unwrap();
        self.a().set_label(&mut done).unwrap();
    }

    /// Forgets the queues' progress (after a device reset the rings start over).
    pub fn restart_queues(&mut self) {
        for q in 0..self.submitted.len() as u32 {
            let r = q + self.ring_slot;
            self.a().mov(dword_ptr(avail_ring(r)), 0u32).unwrap();
            self.a().mov(dword_ptr(used_ring(r)), 0u32).unwrap();
        }
        self.submitted.iter_mut().for_each(|n| *n = 0);
    }
}
