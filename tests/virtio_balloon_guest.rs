//! A tiny guest that drives virtio-balloon directly on this machine's `/dev/kvm`: it follows the host's
//! `set_memory` target, inflates a page (which must come back zeroed: the host really released it), and
//! reports memory statistics that `memory_stats` returns.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use ironvirt_vmm::{
    BalloonConfig, BootConfig, CpuTopology, LifecycleAction, SerialConfig, Vm, VmConfig, VmExit,
};
use support::virtio::*;
use support::*;

const MIB: u64 = 1 << 20;
const MEMORY: u64 = 64 * MIB;
const TARGET: u64 = 48 * MIB;
const PAGE: u32 = 0x30_0000;
const PFN_LIST: u32 = 0x28_0000;
const STATS_BUF: u32 = 0x28_1000;
const INFLATE: u32 = 0;
const STATS: u32 = 2;
const F_STATS_VQ: u32 = 1 << 1;
const MEMFREE: u16 = 4;
const MEMTOT: u16 = 5;

fn guest() -> Vec<u8> {
    let mut d = Driver::new(3);
    d.check(
        |a| a.cmp(dword_ptr(MMIO + 8), 5u32).unwrap(),
        "balloon device ok\n",
        "device id BAD\n",
    );
    d.setup(F_STATS_VQ);
    d.g.print("ready\n");
    // Wait (bounded) for the host's target: (64 - 48) MiB in 4 KiB pages.
    let want = ((MEMORY - TARGET) / 4096) as u32;
    d.a().mov(ecx, 400_000_000u32).unwrap();
    let mut poll = d.a().create_label();
    let mut seen = d.a().create_label();
    d.a().set_label(&mut poll).unwrap();
    d.a().cmp(dword_ptr(MMIO + 0x100), want).unwrap();
    d.a().je(seen).unwrap();
    d.a().pause().unwrap();
    d.a().dec(ecx).unwrap();
    d.a().jnz(poll).unwrap();
    d.a().set_label(&mut seen).unwrap();
    d.check(
        |a| a.cmp(dword_ptr(MMIO + 0x100), want).unwrap(),
        "target seen\n",
        "target BAD\n",
    );

    // Dirty a page, give it to the balloon, and look at it again.
    d.a().mov(edi, PAGE).unwrap();
    d.a().mov(ecx, 1024u32).unwrap();
    d.a().mov(eax, 0x7777_7777u32).unwrap();
    d.a().rep().stosd().unwrap();
    d.a().mov(dword_ptr(PFN_LIST), PAGE >> 12).unwrap();
    d.desc(INFLATE, 0, PFN_LIST.into(), 4, 0, 0);
    d.submit_and_wait(INFLATE);
    d.a().mov(dword_ptr(MMIO + 0x104), 1u32).unwrap(); // actual: one page in the balloon
    d.check(
        |a| a.cmp(dword_ptr(PAGE + 2048), 0u32).unwrap(),
        "page released\n",
        "page still there\n",
    );

    // Statistics: MEMFREE and MEMTOT, packed { le16 tag; le64 val; }.
    let entries: [(u16, u64); 2] = [(MEMFREE, 0x0123_4567_89ab), (MEMTOT, MEMORY)];
    for (i, (tag, val)) in entries.iter().enumerate() {
        let at = STATS_BUF + 10 * i as u32;
        d.a().mov(word_ptr(at), u32::from(*tag)).unwrap();
        d.a().mov(dword_ptr(at + 2), *val as u32).unwrap();
        d.a().mov(dword_ptr(at + 6), (*val >> 32) as u32).unwrap();
    }
    d.desc(STATS, 0, STATS_BUF.into(), 20, 0, 0);
    d.publish(STATS);
    d.g.print("stats sent\n");
    d.g.halt_forever();
    d.g.assemble(LOAD_ADDR)
}

fn config(kernel: &Path, log: &Path) -> VmConfig {
    VmConfig {
        name: "balloon".into(),
        uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
        memory_bytes: MEMORY,
        current_memory_bytes: MEMORY,
        vcpus: 1,
        max_vcpus: 1,
        topology: CpuTopology::flat(1),
        boot: BootConfig {
            kernel: kernel.into(),
            initrd: None,
            cmdline: String::new(),
        },
        on_poweroff: LifecycleAction::Destroy,
        on_reboot: LifecycleAction::Destroy,
        on_crash: LifecycleAction::Destroy,
        serial: Some(SerialConfig::File {
            path: log.into(),
            append: false,
        }),
        disks: Vec::new(),
        virtio_mmio_on_cmdline: false,
        balloon: Some(BalloonConfig {
            stats_period: None,
            deflate_on_oom: false,
        }),
        interfaces: Vec::new(),
        pit: false,
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn tiny_guest_drives_virtio_balloon() {
    let dir = scratch_dir("virtio-balloon");
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&guest()));
    let log = dir.join("serial.log");
    let mut vm = Vm::new(config(&kernel, &log), Instant::now()).unwrap();
    let handle = vm.handle();
    let runner = std::thread::spawn(move || vm.run());
    let console = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the guest's driver", Duration::from_secs(10), || {
        console().contains("ready\n")
    });
    handle.set_memory(TARGET).unwrap();
    wait_for("the statistics", Duration::from_secs(10), || {
        console().contains("stats sent\n")
    });
    let mut stats = None;
    wait_for("the statistics to arrive", Duration::from_secs(10), || {
        let (actual, s) = handle.memory_stats().unwrap();
        let ready = s.get(MEMTOT).is_some();
        stats = Some((actual, s));
        ready
    });
    let (actual, stats) = stats.unwrap();
    assert_eq!(actual, MEMORY - 4096, "one page is in the balloon");
    assert_eq!(stats.get(MEMFREE), Some(0x0123_4567_89ab));
    assert_eq!(stats.get(MEMTOT), Some(MEMORY));
    assert!(stats.last_update > 0);
    assert!(
        handle.set_memory(MEMORY + 1).is_err(),
        "above the maximum is refused"
    );
    handle.stop();
    assert_eq!(runner.join().unwrap().unwrap(), VmExit::Stopped);
    assert_eq!(
        console(),
        "balloon device ok\nfeatures ok\nready\ntarget seen\npage released\nstats sent\n"
    );
}
