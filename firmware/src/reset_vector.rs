//! The only "BIOS" code an ironvirt guest has: 16 bytes at the reset vector that ask the platform for a reset
//! through the ACPI reset register.
//!
//! Why it is needed: on a hardware-reduced ACPI platform Linux's default reboot method is EFI, and without
//! EFI runtime services it falls back to jumping to F000:FFF0 in real mode, expecting firmware there to
//! reset the machine. Without this stub the CPU would run whatever bytes sit there and the reboot would hang.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::layout::{ACPI_RESET_PORT, ACPI_RESET_VALUE, RESET_VECTOR};

/// Real-mode code: `mov dx, ACPI_RESET_PORT; mov al, ACPI_RESET_VALUE; out dx, al; 1: hlt; jmp 1b`.
pub fn reset_stub() -> [u8; 16] {
    let port = ACPI_RESET_PORT.to_le_bytes();
    let mut code = [0xf4u8; 16]; // hlt padding
    code[..9].copy_from_slice(&[
        0xba,
        port[0],
        port[1], // mov dx, imm16
        0xb0,
        ACPI_RESET_VALUE, // mov al, imm8
        0xee,             // out dx, al
        0xf4,             // hlt
        0xeb,
        0xfd, // jmp back to hlt
    ]);
    code
}

/// Writes [`reset_stub`] at [`RESET_VECTOR`].
pub fn write_reset_vector<M: GuestMemory>(mem: &M) -> Result<(), vm_memory::GuestMemoryError> {
    mem.write_slice(&reset_stub(), GuestAddress(RESET_VECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn stub_fills_the_last_16_bytes_below_1mib() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_reset_vector(&mem).unwrap();
        let mut got = [0u8; 16];
        mem.read_slice(&mut got, GuestAddress(0xffff0)).unwrap();
        assert_eq!(&got[..6], &[0xba, 0x02, 0x06, 0xb0, 0x01, 0xee]);
        assert_eq!(RESET_VECTOR + 16, 0x10_0000);
    }
}
