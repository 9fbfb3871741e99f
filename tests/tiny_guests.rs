//! Integration tests of the VMM with tiny purpose-built guests on this machine's `/dev/kvm`: serial output,
//! port and MMIO dispatch, several vCPUs, the reset paths, power-off, and broken kernel images.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use ironvirt_vmm::{
    BootConfig, BusDevice, CpuTopology, LifecycleAction, SerialConfig, Vm, VmConfig, VmExit,
};
use support::*;

const MIB: u64 = 1 << 20;

fn config(kernel: PathBuf, serial_log: PathBuf, vcpus: u32) -> VmConfig {
    VmConfig {
        name: "tiny".into(),
        uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
        memory_bytes: 64 * MIB,
        current_memory_bytes: 64 * MIB,
        vcpus,
        max_vcpus: vcpus,
        topology: CpuTopology::flat(vcpus),
        boot: BootConfig {
            kernel,
            initrd: None,
            cmdline: "console=ttyS0".into(),
        },
        on_poweroff: LifecycleAction::Destroy,
        on_reboot: LifecycleAction::Restart,
        on_crash: LifecycleAction::Destroy,
        disks: Vec::new(),
        virtio_mmio_on_cmdline: false,
        balloon: None,
        interfaces: Vec::new(),
        pit: false,
        serial: Some(SerialConfig::File {
            path: serial_log,
            append: false,
        }),
    }
}

/// Runs `vm` on another thread and stops it if it has not finished within `limit`.
fn run_with_limit(mut vm: Vm, limit: Duration) -> VmExit {
    let handle = vm.handle();
    let t = std::thread::spawn(move || vm.run());
    let start = Instant::now();
    while !t.is_finished() {
        if start.elapsed() > limit {
            handle.stop();
            let _ = t.join();
            panic!("the guest did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    t.join().unwrap().expect("the VM failed to run")
}

fn read(p: &PathBuf) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

#[test]
fn pvh_guest_prints_to_serial_and_powers_off() {
    let dir = scratch_dir("pvh-serial");
    let mut g = Guest::new32();
    // The PVH ABI: ebx points at hvm_start_info, whose first field is its magic.
    let mut bad = g.a.create_label();
    let mut done = g.a.create_label();
    g.a.cmp(dword_ptr(ebx), 0x336e_c578).unwrap();
    g.a.jne(bad).unwrap();
    g.print("start_info ok\n");
    g.a.jmp(done).unwrap();
    g.a.set_label(&mut bad).unwrap();
    g.print("start_info BAD\n");
    g.a.set_label(&mut done).unwrap();
    g.print("hello from the tiny guest\n");
    g.power_off();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&g.assemble(LOAD_ADDR)));
    let log = dir.join("serial.log");
    let vm = Vm::new(config(kernel, log.clone(), 1), Instant::now()).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(20)),
        VmExit::PoweredOff
    );
    assert_eq!(read(&log), "start_info ok\nhello from the tiny guest\n");
}

#[test]
fn bzimage_guest_enters_64bit_with_boot_params() {
    let dir = scratch_dir("bzimage");
    let mut g = Guest::new64();
    // rsi points at boot_params, whose setup header carries "HdrS" at 0x202 and our command line pointer.
    let mut bad = g.a.create_label();
    let mut done = g.a.create_label();
    g.a.cmp(dword_ptr(rsi + 0x202), 0x5372_6448).unwrap();
    g.a.jne(bad).unwrap();
    g.a.mov(eax, dword_ptr(rsi + 0x228)).unwrap(); // cmd_line_ptr
    g.a.cmp(dword_ptr(rax), 0x736e_6f63).unwrap(); // "cons"
    g.a.jne(bad).unwrap();
    g.print("boot_params ok\n");
    g.a.jmp(done).unwrap();
    g.a.set_label(&mut bad).unwrap();
    g.print("boot_params BAD\n");
    g.a.set_label(&mut done).unwrap();
    g.print("hello from 64-bit mode\n");
    g.power_off();
    let code = g.assemble(LOAD_ADDR + 0x200);
    let kernel = write_file(&dir, "bzImage", &bzimage(&code));
    let log = dir.join("serial.log");
    let vm = Vm::new(config(kernel, log.clone(), 1), Instant::now()).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(20)),
        VmExit::PoweredOff
    );
    assert_eq!(read(&log), "boot_params ok\nhello from 64-bit mode\n");
}

