//! Builds the tables into real guest memory and reads them back: checksums,
//! signatures, pointers, FADT and MADT fields, and `iasl` disassembly.

use std::path::{Path, PathBuf};
use std::process::Command;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::layout::*;

fn guest_memory(size: usize) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).expect("mmap guest memory")
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr))
        .expect("read guest memory");
    buf
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Reads a whole SDT at `addr`, checking its signature and checksum.
fn table(mem: &GuestMemoryMmap, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
    let header = read(mem, addr, 36);
    assert_eq!(&header[0..4], signature, "signature at {addr:#x}");
    let len = u32_at(&header, 4) as usize;
    let bytes = read(mem, addr, len);
    assert_eq!(
        sum(&bytes),
        0,
        "{} checksum",
        String::from_utf8_lossy(signature)
    );
    assert_eq!(&bytes[10..16], b"IRNVRT", "OEM id");
    bytes
}

struct Tables {
    xsdt: Vec<u8>,
    fadt: Vec<u8>,
    madt: Vec<u8>,
    dsdt: Vec<u8>,
}

/// Follows RSDP -> XSDT -> FADT/MADT -> DSDT exactly as an OS would.
fn walk(mem: &GuestMemoryMmap, rsdp_addr: GuestAddress) -> Tables {
    let rsdp = read(mem, rsdp_addr.0, 36);
    assert_eq!(&rsdp[0..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp[0..20]), 0, "RSDP v1 checksum");
    assert_eq!(sum(&rsdp), 0, "RSDP extended checksum");
    assert_eq!(rsdp[15], 2, "RSDP revision");
    assert_eq!(u32_at(&rsdp, 20), 36, "RSDP length");
    let xsdt = table(mem, u64_at(&rsdp, 24), b"XSDT");
    let entries: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
    assert_eq!(entries.len(), 2, "XSDT points at FADT and MADT");
    let fadt = table(mem, entries[0], b"FACP");
    let madt = table(mem, entries[1], b"APIC");
    assert_eq!(u32_at(&fadt, 40), 0, "32-bit DSDT pointer unused");
    let dsdt = table(mem, u64_at(&fadt, 140), b"DSDT");
    for addr in entries.iter().chain([&u64_at(&fadt, 140)]) {
        assert!((ACPI_AREA_START..ACPI_AREA_END).contains(addr));
    }
    Tables {
        xsdt,
        fadt,
        madt,
        dsdt,
    }
}

fn platform(vcpus: u32) -> AcpiPlatform {
    AcpiPlatform::new((0..vcpus).collect())
}

fn one_virtio() -> VirtioMmioDevice {
    VirtioMmioDevice {
        base: VIRTIO_MMIO_BASE,
        size: VIRTIO_MMIO_DEVICE_SIZE,
        gsi: 6,
    }
}

#[test]
fn tables_are_reachable_and_checksummed() {
    let mem = guest_memory(16 << 20);
    let mut p = platform(2);
    p.virtio_mmio.push(one_virtio());
    let addrs = write_acpi_tables_at(&mem, &p).unwrap();
    assert_eq!(addrs.rsdp, GuestAddress(0xe0000));
    let t = walk(&mem, addrs.rsdp);
    assert_eq!(t.xsdt.len(), 36 + 16);
    assert_eq!(u64_at(&t.xsdt, 36), addrs.fadt.0);
    assert_eq!(u64_at(&t.xsdt, 44), addrs.madt.0);
    assert_eq!(u64_at(&t.fadt, 140), addrs.dsdt.0);
    assert!(addrs.end.0 <= ACPI_AREA_END);
    assert!(t.dsdt.len() > 36);
    // The convenience wrapper agrees.
    assert_eq!(
        write_acpi_tables(&mem, &p).unwrap(),
        GuestAddress(RSDP_START)
    );
}

