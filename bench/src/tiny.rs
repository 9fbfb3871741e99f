//! `ironvirt-bench tiny`: the launch cost of a VMM, measured the way issue #7 sets the target — a tiny guest
//! that prints one line and resets, run directly on this machine's `/dev/kvm` (no lab: a few instructions of
//! guest code run fine on nested software KVM), timed from exec to the VMM's exit, with its maximum RSS.
//! ironvirt-vmm and QEMU microvm run alternately, N times each.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub const USAGE: &str = "usage: ironvirt-bench tiny [--runs N] [--vmm PATH] [--qemu PATH] [--memory MIB]

Runs a tiny guest (prints a line on COM1, then resets) under ironvirt-vmm and QEMU microvm directly on
/dev/kvm, N times each (default 20), alternating, and prints exec-to-exit time and maximum RSS.";

/// Guest physical address the tiny guest's code is loaded at (PVH entry, 32-bit protected mode).
const LOAD_ADDR: u32 = 0x10_0000;
/// What the guest prints; the run counts only if it shows up on the serial console.
const GREETING: &[u8] = b"tiny guest ok\n";

/// QEMU 10's default microvm firmware (SeaBIOS) does not boot `-kernel` ELFs quickly or at all; qboot does,
/// and it is the firmware microvm was designed around.
const QBOOT: &str = "/usr/share/qemu/qboot.rom";

struct Options {
    runs: u32,
    vmm: Option<PathBuf>,
    qemu: PathBuf,
    memory_mib: u32,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 20,
        vmm: None,
        qemu: PathBuf::from("qemu-system-x86_64"),
        memory_mib: 128,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .map_err(|_| "--runs takes a number")?
            }
            "--vmm" => o.vmm = Some(PathBuf::from(value("--vmm")?)),
            "--qemu" => o.qemu = PathBuf::from(value("--qemu")?),
            "--memory" => {
                o.memory_mib = value("--memory")?
                    .parse()
                    .map_err(|_| "--memory takes a number of MiB")?
            }
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    if o.runs < 3 {
        return Err("--runs must be at least 3".into());
    }
    Ok(o)
}

/// 32-bit code: write the greeting to COM1, then pulse the i8042 reset line; where that does not reset (QEMU's
/// microvm has no i8042), `ud2` with no usable IDT triple-faults, which every VMM treats as a reset.
fn guest_code() -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    for &b in GREETING {
        c.extend_from_slice(&[0xb0, b, 0xee]); // mov al, b; out dx, al
    }
    c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64]); // mov al, 0xfe; out 0x64, al
    c.extend_from_slice(&[0x0f, 0x0b]); // ud2
    c
}