/// Records every access; reads return a fixed pattern.
#[derive(Default)]
struct Recorder {
    accesses: Vec<(char, u64, Vec<u8>)>,
}

impl BusDevice for Recorder {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        self.accesses.push(('r', offset, data.to_vec()));
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.accesses.push(('w', offset, data.to_vec()));
    }
}

#[test]
fn port_and_mmio_exits_reach_their_devices() {
    const MMIO_BASE: u64 = 0xd000_0000;
    const PIO_BASE: u16 = 0x510;
    let dir = scratch_dir("dispatch");
    let mut g = Guest::new32();
    g.a.mov(dword_ptr(MMIO_BASE as u32 + 8), 0xdead_beef_u32)
        .unwrap();
    g.a.mov(eax, dword_ptr(MMIO_BASE as u32 + 4)).unwrap();
    g.a.mov(dx, PIO_BASE as u32 + 2).unwrap();
    g.a.out(dx, eax).unwrap(); // echo what the MMIO read returned to the port device
    g.a.in_(al, dx).unwrap();
    g.a.mov(dx, 0x5ff).unwrap(); // nobody's port: reads all ones
    g.a.in_(al, dx).unwrap();
    g.a.mov(ebx, eax).unwrap();
    g.a.mov(eax, dword_ptr(0xd100_0000u32)).unwrap(); // nobody's MMIO: all ones
    g.a.mov(dx, PIO_BASE as u32).unwrap();
    g.a.out(dx, al).unwrap();
    g.a.mov(eax, ebx).unwrap();
    g.a.out(dx, al).unwrap();
    g.power_off();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&g.assemble(LOAD_ADDR)));
    let mut vm = Vm::new(config(kernel, dir.join("serial.log"), 1), Instant::now()).unwrap();
    let mmio = Arc::new(Mutex::new(Recorder::default()));
    let pio = Arc::new(Mutex::new(Recorder::default()));
    vm.add_mmio_device(MMIO_BASE, 0x1000, mmio.clone());
    vm.add_pio_device(PIO_BASE, 4, pio.clone());
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(20)),
        VmExit::PoweredOff
    );
    assert_eq!(
        mmio.lock().unwrap().accesses,
        vec![
            ('w', 8, vec![0xef, 0xbe, 0xad, 0xde]),
            ('r', 4, vec![0xa0, 0xa1, 0xa2, 0xa3])
        ]
    );
    assert_eq!(
        pio.lock().unwrap().accesses,
        vec![
            ('w', 2, vec![0xa0, 0xa1, 0xa2, 0xa3]),
            ('r', 2, vec![0xa0]),
            ('w', 0, vec![0xff]),
            ('w', 0, vec![0xff]),
        ]
    );
}

