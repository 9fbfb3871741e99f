//! A tiny guest that drives a virtio-blk device through its virtio-mmio registers and queue directly, on this
//! machine's `/dev/kvm`: feature negotiation, OUT/IN/GET_ID/FLUSH/WRITE_ZEROES/unknown requests, and a
//! malformed chain that must put the device in NEEDS_RESET without harming the VMM.

mod support;

use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use ironvirt_vmm::{
    BootConfig, CacheMode, CpuTopology, DiskConfig, ImageFormat, LifecycleAction, SerialConfig, Vm,
    VmConfig, VmExit,
};
use support::*;

const MIB: u64 = 1 << 20;
const MMIO: u32 = 0xd000_0000;
const DESC: u32 = 0x20_0000;
const AVAIL: u32 = 0x20_1000;
const USED: u32 = 0x20_2000;
const HDR: u32 = 0x20_3000;
const DATA: u32 = 0x20_4000;
const STATUS: u32 = 0x20_5000;
const QUEUE_SIZE: u32 = 8;

struct Driver {
    g: Guest,
    submitted: u32,
}

impl Driver {
    fn a(&mut self) -> &mut CodeAssembler {
        &mut self.g.a
    }

    fn reg_write(&mut self, offset: u32, value: u32) {
        self.a().mov(dword_ptr(MMIO + offset), value).unwrap();
    }