/// A minimal ELF with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which both VMMs boot with `-kernel`.
fn pvh_elf(code: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let note_off = EHDR + 2 * PHDR;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz: "Xen\0"
    note.extend_from_slice(&4u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&LOAD_ADDR.to_le_bytes());
    let code_off = (note_off + note.len() + 0xf) & !0xf;

    let mut f = vec![0u8; code_off];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&u64::from(LOAD_ADDR).to_le_bytes());
    f[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes());
    f[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    f[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let mut phdr = |at: usize, kind: u32, off: usize, addr: u64, size: usize| {
        f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        f[at + 4..at + 8].copy_from_slice(&7u32.to_le_bytes()); // RWX
        f[at + 8..at + 16].copy_from_slice(&(off as u64).to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
        f[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&(size as u64).to_le_bytes());
        f[at + 40..at + 48].copy_from_slice(&(size as u64).to_le_bytes());
        f[at + 48..at + 56].copy_from_slice(&4u64.to_le_bytes());
    };
    phdr(EHDR, 1, code_off, u64::from(LOAD_ADDR), code.len()); // PT_LOAD
    phdr(EHDR + PHDR, 4, note_off, 0, note.len()); // PT_NOTE
    f[note_off..note_off + note.len()].copy_from_slice(&note);
    f.extend_from_slice(code);
    f
}

fn domain_xml(kernel: &Path, memory_mib: u32) -> String {
    format!(
        "<domain type='kvm'>
  <name>tiny</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>{}</kernel></os>
  <on_reboot>destroy</on_reboot>
  <devices><serial type='stdio'><target port='0'/></serial></devices>
</domain>
",
        kernel.display()
    )
}

/// One launch: wall time from spawn to reaped exit, and the child's maximum RSS from wait4.
struct Sample {
    wall_ms: f64,
    max_rss_kib: u64,
}

fn launch(what: &str, cmd: &mut Command) -> Result<Sample, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("starting {what}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 before reading the pipes: the guest writes a few bytes, far below a pipe's capacity, so the
    // child cannot block on them, and the clock stops at the exit, not after our reads.
    // SAFETY: pid is our own child, status and usage are valid out-pointers for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    if r != pid {
        return Err(format!(
            "waiting for {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let out = read_all(child.stdout);
    let err = read_all(child.stderr);
    let status = std::process::ExitStatus::from_raw(status);
    let console = String::from_utf8_lossy(&out);
    if !console.contains(std::str::from_utf8(GREETING).unwrap_or_default().trim()) {
        return Err(format!(
            "{what} exited ({status}) without the guest's greeting on its console; stdout: {console:?}, stderr: {}",
            String::from_utf8_lossy(&err)
        ));
    }
    Ok(Sample {
        wall_ms,
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

fn read_all<R: std::io::Read>(r: Option<R>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut v);
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Summary {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    median_rss_kib: f64,
    max_rss_kib: u64,
}

fn summarize(s: &[Sample]) -> Summary {
    Summary {
        median_ms: median(s.iter().map(|x| x.wall_ms).collect()),
        min_ms: s.iter().map(|x| x.wall_ms).fold(f64::MAX, f64::min),
        max_ms: s.iter().map(|x| x.wall_ms).fold(0.0, f64::max),
        median_rss_kib: median(s.iter().map(|x| x.max_rss_kib as f64).collect()),
        max_rss_kib: s.iter().map(|x| x.max_rss_kib).max().unwrap_or(0),
    }
}

pub fn run(args: &[String], build_vmm: impl Fn() -> Result<PathBuf, String>) -> Result<(), String> {
    let o = parse(args)?;
    let vmm = match &o.vmm {
        Some(v) => v.clone(),
        None => build_vmm()?,
    };
    let dir = std::env::temp_dir().join(format!("ironvirt-bench-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kernel = dir.join("tiny.elf");
    let xml = dir.join("tiny.xml");
    let write = |p: &Path, data: &[u8]| {
        std::fs::write(p, data).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(&kernel, &pvh_elf(&guest_code()))?;
    write(&xml, domain_xml(&kernel, o.memory_mib).as_bytes())?;

    let ironvirt = || {
        let mut c = Command::new(&vmm);
        c.arg("--domain").arg(&xml);
        c
    };
    let qemu = || {
        let mut c = Command::new(&o.qemu);
        c.args([
            "-M", "microvm", "-bios", QBOOT, "-accel", "kvm", "-smp", "1", "-m",
        ])
        .arg(format!("{}M", o.memory_mib))
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&kernel);
        c
    };
    // One untimed launch each warms the page cache for both binaries and their libraries.
    launch("ironvirt-vmm", &mut ironvirt())?;
    launch("qemu", &mut qemu())?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..o.runs {
        // Alternate which goes first, so neither always runs right after the other's teardown.
        if i % 2 == 0 {
            ours.push(launch("ironvirt-vmm", &mut ironvirt())?);
            theirs.push(launch("qemu", &mut qemu())?);
        } else {
            theirs.push(launch("qemu", &mut qemu())?);
            ours.push(launch("ironvirt-vmm", &mut ironvirt())?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (summarize(&ours), summarize(&theirs));
    println!(
        "tiny guest (print + reset), 1 vCPU, {} MiB, directly on /dev/kvm, {} runs each, alternating\n",
        o.memory_mib, o.runs
    );
    println!("| metric | ironvirt-vmm | QEMU microvm | ironvirt / QEMU |");
    println!("|---|---:|---:|---:|");
    println!(
        "| exec to exit, median (min–max) | {:.1} ms ({:.1}–{:.1}) | {:.1} ms ({:.1}–{:.1}) | {:.2}× |",
        a.median_ms,
        a.min_ms,
        a.max_ms,
        b.median_ms,
        b.min_ms,
        b.max_ms,
        a.median_ms / b.median_ms
    );
    println!(
        "| max RSS, median (max) | {:.0} KiB ({}) | {:.0} KiB ({}) | {:.2}× |",
        a.median_rss_kib,
        a.max_rss_kib,
        b.median_rss_kib,
        b.max_rss_kib,
        a.median_rss_kib / b.median_rss_kib
    );
    let time_ok = a.median_ms <= 0.2 * b.median_ms;
    let rss_ok = (a.max_rss_kib as f64) < 4.4 * 1024.0;
    println!(
        "\nissue #7 targets: launch ≤ 0.2× QEMU's wall time: {}; max RSS < 4.4 MiB: {}",
        if time_ok { "met" } else { "not met" },
        if rss_ok { "met" } else { "not met" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_code_prints_then_resets() {
        let c = guest_code();
        assert_eq!(c.iter().filter(|&&b| b == 0xee).count(), GREETING.len());
        assert!(c.ends_with(&[0xe6, 0x64, 0x0f, 0x0b]));
    }

    #[test]
    fn elf_has_entry_and_note() {
        let f = pvh_elf(&guest_code());
        assert_eq!(&f[..4], b"\x7fELF");
        assert!(f.windows(4).any(|w| w == b"Xen\0"));
    }
}