#[test]
fn application_processors_start_on_sipi() {
    const VCPUS: u32 = 4;
    const AP_PORT: u16 = 0x520;
    const COUNTER: u32 = 0x5000;
    const TRAMPOLINE: u32 = 0x10000; // SIPI vector 0x10
    let dir = scratch_dir("smp");

    // Real-mode AP code at 0x1000:0000: count ourselves, report our initial APIC ID (from CPUID), halt.
    let mut ap = CodeAssembler::new(16).unwrap();
    ap.xor(ax, ax).unwrap();
    ap.mov(ds, ax).unwrap();
    ap.lock().inc(word_ptr(COUNTER)).unwrap();
    ap.mov(eax, 1u32).unwrap();
    ap.cpuid().unwrap();
    ap.shr(ebx, 24).unwrap();
    ap.mov(eax, ebx).unwrap();
    ap.mov(dx, AP_PORT as u32).unwrap();
    ap.out(dx, al).unwrap();
    let mut park = ap.create_label();
    ap.set_label(&mut park).unwrap();
    ap.cli().unwrap();
    ap.hlt().unwrap();
    ap.jmp(park).unwrap();
    let ap_code = ap.assemble(0).unwrap();

    let mut g = Guest::new32();
    // The image carries the trampoline at a fixed offset; copy it below 1 MiB, where a SIPI can start it.
    const TRAMPOLINE_SRC: u64 = LOAD_ADDR + 0x1000;
    g.a.mov(esi, TRAMPOLINE_SRC as u32).unwrap();
    g.a.mov(edi, TRAMPOLINE).unwrap();
    g.a.mov(ecx, ap_code.len() as u32).unwrap();
    g.a.cld().unwrap();
    g.a.rep().movsb().unwrap();
    g.a.mov(dword_ptr(COUNTER), 0u32).unwrap();
    // Software-enable the local APIC, then INIT and two SIPIs to all but self.
    g.a.mov(dword_ptr(0xfee0_00f0u32), 0x1ffu32).unwrap();
    g.a.mov(dword_ptr(0xfee0_0310u32), 0u32).unwrap();
    g.a.mov(dword_ptr(0xfee0_0300u32), 0x000c_4500u32).unwrap();
    for _ in 0..2 {
        g.a.mov(ecx, 100_000u32).unwrap();
        let mut delay = g.a.create_label();
        g.a.set_label(&mut delay).unwrap();
        g.a.dec(ecx).unwrap();
        g.a.jnz(delay).unwrap();
        g.a.mov(
            dword_ptr(0xfee0_0300u32),
            0x000c_4600u32 | (TRAMPOLINE >> 12),
        )
        .unwrap();
    }
    // Wait (bounded) for every AP to check in.
    g.a.mov(ecx, 200_000_000u32).unwrap();
    let mut wait = g.a.create_label();
    let mut all_in = g.a.create_label();
    g.a.set_label(&mut wait).unwrap();
    g.a.cmp(word_ptr(COUNTER), VCPUS - 1).unwrap();
    g.a.je(all_in).unwrap();
    g.a.pause().unwrap();
    g.a.dec(ecx).unwrap();
    g.a.jnz(wait).unwrap();
    g.print("timed out waiting for APs\n");
    g.power_off();
    g.a.set_label(&mut all_in).unwrap();
    g.print("all APs up\n");
    g.power_off();
    let mut image = g.assemble(LOAD_ADDR);
    assert!(image.len() <= (TRAMPOLINE_SRC - LOAD_ADDR) as usize);
    image.resize((TRAMPOLINE_SRC - LOAD_ADDR) as usize, 0xf4);
    image.extend_from_slice(&ap_code);

    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&image));
    let log = dir.join("serial.log");
    let mut vm = Vm::new(config(kernel, log.clone(), VCPUS), Instant::now()).unwrap();
    let aps = Arc::new(Mutex::new(Recorder::default()));
    vm.add_pio_device(AP_PORT, 1, aps.clone());
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(30)),
        VmExit::PoweredOff
    );
    assert_eq!(read(&log), "all APs up\n");
    let mut ids: Vec<u8> = aps
        .lock()
        .unwrap()
        .accesses
        .iter()
        .map(|(_, _, d)| d[0])
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "each AP reports its own APIC ID through CPUID"
    );
}

/// A guest that keeps a boot counter in CMOS RAM (which survives resets) and leaves each boot a different way:
/// i8042 reset, triple fault, ACPI reset register, then power-off.
fn rebooting_guest() -> Vec<u8> {
    let mut g = Guest::new32();
    let mut labels: Vec<CodeLabel> = (0..4).map(|_| g.a.create_label()).collect();
    g.outb(0x70, 0x40);
    g.a.mov(dx, 0x71u32).unwrap();
    g.a.in_(al, dx).unwrap();
    g.a.mov(bl, al).unwrap();
    g.a.inc(al).unwrap();
    g.a.out(dx, al).unwrap(); // count this boot
    for (i, l) in labels.iter().enumerate() {
        g.a.cmp(bl, i as u32).unwrap();
        g.a.je(*l).unwrap();
    }
    g.print("unexpected boot\n");
    g.power_off();
    g.a.set_label(&mut labels[0]).unwrap();
    g.print("boot 1: i8042 reset\n");
    g.outb(0x64, 0xfe);
    g.halt_forever();
    g.a.set_label(&mut labels[1]).unwrap();
    g.print("boot 2: triple fault\n");
    g.a.ud2().unwrap();
    g.a.set_label(&mut labels[2]).unwrap();
    g.print("boot 3: ACPI reset\n");
    g.outb(ACPI_RESET, 1);
    g.halt_forever();
    g.a.set_label(&mut labels[3]).unwrap();
    g.print("boot 4: power off\n");
    g.power_off();
    pvh_elf(&g.assemble(LOAD_ADDR))
}