    /// Prints `ok` when the comparison `emit_cmp` emits leaves ZF set (equal), `bad` otherwise.
    fn check(&mut self, emit_cmp: impl FnOnce(&mut CodeAssembler), ok: &str, bad: &str) {
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

    fn desc(&mut self, i: u32, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + 16 * i;
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

    fn header(&mut self, kind: u32, sector: u32) {
        self.a().mov(dword_ptr(HDR), kind).unwrap();
        self.a().mov(dword_ptr(HDR + 4), 0u32).unwrap();
        self.a().mov(dword_ptr(HDR + 8), sector).unwrap();
        self.a().mov(dword_ptr(HDR + 12), 0u32).unwrap();
        self.a().mov(byte_ptr(STATUS), 0xffu32).unwrap();
    }

    /// Publishes descriptor 0 as a new head, kicks queue 0 and waits (bounded) for the used index to follow.
    fn submit_and_wait(&mut self) {
        let slot = self.submitted % QUEUE_SIZE;
        self.submitted += 1;
        let idx = self.submitted;
        self.a().mov(word_ptr(AVAIL + 4 + 2 * slot), 0u32).unwrap();
        self.a().mov(word_ptr(AVAIL + 2), idx).unwrap();
        self.reg_write(0x50, 0);
        self.a().mov(ecx, 50_000_000u32).unwrap();
        let mut poll = self.a().create_label();
        let mut done = self.a().create_label();
        self.a().set_label(&mut poll).unwrap();
        self.a().cmp(word_ptr(USED + 2), idx).unwrap();
        self.a().je(done).unwrap();
        self.a().dec(ecx).unwrap();
        self.a().jnz(poll).unwrap();
        self.g.print("timeout waiting for the device\n");
        self.g.power_off();
        self.a().set_label(&mut done).unwrap();
    }
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;

fn guest() -> Vec<u8> {
    let mut d = Driver {
        g: Guest::new32(),
        submitted: 0,
    };
    d.check(
        |a| a.cmp(dword_ptr(MMIO), 0x7472_6976u32).unwrap(),
        "magic ok\n",
        "magic BAD\n",
    );
    d.check(
        |a| a.cmp(dword_ptr(MMIO + 8), 2u32).unwrap(),
        "block device ok\n",
        "device id BAD\n",
    );
    d.setup_queue();

    // OUT: sector 1 := 512 bytes of 0x5a.
    d.a().mov(edi, DATA).unwrap();
    d.a().mov(ecx, 512u32).unwrap();
    d.a().mov(al, 0x5au32).unwrap();
    d.a().rep().stosb().unwrap();
    d.header(1, 1);
    d.desc(0, HDR.into(), 16, NEXT, 1);
    d.desc(1, DATA.into(), 512, NEXT, 2);
    d.desc(2, STATUS.into(), 1, WRITE, 0);
    d.submit_and_wait();
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 0u32).unwrap(),
        "write ok\n",
        "write BAD\n",
    );

    // IN: sector 0 (the host filled it with 0xab) into DATA.
    d.header(0, 0);
    d.desc(1, DATA.into(), 512, NEXT | WRITE, 2);
    d.submit_and_wait();
    d.check(
        |a| a.cmp(dword_ptr(DATA + 508), 0xabab_ababu32).unwrap(),
        "read ok\n",
        "read BAD\n",
    );

    // GET_ID: the disk's <serial>.
    d.header(8, 0);
    d.desc(1, DATA.into(), 20, NEXT | WRITE, 2);
    d.submit_and_wait();
    d.check(
        |a| {
            a.cmp(dword_ptr(DATA), u32::from_le_bytes(*b"tiny"))
                .unwrap()
        },
        "id ok\n",
        "id BAD\n",
    );

    // FLUSH: header and status only.
    d.header(4, 0);
    d.desc(0, HDR.into(), 16, NEXT, 2);
    d.submit_and_wait();
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 0u32).unwrap(),
        "flush ok\n",
        "flush BAD\n",
    );

    // WRITE_ZEROES over sector 2 (host filled it with 0xcd).
    d.header(13, 0);
    d.a().mov(dword_ptr(DATA), 2u32).unwrap(); // sector
    d.a().mov(dword_ptr(DATA + 4), 0u32).unwrap();
    d.a().mov(dword_ptr(DATA + 8), 1u32).unwrap(); // num_sectors
    d.a().mov(dword_ptr(DATA + 12), 0u32).unwrap(); // flags
    d.desc(0, HDR.into(), 16, NEXT, 1);
    d.desc(1, DATA.into(), 16, NEXT, 2);
    d.submit_and_wait();
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 0u32).unwrap(),
        "write zeroes ok\n",
        "write zeroes BAD\n",
    );

    // An unknown request type is answered with UNSUPP (2).
    d.header(99, 0);
    d.desc(0, HDR.into(), 16, NEXT, 2);
    d.submit_and_wait();
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 2u32).unwrap(),
        "unsupported ok\n",
        "unsupported BAD\n",
    );

    // A read past the end of the disk fails with IOERR (1).
    d.header(0, 1_000_000);
    d.desc(0, HDR.into(), 16, NEXT, 1);
    d.desc(1, DATA.into(), 512, NEXT | WRITE, 2);
    d.submit_and_wait();
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 1u32).unwrap(),
        "range ok\n",
        "range BAD\n",
    );

    // Garbage: a data buffer far outside guest memory. The request cannot be answered: NEEDS_RESET.
    d.header(0, 0);
    d.desc(1, 0x7_0000_0000, 512, NEXT | WRITE, 2);
    d.submit_and_wait_or_not();
    d.check(
        |a| {
            a.mov(eax, dword_ptr(MMIO + 0x70)).unwrap();
            a.and(eax, 64u32).unwrap();
            a.cmp(eax, 64u32).unwrap();
        },
        "needs reset ok\n",
        "needs reset BAD\n",
    );

    // Reset the device and set it up again: it serves requests as before.
    d.reg_write(0x70, 0);
    d.check(
        |a| a.cmp(dword_ptr(MMIO + 0x70), 0u32).unwrap(),
        "reset ok\n",
        "reset BAD\n",
    );
    d.a().mov(dword_ptr(AVAIL), 0u32).unwrap();
    d.a().mov(dword_ptr(USED), 0u32).unwrap();
    d.submitted = 0;
    d.setup_queue();
    d.header(0, 0);
    d.desc(0, HDR.into(), 16, NEXT, 1);
    d.desc(1, DATA.into(), 512, NEXT | WRITE, 2);
    d.desc(2, STATUS.into(), 1, WRITE, 0);
    d.a().mov(dword_ptr(DATA + 508), 0u32).unwrap();
    d.submit_and_wait();
    d.check(
        |a| a.cmp(dword_ptr(DATA + 508), 0xabab_ababu32).unwrap(),
        "reactivated ok\n",
        "reactivated BAD\n",
    );
    d.g.power_off();
    d.g.assemble(LOAD_ADDR)
}