#[test]
fn fadt_fields() {
    let mem = guest_memory(16 << 20);
    let rsdp = write_acpi_tables(&mem, &platform(1)).unwrap();
    let f = walk(&mem, rsdp).fadt;
    assert_eq!(f.len(), 276, "ACPI 6.x FADT length");
    assert_eq!(f[8], 6, "FADT major revision");
    assert_eq!(f[131], 5, "FADT minor revision");
    let flags = u32_at(&f, 112);
    assert_eq!(flags, FADT_FLAGS);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    assert_ne!(
        flags & (1 << 4),
        0,
        "PWR_BUTTON: control-method power button"
    );
    let boot_arch = u16_at(&f, 109);
    assert_eq!(
        boot_arch & IAPC_BOOT_ARCH_8042,
        0,
        "no keyboard controller to probe"
    );
    assert_ne!(boot_arch & IAPC_BOOT_ARCH_VGA_NOT_PRESENT, 0, "no VGA");
    assert_eq!(
        boot_arch & IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT,
        0,
        "CMOS RTC present"
    );
    // GAS: space 1 (SystemIO), 8 bits, offset 0, byte access, address.
    let gas = |off: usize| {
        (
            f[off],
            f[off + 1],
            f[off + 2],
            f[off + 3],
            u64_at(&f, off + 4),
        )
    };
    assert_eq!(
        gas(116),
        (1, 8, 0, 1, u64::from(ACPI_RESET_PORT)),
        "RESET_REG"
    );
    assert_eq!(f[128], ACPI_RESET_VALUE, "RESET_VALUE");
    assert_eq!(
        gas(244),
        (1, 8, 0, 1, u64::from(ACPI_SLEEP_CONTROL_PORT)),
        "SLEEP_CONTROL_REG"
    );
    assert_eq!(
        gas(256),
        (1, 8, 0, 1, u64::from(ACPI_SLEEP_STATUS_PORT)),
        "SLEEP_STATUS_REG"
    );
    assert_eq!(u32_at(&f, 36), 0, "no FACS");
    assert_eq!(u64_at(&f, 132), 0, "no X_FACS");
}

/// (type, bytes) of each MADT structure.
fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 44;
    while off < madt.len() {
        let len = madt[off + 1] as usize;
        assert!(len >= 2, "zero-length MADT entry at {off}");
        out.push((madt[off], madt[off..off + len].to_vec()));
        off += len;
    }
    assert_eq!(off, madt.len(), "MADT entries fill the table exactly");
    out
}

#[test]
fn madt_lists_every_vcpu() {
    for (boot, max) in [(1, 1), (4, 4), (2, 8)] {
        let mem = guest_memory(16 << 20);
        let mut p = platform(boot);
        p.max_vcpus = max;
        let rsdp = write_acpi_tables(&mem, &p).unwrap();
        let m = walk(&mem, rsdp).madt;
        assert_eq!(m[8], MADT_REVISION);
        assert_eq!(u32_at(&m, 36), 0xfee0_0000, "LAPIC address");
        assert_eq!(u32_at(&m, 40), MADT_PCAT_COMPAT);
        let entries = madt_entries(&m);
        let lapics: Vec<&Vec<u8>> = entries
            .iter()
            .filter(|(t, _)| *t == madt_entry_type::LOCAL_APIC)
            .map(|(_, e)| e)
            .collect();
        assert_eq!(lapics.len(), max as usize, "{boot}/{max}");
        for (i, e) in lapics.iter().enumerate() {
            assert_eq!((e[2], e[3]), (i as u8, i as u8), "uid, apic id");
            let expected = if (i as u32) < boot {
                LAPIC_ENABLED
            } else {
                LAPIC_ONLINE_CAPABLE
            };
            assert_eq!(u32_at(e, 4), expected);
        }
        let ioapics: Vec<_> = entries
            .iter()
            .filter(|(t, _)| *t == madt_entry_type::IO_APIC)
            .collect();
        assert_eq!(ioapics.len(), 1);
        let io = &ioapics[0].1;
        assert_eq!(io[2], max as u8, "IOAPIC id after the vCPUs");
        assert_eq!(u32_at(io, 4), 0xfec0_0000);
        assert_eq!(u32_at(io, 8), 0, "GSI base");
        let isos: Vec<_> = entries
            .iter()
            .filter(|(t, _)| *t == madt_entry_type::INTERRUPT_SOURCE_OVERRIDE)
            .collect();
        assert_eq!(isos.len(), 1);
        let iso = &isos[0].1;
        assert_eq!((iso[2], iso[3], u32_at(iso, 4)), (0, 0, 2), "IRQ0 -> GSI2");
        let nmis: Vec<_> = entries
            .iter()
            .filter(|(t, _)| *t == madt_entry_type::LOCAL_APIC_NMI)
            .collect();
        assert_eq!(nmis.len(), 1);
        assert_eq!((nmis[0].1[2], nmis[0].1[5]), (0xff, 1), "all CPUs, LINT1");
        assert_eq!(entries.len(), max as usize + 3);
    }
}

