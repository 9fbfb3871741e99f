//! A tiny guest that drives a virtio-blk device through its virtio-mmio registers and queue directly, on this
//! machine's `/dev/kvm`: feature negotiation, OUT/IN/GET_ID/FLUSH/WRITE_ZEROES/unknown requests, and a
//! malformed chain that must put the device in NEEDS_RESET without harming the VMM.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use ironvirt_vmm::{
    BootConfig, CacheMode, CpuTopology, DiskConfig, ImageFormat, LifecycleAction, SerialConfig, Vm,
    VmConfig, VmExit,
};
use support::virtio::*;
use support::*;

const MIB: u64 = 1 << 20;
const HDR: u32 = 0x28_0000;
const DATA: u32 = 0x28_1000;
const STATUS: u32 = 0x28_2000;
const Q: u32 = 0;

fn header(d: &mut Driver, kind: u32, sector: u32) {
    d.a().mov(dword_ptr(HDR), kind).unwrap();
    d.a().mov(dword_ptr(HDR + 4), 0u32).unwrap();
    d.a().mov(dword_ptr(HDR + 8), sector).unwrap();
    d.a().mov(dword_ptr(HDR + 12), 0u32).unwrap();
    d.a().mov(byte_ptr(STATUS), 0xffu32).unwrap();
}

fn guest() -> Vec<u8> {
    let mut d = Driver::new(1);
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
    d.setup((1 << 9) | (1 << 14));

    // OUT: sector 1 := 512 bytes of 0x5a.
    d.a().mov(edi, DATA).unwrap();
    d.a().mov(ecx, 512u32).unwrap();
    d.a().mov(al, 0x5au32).unwrap();
    d.a().rep().stosb().unwrap();
    header(&mut d, 1, 1);
    d.desc(Q, 0, HDR.into(), 16, NEXT, 1);
    d.desc(Q, 1, DATA.into(), 512, NEXT, 2);
    d.desc(Q, 2, STATUS.into(), 1, WRITE, 0);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 0u32).unwrap(),
        "write ok\n",
        "write BAD\n",
    );

    // IN: sector 0 (the host filled it with 0xab) into DATA.
    header(&mut d, 0, 0);
    d.desc(Q, 1, DATA.into(), 512, NEXT | WRITE, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(dword_ptr(DATA + 508), 0xabab_ababu32).unwrap(),
        "read ok\n",
        "read BAD\n",
    );

    // GET_ID: the disk's <serial>.
    header(&mut d, 8, 0);
    d.desc(Q, 1, DATA.into(), 20, NEXT | WRITE, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| {
            a.cmp(dword_ptr(DATA), u32::from_le_bytes(*b"tiny"))
                .unwrap()
        },
        "id ok\n",
        "id BAD\n",
    );

    // FLUSH: header and status only.
    header(&mut d, 4, 0);
    d.desc(Q, 0, HDR.into(), 16, NEXT, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 0u32).unwrap(),
        "flush ok\n",
        "flush BAD\n",
    );

    // WRITE_ZEROES over sector 2 (host filled it with 0xcd).
    header(&mut d, 13, 0);
    d.a().mov(dword_ptr(DATA), 2u32).unwrap(); // sector
    d.a().mov(dword_ptr(DATA + 4), 0u32).unwrap();
    d.a().mov(dword_ptr(DATA + 8), 1u32).unwrap(); // num_sectors
    d.a().mov(dword_ptr(DATA + 12), 0u32).unwrap(); // flags
    d.desc(Q, 0, HDR.into(), 16, NEXT, 1);
    d.desc(Q, 1, DATA.into(), 16, NEXT, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 0u32).unwrap(),
        "write zeroes ok\n",
        "write zeroes BAD\n",
    );

    // An unknown request type is answered with UNSUPP (2).
    header(&mut d, 99, 0);
    d.desc(Q, 0, HDR.into(), 16, NEXT, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 2u32).unwrap(),
        "unsupported ok\n",
        "unsupported BAD\n",
    );

    // A read past the end of the disk fails with IOERR (1).
    header(&mut d, 0, 1_000_000);
    d.desc(Q, 0, HDR.into(), 16, NEXT, 1);
    d.desc(Q, 1, DATA.into(), 512, NEXT | WRITE, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 1u32).unwrap(),
        "range ok\n",
        "range BAD\n",
    );

    // Garbage: a data buffer far outside guest memory. The request cannot be answered: NEEDS_RESET.
    header(&mut d, 0, 0);
    d.desc(Q, 1, 0x7_0000_0000, 512, NEXT | WRITE, 2);
    d.submit_expecting_reset(Q);
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
    d.restart_queues();
    d.setup((1 << 9) | (1 << 14));
    header(&mut d, 0, 0);
    d.desc(Q, 0, HDR.into(), 16, NEXT, 1);
    d.desc(Q, 1, DATA.into(), 512, NEXT | WRITE, 2);
    d.desc(Q, 2, STATUS.into(), 1, WRITE, 0);
    d.a().mov(dword_ptr(DATA + 508), 0u32).unwrap();
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(dword_ptr(DATA + 508), 0xabab_ababu32).unwrap(),
        "reactivated ok\n",
        "reactivated BAD\n",
    );
    d.g.power_off();
    d.g.assemble(LOAD_ADDR)
}