#[test]
fn reset_paths_reboot_with_on_reboot_restart() {
    let dir = scratch_dir("reset-restart");
    let kernel = write_file(&dir, "guest.elf", &rebooting_guest());
    let log = dir.join("serial.log");
    let vm = Vm::new(config(kernel, log.clone(), 1), Instant::now()).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(30)),
        VmExit::PoweredOff
    );
    assert_eq!(
        read(&log),
        "boot 1: i8042 reset\nboot 2: triple fault\nboot 3: ACPI reset\nboot 4: power off\n"
    );
}

#[test]
fn reset_with_on_reboot_destroy_ends_the_vm() {
    let dir = scratch_dir("reset-destroy");
    let kernel = write_file(&dir, "guest.elf", &rebooting_guest());
    let log = dir.join("serial.log");
    let mut cfg = config(kernel, log.clone(), 1);
    cfg.on_reboot = LifecycleAction::Destroy;
    let vm = Vm::new(cfg, Instant::now()).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(20)),
        VmExit::RebootDestroyed
    );
    assert_eq!(read(&log), "boot 1: i8042 reset\n");
}

// ---- the ironvirt-vmm binary, driven by domain XML ----

fn domain_xml(name: &str, kernel: &std::path::Path, serial: &str, extra: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>{name}</name>\n  <memory unit='MiB'>32</memory>\n  <vcpu>1</vcpu>\n  \
         <os>\n    <type arch='x86_64'>hvm</type>\n    <kernel>{}</kernel>\n    <cmdline>console=ttyS0</cmdline>\n  \
         </os>\n  {extra}\n  <devices>\n    {serial}\n  </devices>\n</domain>\n",
        kernel.display()
    )
}

fn vmm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ironvirt-vmm"))
}

#[test]
fn vmm_binary_runs_a_domain_and_exits_zero_on_poweroff() {
    let dir = scratch_dir("vmm-binary");
    let mut g = Guest::new32();
    g.print("domain xml guest\n");
    g.outb(0x3f0, 123); // boot-timer port
    g.power_off();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&g.assemble(LOAD_ADDR)));
    let log = dir.join("console.log");
    let xml = domain_xml(
        "vmmbin",
        &kernel,
        &format!(
            "<serial type='file'><source path='{}'/></serial>",
            log.display()
        ),
        "",
    );
    let domain = write_file(&dir, "domain.xml", xml.as_bytes());
    let out = vmm().arg("--domain").arg(&domain).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}, stderr: {stderr}",
        out.status
    );
    assert_eq!(read(&log), "domain xml guest\n");
    assert!(
        stderr.contains("guest boot completed"),
        "boot timer line missing: {stderr}"
    );

    // The same guest with its console on stdio.
    let xml = domain_xml("vmmstdio", &kernel, "<serial type='stdio'/>", "");
    let domain = write_file(&dir, "stdio.xml", xml.as_bytes());
    let out = vmm().arg("--domain").arg(&domain).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "domain xml guest\n");
}