#[test]
fn madt_uses_x2apic_for_large_ids() {
    let mem = guest_memory(16 << 20);
    let p = AcpiPlatform::new(vec![0, 300]);
    let rsdp = write_acpi_tables(&mem, &p).unwrap();
    let entries = madt_entries(&walk(&mem, rsdp).madt);
    let x2: Vec<_> = entries
        .iter()
        .filter(|(t, _)| *t == madt_entry_type::LOCAL_X2APIC)
        .collect();
    assert_eq!(x2.len(), 1);
    let e = &x2[0].1;
    assert_eq!(
        (u32_at(e, 4), u32_at(e, 8), u32_at(e, 12)),
        (300, LAPIC_ENABLED, 1)
    );
    assert_eq!(
        entries
            .iter()
            .filter(|(t, _)| *t == madt_entry_type::LOCAL_X2APIC_NMI)
            .count(),
        1
    );
    assert_eq!(
        entries
            .iter()
            .filter(|(t, _)| *t == madt_entry_type::LOCAL_APIC)
            .count(),
        1
    );
}

#[test]
fn too_many_devices_do_not_fit() {
    let mem = guest_memory(16 << 20);
    let mut p = platform(1);
    p.virtio_mmio = (0..MAX_VIRTIO_MMIO_DEVICES as u64)
        .map(|i| VirtioMmioDevice {
            base: VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_DEVICE_SIZE,
            ..one_virtio()
        })
        .collect();
    let err = write_acpi_tables(&mem, &p).unwrap_err();
    assert!(matches!(err, AcpiError::TablesTooLarge { .. }), "{err}");
    // Nothing was written: no RSDP to find.
    assert_ne!(&read(&mem, RSDP_START, 8), b"RSD PTR ");
}

#[test]
fn max_vcpus_fit() {
    let mem = guest_memory(16 << 20);
    let mut p = AcpiPlatform::new(vec![0]);
    p.max_vcpus = MAX_VCPUS;
    assert!(write_acpi_tables(&mem, &p).is_ok());
}

#[test]
fn invalid_platform_is_rejected_before_writing() {
    let mem = guest_memory(16 << 20);
    assert_eq!(
        write_acpi_tables(&mem, &AcpiPlatform::new(vec![])),
        Err(AcpiError::NoVcpus)
    );
}

