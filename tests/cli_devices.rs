//! `ironvirt` device figures from a running tiny guest that drives a virtio-blk disk and a virtio-balloon:
//! `domblkstat` counts its I/O, `setmem --live` reaches the guest's balloon, `dommemstat` shows its statistics.

mod cli;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cli::*;
use iced_x86::code_asm::*;
use support::virtio::*;
use support::*;

const HDR: u32 = 0x28_0000;
const DATA: u32 = 0x28_1000;
const STATUS: u32 = 0x28_2000;
const STATS_BUF: u32 = 0x28_3000;
const MIB: u64 = 1 << 20;

/// Reads sector 0 of vda (slot 0), reports balloon statistics (slot 1), then waits for the host's target.
fn guest() -> Vec<u8> {
    let mut disk = Driver::new(1);
    disk.setup(0);
    disk.a().mov(dword_ptr(HDR), 0u32).unwrap();
    disk.a().mov(dword_ptr(HDR + 8), 0u32).unwrap();
    disk.desc(0, 0, HDR.into(), 16, NEXT, 1);
    disk.desc(0, 1, DATA.into(), 512, NEXT | WRITE, 2);
    disk.desc(0, 2, STATUS.into(), 1, WRITE, 0);
    disk.submit_and_wait(0);
    disk.g.print("read done\n");

    let mut b = Driver::for_slot(disk.g, 3, 1);
    b.setup(1 << 1); // VIRTIO_BALLOON_F_STATS_VQ
    for (i, (tag, val)) in [(4u16, MIB), (5u16, 64 * MIB)].iter().enumerate() {
        let at = STATS_BUF + 10 * i as u32;
        b.a().mov(word_ptr(at), u32::from(*tag)).unwrap();
        b.a().mov(dword_ptr(at + 2), *val as u32).unwrap();
        b.a().mov(dword_ptr(at + 6), (*val >> 32) as u32).unwrap();
    }
    b.desc(2, 0, STATS_BUF.into(), 20, 0, 0);
    b.publish(2);
    b.g.print("stats sent\n");
    let target = b.base + 0x100;
    let mut poll = b.a().create_label();
    b.a().set_label(&mut poll).unwrap();
    b.a().pause().unwrap();
    b.a().cmp(dword_ptr(target), 0u32).unwrap();
    b.a().je(poll).unwrap();
    b.g.print("target seen\n");
    b.g.halt_forever();
    b.g.assemble(LOAD_ADDR)
}

fn xml(name: &str, kernel: &Path, disk: &Path, console: &Path) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>{}</kernel></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='{}'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
",
        kernel.display(),
        disk.display(),
        console.display()
    )
}

fn wait_console(path: &Path, what: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(what)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no '{what}' on the console"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn disk_and_balloon_figures_from_the_running_vm() {
    let h = Host::new("cli-devices");
    let kernel = write_file(&h.dir, "guest.elf", &pvh_elf(&guest()));
    let disk = write_file(&h.dir, "disk.raw", &vec![0u8; MIB as usize]);
    let console = h.dir.join("console.log");
    let def = write_file(
        &h.dir,
        "dev.xml",
        xml("dev", &kernel, &disk, &console).as_bytes(),
    );
    h.run(&["define", def.to_str().unwrap()]).ok();
    h.run(&["start", "dev"]).ok();
    wait_console(&console, "stats sent\n");

    assert_eq!(
        h.run(&["domblkstat", "dev", "vda"]).ok().stdout,
        "vda rd_req 1\nvda rd_bytes 512\nvda wr_req 0\nvda wr_bytes 0\nvda flush_operations 0\n\
         vda rd_total_times 0\nvda wr_total_times 0\nvda flush_total_times 0\n\n"
    );
    let r = h.run(&["domblkstat", "dev", "vdz"]).fails();
    assert!(r.stderr.contains("invalid path: vdz"), "{}", r.stderr);

    h.run(&["setmem", "dev", "48M", "--live"]).ok();
    wait_console(&console, "target seen\n");
    let mem = h.run(&["dommemstat", "dev"]).ok().stdout;
    assert!(
        mem.starts_with("unused 1024\navailable 65536\nactual 65536\nlast_update "),
        "{mem}"
    );
    assert!(mem.contains("\nrss "), "{mem}");
    let stats = h
        .run(&["domstats", "--block", "--balloon", "dev"])
        .ok()
        .stdout;
    for line in [
        "  balloon.current=65536\n",
        "  balloon.maximum=65536\n",
        "  balloon.unused=1024\n",
        "  block.count=1\n",
        "  block.0.name=vda\n",
        "  block.0.rd.reqs=1\n",
        "  block.0.rd.bytes=512\n",
    ] {
        assert!(stats.contains(line), "missing {line:?} in\n{stats}");
    }
    h.run(&["destroy", "dev"]).ok();

    // domblkinfo: a qcow2 image's capacity is its virtual size, its physical size the file's.
    let q = h.dir.join("disk.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&q)
        .arg("64M")
        .status()
        .unwrap();
    assert!(st.success());
    let qxml = xml("qdev", &kernel, &q, &console).replace("type='raw'", "type='qcow2'");
    let def = write_file(&h.dir, "qdev.xml", qxml.as_bytes());
    h.run(&["define", def.to_str().unwrap()]).ok();
    let info = h.run(&["domblkinfo", "qdev", "vda"]).ok().stdout;
    let physical = std::fs::metadata(&q).unwrap().len();
    assert!(
        info.starts_with("Capacity:       67108864\nAllocation:     "),
        "{info}"
    );
    assert!(
        info.contains(&format!("\nPhysical:       {physical}\n")),
        "{info}"
    );
}
