//! `/bin/boot-timer` for L2 guests: writes the boot-complete magic (123) to ironvirt's boot-timer port (0x3f0).
//!
//! Debian's cloud kernel has no `/dev/port`, so a shell cannot do the write; this is a 147-byte static ELF,
//! made here rather than compiled so the lab needs no cross toolchain. It calls `ioperm(0x3f0, 1, 1)`, does
//! the `out`, and exits 0 (or 1 if ioperm was refused). QEMU ignores the port.

/// The program's machine code (x86_64, position independent).
const CODE: &[u8] = &[
    0xb8, 0xad, 0x00, 0x00, 0x00, // mov eax, 173 (ioperm)
    0xbf, 0xf0, 0x03, 0x00, 0x00, // mov edi, 0x3f0
    0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1
    0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
    0x0f, 0x05, // syscall
    0x85, 0xc0, // test eax, eax
    0x75, 0x0b, // jnz fail
    0x66, 0xba, 0xf0, 0x03, // mov dx, 0x3f0
    0xb0, 0x7b, // mov al, 123
    0xee, // out dx, al
    0x31, 0xff, // xor edi, edi
    0xeb, 0x05, // jmp exit
    0xbf, 0x01, 0x00, 0x00, 0x00, // fail: mov edi, 1
    0xb8, 0x3c, 0x00, 0x00, 0x00, // exit: mov eax, 60 (exit)
    0x0f, 0x05, // syscall
];

const LOAD_ADDR: u64 = 0x40_0000;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;

/// The whole ELF file.
pub fn elf() -> Vec<u8> {
    let code_off = EHDR_SIZE + PHDR_SIZE;
    let total = code_off + CODE.len() as u64;
    let mut f = Vec::with_capacity(total as usize);
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV ABI
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(LOAD_ADDR + code_off).to_le_bytes()); // e_entry
    f.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&[0; 6]); // no section headers
                                  // PT_LOAD of the whole file, read + execute.
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(&LOAD_ADDR.to_le_bytes());
    f.extend_from_slice(&LOAD_ADDR.to_le_bytes());
    f.extend_from_slice(&total.to_le_bytes());
    f.extend_from_slice(&total.to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(CODE);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_header_is_consistent() {
        let f = elf();
        assert_eq!(f.len(), 64 + 56 + CODE.len());
        assert_eq!(&f[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(f[24..32].try_into().unwrap());
        assert_eq!(entry, LOAD_ADDR + 120);
        // The jumps land where the comments say: jnz skips 11 bytes to `fail`, jmp skips 5 to `exit`.
        let jnz = CODE.iter().position(|&b| b == 0x75).unwrap();
        assert_eq!(&CODE[jnz + 2 + 0x0b..jnz + 2 + 0x0b + 1], &[0xbf]);
        let jmp = CODE.iter().position(|&b| b == 0xeb).unwrap();
        assert_eq!(CODE[jmp + 2 + 5], 0xb8);
    }
}