#[test]
fn vmm_binary_reports_broken_kernels_cleanly() {
    let dir = scratch_dir("vmm-bad-kernel");
    let mut g = Guest::new32();
    g.print("x");
    g.power_off();
    let elf = pvh_elf(&g.assemble(LOAD_ADDR));
    let bz = bzimage(&[0xf4]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "neither an ELF vmlinux nor a bzImage"),
        (
            "garbage",
            vec![0x5a; 4096],
            "neither an ELF vmlinux nor a bzImage",
        ),
        ("truncated.elf", elf[..100].to_vec(), "could not be loaded"),
        (
            "truncated-bzImage",
            bz[..0x300].to_vec(),
            "could not be loaded",
        ),
    ];
    for (name, bytes, expected) in cases {
        let kernel = write_file(&dir, name, &bytes);
        let xml = domain_xml("bad", &kernel, "<serial type='stdio'/>", "");
        let domain = write_file(&dir, &format!("{name}.xml"), xml.as_bytes());
        let out = vmm().arg("--domain").arg(&domain).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(name),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let missing = dir.join("no-such-kernel");
    let xml = domain_xml("missing", &missing, "<serial type='stdio'/>", "");
    let domain = write_file(&dir, "missing.xml", xml.as_bytes());
    let out = vmm().arg("--domain").arg(&domain).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read kernel image") && stderr.contains("no-such-kernel"),
        "{stderr}"
    );
}

#[test]
fn vmm_binary_rejects_bad_domain_xml() {
    let dir = scratch_dir("vmm-bad-xml");
    let malformed = write_file(
        &dir,
        "malformed.xml",
        b"<domain type='kvm'>\n  <name>x</name>\n  <memory>1</vcpu>\n</domain>\n",
    );
    let out = vmm().arg("--domain").arg(&malformed).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("line 3"), "no line number: {stderr}");

    let kernel = write_file(&dir, "k", b"");
    let xml = domain_xml(
        "unsup",
        &kernel,
        "<serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/></serial>",
        "",
    );
    let unsupported = write_file(&dir, "unsupported.xml", xml.as_bytes());
    let out = vmm().arg("--domain").arg(&unsupported).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unsupported configuration: "), "{stderr}");
}

fn echo_guest(dir: &std::path::Path) -> PathBuf {
    let mut g = Guest::new32();
    g.print("ready\n");
    g.echo_line();
    g.print("bye\n");
    g.power_off();
    write_file(dir, "echo.elf", &pvh_elf(&g.assemble(LOAD_ADDR)))
}

#[test]
fn serial_input_over_a_unix_socket() {
    use std::io::{BufRead, BufReader, Write};
    let dir = scratch_dir("serial-unix");
    let sock = dir.join("console.sock");
    let mut cfg = config(echo_guest(&dir), dir.join("unused"), 1);
    cfg.serial = Some(SerialConfig::Unix {
        path: sock.clone(),
        listen: true,
    });
    let vm = Vm::new(cfg, Instant::now()).unwrap();
    // Output before a client connects is dropped, as QEMU's server sockets do; connect first.
    let client = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let runner = std::thread::spawn(move || run_with_limit(vm, Duration::from_secs(30)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (&client).write_all(b"typed over the socket\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "typed over the socket\n");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "bye\n");
    assert_eq!(runner.join().unwrap(), VmExit::PoweredOff);
}

#[test]
fn serial_input_over_a_pty() {
    use std::io::{Read, Write};
    let dir = scratch_dir("serial-pty");
    let mut cfg = config(echo_guest(&dir), dir.join("unused"), 1);
    cfg.serial = Some(SerialConfig::Pty);
    let vm = Vm::new(cfg, Instant::now()).unwrap();
    let pty = vm
        .pty_path()
        .expect("a pty backend reports its path")
        .to_path_buf();
    assert!(pty.starts_with("/dev/pts/"), "{}", pty.display());
    let mut term = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pty)
        .unwrap();
    let runner = std::thread::spawn(move || run_with_limit(vm, Duration::from_secs(30)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready\n") {
        let n = term.read(&mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    term.write_all(b"typed on the pty\n").unwrap();
    while !String::from_utf8_lossy(&seen).contains("bye\n") {
        let n = term.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "pty closed early; saw {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "ready\ntyped on the pty\nbye\n"
    );
    assert_eq!(runner.join().unwrap(), VmExit::PoweredOff);
}

#[test]
fn vmm_binary_stdio_console_takes_input() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = scratch_dir("stdio-echo");
    let xml = domain_xml("echo", &echo_guest(&dir), "<serial type='stdio'/>", "");
    let domain = write_file(&dir, "domain.xml", xml.as_bytes());
    let mut child = vmm()
        .arg("--domain")
        .arg(&domain)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed on stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ready\ntyped on stdin\nbye\n"
    );
}

#[test]
fn reset_vector_holds_the_platform_reset_stub() {
    let dir = scratch_dir("reset-vector");
    let mut g = Guest::new32();
    let mut bad = g.a.create_label();
    let mut done = g.a.create_label();
    // mov dx, 0x602 (ba 02 06) then mov al, 1 (b0 ..): the first four bytes at F000:FFF0.
    g.a.cmp(dword_ptr(0xffff0u32), 0xb006_02ba_u32).unwrap();
    g.a.jne(bad).unwrap();
    g.print("stub ok\n");
    g.a.jmp(done).unwrap();
    g.a.set_label(&mut bad).unwrap();
    g.print("stub missing\n");
    g.a.set_label(&mut done).unwrap();
    g.power_off();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&g.assemble(LOAD_ADDR)));
    let log = dir.join("serial.log");
    let vm = Vm::new(config(kernel, log.clone(), 1), Instant::now()).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(20)),
        VmExit::PoweredOff
    );
    assert_eq!(read(&log), "stub ok\n");
}