fn blk_config(
    kernel: std::path::PathBuf,
    log: std::path::PathBuf,
    disk: std::path::PathBuf,
) -> VmConfig {
    VmConfig {
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
            path: log,
            append: false,
        }),
        disks: vec![DiskConfig {
            target: "vda".into(),
            path: disk,
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
        interfaces: Vec::new(),
        pit: false,
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
    let config = blk_config(kernel, log.clone(), disk.clone());
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

/// A read-only qcow2 disk: the device offers VIRTIO_BLK_F_RO, serves reads from the image, refuses writes.
fn read_only_guest() -> Vec<u8> {
    let mut d = Driver::new(1);
    d.check(
        |a| {
            a.mov(dword_ptr(MMIO + 0x14), 0u32).unwrap();
            a.mov(eax, dword_ptr(MMIO + 0x10)).unwrap();
            a.and(eax, 1u32 << 5).unwrap();
            a.cmp(eax, 1u32 << 5).unwrap();
        },
        "ro offered\n",
        "ro missing\n",
    );
    d.setup(1 << 5);
    header(&mut d, 0, 0);
    d.desc(Q, 0, HDR.into(), 16, NEXT, 1);
    d.desc(Q, 1, DATA.into(), 512, NEXT | WRITE, 2);
    d.desc(Q, 2, STATUS.into(), 1, WRITE, 0);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(dword_ptr(DATA), 0x5151_5151u32).unwrap(),
        "qcow2 read ok\n",
        "qcow2 read BAD\n",
    );
    header(&mut d, 1, 0);
    d.desc(Q, 1, DATA.into(), 512, NEXT, 2);
    d.submit_and_wait(Q);
    d.check(
        |a| a.cmp(byte_ptr(STATUS), 1u32).unwrap(),
        "write refused\n",
        "write ACCEPTED\n",
    );
    d.g.power_off();
    d.g.assemble(LOAD_ADDR)
}

#[test]
fn read_only_qcow2_disk() {
    let dir = scratch_dir("virtio-blk-ro");
    let raw = write_file(&dir, "content.raw", &[0x51u8; MIB as usize]);
    let image = dir.join("disk.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(&raw)
        .arg(&image)
        .status()
        .unwrap();
    assert!(st.success());
    let before = std::fs::read(&image).unwrap();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&read_only_guest()));
    let log = dir.join("serial.log");
    let mut config = blk_config(kernel, log.clone(), image.clone());
    config.disks[0].format = ImageFormat::Qcow2;
    config.disks[0].read_only = true;
    let vm = Vm::new(config, Instant::now()).unwrap();
    let handle = vm.handle();
    let mut vm = vm;
    let t = std::thread::spawn(move || vm.run());
    let start = Instant::now();
    while !t.is_finished() {
        if start.elapsed() > Duration::from_secs(30) {
            handle.stop();
            panic!("guest hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(t.join().unwrap().unwrap(), VmExit::PoweredOff);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "ro offered\nfeatures ok\nqcow2 read ok\nwrite refused\n"
    );
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "a read-only image is never written"
    );
}