impl Driver {
    /// Negotiates VERSION_1 + FLUSH + WRITE_ZEROES and sets up queue 0.
    fn setup_queue(&mut self) {
        self.reg_write(0x70, 1 | 2);
        self.reg_write(0x24, 1);
        self.reg_write(0x20, 1);
        self.reg_write(0x24, 0);
        self.reg_write(0x20, (1 << 9) | (1 << 14));
        self.reg_write(0x70, 1 | 2 | 8);
        self.check(
            |a| a.cmp(dword_ptr(MMIO + 0x70), 1 | 2 | 8u32).unwrap(),
            "features ok\n",
            "features BAD\n",
        );
        self.reg_write(0x30, 0);
        self.reg_write(0x38, QUEUE_SIZE);
        for (reg, addr) in [(0x80, DESC), (0x90, AVAIL), (0xa0, USED)] {
            self.reg_write(reg, addr);
            self.reg_write(reg + 4, 0);
        }
        self.reg_write(0x44, 1);
        self.reg_write(0x70, 1 | 2 | 8 | 4);
    }

    /// Kicks without waiting for completion (the device will not complete a request it cannot parse); waits a
    /// bounded time for the device to flag NEEDS_RESET instead.
    fn submit_and_wait_or_not(&mut self) {
        let slot = self.submitted % QUEUE_SIZE;
        self.submitted += 1;
        let idx = self.submitted;
        self.a().mov(word_ptr(AVAIL + 4 + 2 * slot), 0u32).unwrap();
        self.a().mov(word_ptr(AVAIL + 2), idx).unwrap();
        self.reg_write(0x50, 0);
        self.a().mov(ecx, 50_000_000u32).unwrap();
        let mut poll = self.a().create_label();
        let mut done = self.a().create_label();
        self.a().set_label(&mut poll).unwrap();
        self.a().test(dword_ptr(MMIO + 0x70), 64u32).unwrap();
        self.a().jnz(done).unwrap();
        self.a().dec(ecx).unwrap();
        self.a().jnz(poll).unwrap();
        self.a().set_label(&mut done).unwrap();
    }
}

#[test]
fn tiny_guest_drives_virtio_blk() {
    let dir = scratch_dir("virtio-blk");
    let mut image = vec![0u8; MIB as usize];
    image[..512].fill(0xab);
    image[1024..1536].fill(0xcd);
    let disk = write_file(&dir, "disk.raw", &image);
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&guest()));
    let log = dir.join("serial.log");
    let config = VmConfig {
        name: "blk".into(),
        uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
        memory_bytes: 64 * MIB,
        current_memory_bytes: 64 * MIB,
        vcpus: 1,
        max_vcpus: 1,
        topology: CpuTopology::flat(1),
        boot: BootConfig {
            kernel,
            initrd: None,
            cmdline: String::new(),
        },
        on_poweroff: LifecycleAction::Destroy,
        on_reboot: LifecycleAction::Destroy,
        on_crash: LifecycleAction::Destroy,
        serial: Some(SerialConfig::File {
            path: log.clone(),
            append: false,
        }),
        disks: vec![DiskConfig {
            target: "vda".into(),
            path: disk.clone(),
            format: ImageFormat::Raw,
            read_only: false,
            cache: CacheMode::Writeback,
            discard_unmap: false,
            serial: Some("tiny-serial".into()),
            backing: None,
            shareable: false,
        }],
        virtio_mmio_on_cmdline: false,
        balloon: None,
    };
    let mut vm = Vm::new(config, Instant::now()).unwrap();
    let handle = vm.handle();
    let t = std::thread::spawn(move || vm.run());
    let start = Instant::now();
    while !t.is_finished() {
        if start.elapsed() > Duration::from_secs(30) {
            handle.stop();
            panic!(
                "guest hung; console: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(t.join().unwrap().unwrap(), VmExit::PoweredOff);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "magic ok\nblock device ok\nfeatures ok\nwrite ok\nread ok\nid ok\nflush ok\nwrite zeroes ok\n\
         unsupported ok\nrange ok\nneeds reset ok\nreset ok\nfeatures ok\nreactivated ok\n"
    );
    let after = std::fs::read(&disk).unwrap();
    assert!(
        after[512..1024].iter().all(|&b| b == 0x5a),
        "the guest's write reached the image"
    );
    assert!(
        after[1024..1536].iter().all(|&b| b == 0),
        "write zeroes cleared sector 2"
    );
    assert!(after[..512].iter().all(|&b| b == 0xab));
}