/// Counts every write it sees.
#[derive(Default)]
struct Counter(u64);

impl BusDevice for Counter {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {
        self.0 += 1;
    }
}

#[test]
fn pause_stops_guest_execution_until_resume() {
    const PORT: u16 = 0x530;
    let dir = scratch_dir("pause");
    let mut g = Guest::new32();
    let mut spin = g.a.create_label();
    g.a.mov(dx, PORT as u32).unwrap();
    g.a.set_label(&mut spin).unwrap();
    g.a.out(dx, al).unwrap();
    g.a.jmp(spin).unwrap();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&g.assemble(LOAD_ADDR)));
    let mut vm = Vm::new(config(kernel, dir.join("serial.log"), 2), Instant::now()).unwrap();
    let counter = Arc::new(Mutex::new(Counter::default()));
    vm.add_pio_device(PORT, 1, counter.clone());
    let handle = vm.handle();
    let runner = std::thread::spawn(move || vm.run());
    let count = || counter.lock().unwrap().0;
    let start = Instant::now();
    while count() < 100 {
        assert!(start.elapsed() < Duration::from_secs(10), "guest never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.pause().unwrap();
    assert!(handle.is_paused());
    let frozen = count();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(), frozen, "a paused guest ran");
    handle.resume();
    let start = Instant::now();
    while count() < frozen + 100 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "guest did not resume"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Stopping a paused VM works too.
    handle.pause().unwrap();
    handle.stop();
    assert_eq!(runner.join().unwrap().unwrap(), VmExit::Stopped);
}

#[test]
fn host_reset_reboots_the_guest() {
    let dir = scratch_dir("host-reset");
    let mut g = Guest::new32();
    let mut first = g.a.create_label();
    g.outb(0x70, 0x41);
    g.a.mov(dx, 0x71u32).unwrap();
    g.a.in_(al, dx).unwrap();
    g.a.mov(bl, al).unwrap();
    g.a.inc(al).unwrap();
    g.a.out(dx, al).unwrap();
    g.a.cmp(bl, 0).unwrap();
    g.a.je(first).unwrap();
    g.print("booted again\n");
    g.power_off();
    g.a.set_label(&mut first).unwrap();
    g.print("first boot\n");
    g.halt_forever();
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&g.assemble(LOAD_ADDR)));
    let log = dir.join("serial.log");
    let mut cfg = config(kernel, log.clone(), 1);
    cfg.on_reboot = LifecycleAction::Destroy; // a host reset reboots regardless
    let vm = Vm::new(cfg, Instant::now()).unwrap();
    let handle = vm.handle();
    let runner = std::thread::spawn(move || run_with_limit(vm, Duration::from_secs(20)));
    let start = Instant::now();
    while read(&log) != "first boot\n" {
        assert!(start.elapsed() < Duration::from_secs(10), "no first boot");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.reset();
    assert_eq!(runner.join().unwrap(), VmExit::PoweredOff);
    assert_eq!(read(&log), "first boot\nbooted again\n");
}