#[test]
fn missing_guest_memory_is_an_error() {
    // Only 512 KiB of RAM: the BIOS area is not backed.
    let mem = guest_memory(512 << 10);
    let err = write_acpi_tables(&mem, &platform(1)).unwrap_err();
    assert!(matches!(err, AcpiError::GuestMemory { .. }), "{err}");
    assert!(err.to_string().contains("guest address"), "{err}");
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ironvirt-firmware-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `iasl` with `args` in `dir`, failing the test with a clear message if
/// it is not installed (CI installs the acpica-tools package) or reports errors.
fn iasl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("iasl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `iasl` ({e}): install it with `apt-get install -y acpica-tools`; \
                 the ACPI tests need it to prove the tables disassemble"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
    text
}

/// Disassembles `bytes` (one table) with `iasl -d` and returns the source.
fn disassemble(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let dat = format!("{name}.dat");
    std::fs::write(dir.join(&dat), bytes).expect("write table");
    let log = iasl(dir, &["-d", &dat]);
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl")))
        .unwrap_or_else(|e| panic!("iasl wrote no {name}.dsl ({e}):\n{log}"));
    assert!(
        !dsl.to_lowercase().contains("incorrect checksum"),
        "iasl reports a bad checksum in {name}:\n{dsl}"
    );
    dsl
}

#[test]
fn iasl_disassembles_dsdt() {
    let mem = guest_memory(16 << 20);
    let mut p = platform(2);
    p.virtio_mmio.push(one_virtio());
    let rsdp = write_acpi_tables(&mem, &p).unwrap();
    let tables = walk(&mem, rsdp);
    let dir = TempDir::new("dsdt");
    let dsl = disassemble(&dir.0, "dsdt", &tables.dsdt);
    if std::env::var_os("IRONVIRT_PRINT_DSDT").is_some() {
        println!("{dsl}");
    }
    for needle in [
        "_S5_",
        "PNP0C0C",
        "ACPI0013",
        "PNP0501",
        "LNRO0005",
        "_EVT",
        "SystemIO, 0x0608",
        "Notify (\\_SB.PWRB, 0x80)",
        "Memory32Fixed (ReadWrite,",
        "0xD0000000",
        "0x03F8",
    ] {
        assert!(
            dsl.contains(needle),
            "DSDT disassembly lacks {needle:?}:\n{dsl}"
        );
    }
    // And the disassembly compiles back without errors.
    let log = iasl(&dir.0, &["-p", "recompiled", "dsdt.dsl"]);
    assert!(
        log.contains("0 Errors"),
        "recompiling the DSDT failed:\n{log}"
    );
}

#[test]
fn iasl_decodes_fadt_and_madt() {
    let mem = guest_memory(16 << 20);
    let mut p = platform(2);
    p.max_vcpus = 3;
    let rsdp = write_acpi_tables(&mem, &p).unwrap();
    let tables = walk(&mem, rsdp);
    let dir = TempDir::new("fadt-madt");
    let fadt = disassemble(&dir.0, "facp", &tables.fadt);
    // Field names as printed by acpica-tools 20200925 (Debian 12).
    for needle in [
        "Hardware Reduced (V5) : 1",
        "Reset Register Supported (V2) : 1",
        "Control Method Power Button (V1) : 1",
        "8042 Present on ports 60/64 (V2) : 0",
        "VGA Not Present (V4) : 1",
        "CMOS RTC Not Present (V5) : 0",
    ] {
        assert!(
            fadt.contains(needle),
            "FADT disassembly lacks {needle:?}:\n{fadt}"
        );
    }
    let madt = disassemble(&dir.0, "apic", &tables.madt);
    assert_eq!(
        madt.matches("Subtable Type : 00 [Processor Local APIC]")
            .count(),
        3,
        "{madt}"
    );
    assert!(madt.contains("[I/O APIC]"), "{madt}");
    assert!(madt.contains("[Interrupt Source Override]"), "{madt}");
    assert!(madt.contains("[Local APIC NMI]"), "{madt}");
    assert_eq!(
        madt.matches("Runtime Online Capable : 1").count(),
        1,
        "{madt}"
    );
    assert_eq!(madt.matches("Processor Enabled : 1").count(), 2, "{madt}");
    let xsdt = disassemble(&dir.0, "xsdt", &tables.xsdt);
    assert!(xsdt.contains("ACPI Table Address   0"), "{xsdt}");
}

#[test]
fn iasl_decodes_x2apic_madt() {
    let mem = guest_memory(16 << 20);
    let mut p = AcpiPlatform::new(vec![0, 256]);
    p.max_vcpus = 3;
    let rsdp = write_acpi_tables(&mem, &p).unwrap();
    let madt = walk(&mem, rsdp).madt;
    let dir = TempDir::new("x2apic");
    let dsl = disassemble(&dir.0, "apic", &madt);
    assert_eq!(dsl.matches("[Processor Local x2APIC]").count(), 2, "{dsl}");
    assert!(dsl.contains("Processor x2Apic ID : 00000101"), "{dsl}");
    assert!(dsl.contains("[Local x2APIC NMI]"), "{dsl}");
    assert!(dsl.contains("[Local APIC NMI]"), "{dsl}");
}

#[test]
fn hotplug_apic_ids_follow_the_vmm_topology() {
    let mut p = AcpiPlatform::new(vec![0, 1]);
    p.max_vcpus = 4;
    p.hotplug_apic_ids = vec![4, 5];
    let ids: Vec<(u32, bool)> = p
        .cpus()
        .unwrap()
        .iter()
        .map(|c| (c.apic_id, c.enabled))
        .collect();
    assert_eq!(ids, vec![(0, true), (1, true), (4, false), (5, false)]);
    p.hotplug_apic_ids = vec![1, 5];
    assert!(matches!(p.cpus(), Err(AcpiError::DuplicateApicId(1))));
}
