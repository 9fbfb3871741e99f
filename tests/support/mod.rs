//! Tiny purpose-built guests for integration tests on this machine's `/dev/kvm`: a few instructions assembled
//! with iced-x86 and wrapped as an ELF with a PVH note or as a bzImage, so they go through the same loaders as
//! a real kernel.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use iced_x86::code_asm::*;

pub mod virtio;

pub const COM1: u16 = 0x3f8;
pub const ACPI_SLEEP_CONTROL: u16 = 0x600;
pub const ACPI_RESET: u16 = 0x602;
pub const S5_REQUEST: u8 = (5 << 2) | (1 << 5);
/// Where the tiny guests' code is loaded (and where their ELF entry point is).
pub const LOAD_ADDR: u64 = 0x10_0000;

/// A 32-bit protected-mode program for the PVH entry, or a 64-bit one for the bzImage entry.
pub struct Guest {
    pub a: CodeAssembler,
}

impl Guest {
    pub fn new32() -> Self {
        Guest {
            a: CodeAssembler::new(32).unwrap(),
        }
    }

    pub fn new64() -> Self {
        Guest {
            a: CodeAssembler::new(64).unwrap(),
        }
    }

    /// Writes `text` to COM1, one `out` per byte.
    pub fn print(&mut self, text: &str) -> &mut Self {
        self.a.mov(dx, COM1 as u32).unwrap();
        for b in text.bytes() {
            self.a.mov(al, b as u32).unwrap();
            self.a.out(dx, al).unwrap();
        }
        self
    }

    pub fn outb(&mut self, port: u16, value: u8) -> &mut Self {
        self.a.mov(dx, port as u32).unwrap();
        self.a.mov(al, value as u32).unwrap();
        self.a.out(dx, al).unwrap();
        self
    }

    /// ACPI S5 through the FADT's sleep control register, then halt in case it did not take.
    pub fn power_off(&mut self) -> &mut Self {
        self.outb(ACPI_SLEEP_CONTROL, S5_REQUEST);
        self.halt_forever()
    }

    pub fn halt_forever(&mut self) -> &mut Self {
        let mut l = self.a.create_label();
        self.a.set_label(&mut l).unwrap();
        self.a.cli().unwrap();
        self.a.hlt().unwrap();
        self.a.jmp(l).unwrap();
        self
    }

    pub fn assemble(&mut self, ip: u64) -> Vec<u8> {
        self.a.assemble(ip).unwrap()
    }
}

/// An ELF64 executable with one loadable segment at `LOAD_ADDR` and a Xen PVH entry note pointing at it, as a
/// vmlinux has.
pub fn pvh_elf(code: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let note_off = EHDR + 2 * PHDR;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz ("Xen\0")
    note.extend_from_slice(&4u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&(LOAD_ADDR as u32).to_le_bytes());
    let code_off = (note_off + note.len() + 0xf) & !0xf;

    let mut f = vec![0u8; code_off];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&LOAD_ADDR.to_le_bytes()); // e_entry
    f[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    f[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let phdr =
        |f: &mut Vec<u8>, at: usize, kind: u32, flags: u32, off: u64, addr: u64, size: u64| {
            f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
            f[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
            f[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
            f[at + 48..at + 56].copy_from_slice(&4u64.to_le_bytes());
        };
    phdr(
        &mut f,
        EHDR,
        1,
        7,
        code_off as u64,
        LOAD_ADDR,
        code.len() as u64,
    ); // PT_LOAD rwx
    phdr(
        &mut f,
        EHDR + PHDR,
        4,
        4,
        note_off as u64,
        0,
        note.len() as u64,
    ); // PT_NOTE
    f[note_off..note_off + note.len()].copy_from_slice(&note);
    f.extend_from_slice(code);
    f
}

/// A minimal bzImage: one setup sector with a boot-protocol 2.15 header announcing a 64-bit entry, then the
/// "protected-mode kernel", whose 64-bit entry point is at +0x200 where `code64` goes.
pub fn bzimage(code64: &[u8]) -> Vec<u8> {
    let setup_sects = 1u8;
    let mut f = vec![0u8; (usize::from(setup_sects) + 1) * 512];
    f[0x1f1] = setup_sects;
    f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    f[0x211] = 0x01; // LOADED_HIGH
    f[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    f[0x22c..0x230].copy_from_slice(&0x37ff_ffffu32.to_le_bytes()); // initrd_addr_max
    f[0x236..0x238].copy_from_slice(&0x0001u16.to_le_bytes()); // XLF_KERNEL_64
    f[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes()); // cmdline_size
    let mut payload = vec![0xf4u8; 0x200]; // hlt: the 32-bit entry is never used
    payload.extend_from_slice(code64);
    f.extend_from_slice(&payload);
    f
}

/// A fresh directory under the target dir for one test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

impl Guest {
    /// Polls COM1 for input and echoes each byte back until a newline, so tests can check both directions.
    pub fn echo_line(&mut self) -> &mut Self {
        let mut poll = self.a.create_label();
        self.a.set_label(&mut poll).unwrap();
        self.a.mov(dx, (COM1 + 5) as u32).unwrap(); // line status register
        self.a.in_(al, dx).unwrap();
        self.a.test(al, 1).unwrap(); // data ready
        self.a.jz(poll).unwrap();
        self.a.mov(dx, COM1 as u32).unwrap();
        self.a.in_(al, dx).unwrap();
        self.a.out(dx, al).unwrap();
        self.a.cmp(al, b'\n' as u32).unwrap();
        self.a.jne(poll).unwrap();
        self
    }
}
