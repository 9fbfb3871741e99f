//! The x86_64 guest physical address layout and platform I/O ports.
//!
//! Everything here is ABI between three parties: the firmware tables written by
//! this crate, the VMM's device models, and the guest kernel. Change a value and
//! all three must agree again.
//!
//! ```text
//! 0x0000_0000  real-mode IVT / BDA (RAM, untouched)
//! 0x0000_6000  PVH hvm_start_info, then its memory map table and module list
//! 0x0000_7000  Linux zero page (boot_params)
//! 0x0000_8ff0  boot stack top (grows down)
//! 0x0000_9000  PML4, 0xa000 PDPTE, 0xb000 PDE (identity map built by the VMM)
//! 0x0002_0000  kernel command line (64 KiB max, NUL included)
//! 0x0009_fc00  EBDA (reserved)
//! 0x000e_0000  RSDP, then XSDT/FADT/MADT/DSDT (reserved up to 1 MiB)
//! 0x0010_0000  kernel load address; low RAM continues up to 3 GiB
//! 0xc000_0000  32-bit MMIO hole: virtio-mmio at 0xd000_0000, IOAPIC, LAPIC
//! 0x1_0000_0000  RAM beyond 3 GiB
//! ```

use thiserror::Error;
use vm_memory::GuestAddress;

/// Where the PVH `hvm_start_info` structure goes; its memory map table and
/// module list follow it, and all of it must end below [`ZERO_PAGE_START`].
pub const PVH_INFO_START: u64 = 0x6000;

/// The Linux "zero page" (`struct boot_params`) for the 64-bit boot protocol.
pub const ZERO_PAGE_START: u64 = 0x7000;

/// Initial stack pointer for the boot vCPU (the stack grows down from here).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;

/// Boot page tables built by the VMM to identity-map the first GiB(s).
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table, see [`PML4_START`].
pub const PDPTE_START: u64 = 0xa000;
/// Page directory, see [`PML4_START`].
pub const PDE_START: u64 = 0xb000;

/// The kernel command line, NUL-terminated.
pub const CMDLINE_START: u64 = 0x20000;
/// Maximum command line size, including the terminating NUL.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;

/// Start of the Extended BIOS Data Area; from here to 640 KiB is reserved.
pub const EBDA_START: u64 = 0x9fc00;
/// End of conventional ("low") memory at 640 KiB.
pub const LOW_MEMORY_END: u64 = 0xa0000;

/// Start of the BIOS ROM area, where the ACPI tables live. Linux scans
/// 0xE0000..0x100000 for the RSDP when it is not told where it is.
pub const ACPI_AREA_START: u64 = 0xe0000;
/// End (exclusive) of the ACPI table area.
pub const ACPI_AREA_END: u64 = RESET_VECTOR;

/// The x86 reset vector (F000:FFF0): where a CPU starts after a reset, and where Linux jumps when it reboots
/// "through the BIOS" (its fallback when ACPI is hardware-reduced, see [`crate::reset_vector`]). The last 16
/// bytes below 1 MiB.
pub const RESET_VECTOR: u64 = HIMEM_START - 16;
/// The RSDP sits at the start of the ACPI area (16-byte aligned, as scanned).
pub const RSDP_START: u64 = ACPI_AREA_START;

/// Start of "high" memory: the kernel is loaded here.
pub const HIMEM_START: u64 = 0x10_0000;

/// Start of the 32-bit MMIO hole. RAM that does not fit below it is placed
/// from [`MMIO_HOLE_END`] upwards.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End (exclusive) of the 32-bit MMIO hole: 4 GiB.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;

/// The in-kernel IOAPIC's MMIO base.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Input pins (GSIs 0..24) of the in-kernel KVM IOAPIC.
pub const IOAPIC_NUM_PINS: u32 = 24;
/// The local APICs' MMIO base.
pub const LAPIC_START: u64 = 0xfee0_0000;

/// Base of the window for virtio-mmio devices inside the MMIO hole.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of each virtio-mmio device's register window.
pub const VIRTIO_MMIO_DEVICE_SIZE: u64 = 0x1000;

/// ACPI sleep control register (1 byte, write-only for the guest). Linux writes
/// `SLP_TYP << 2 | SLP_EN` here to enter a sleep state; `SLP_TYP` 5 is S5 (off),
/// see [`ACPI_S5_SLP_TYP`] and [`ACPI_SLEEP_SLP_EN`].
pub const ACPI_SLEEP_CONTROL_PORT: u16 = 0x600;
/// ACPI sleep status register (1 byte). The guest polls WAK_STS (bit 7) here
/// after a sleep request; a VMM that powers off on S5 never needs to set it.
pub const ACPI_SLEEP_STATUS_PORT: u16 = 0x601;
/// ACPI reset register (1 byte): writing [`ACPI_RESET_VALUE`] resets the VM.
pub const ACPI_RESET_PORT: u16 = 0x602;
/// The value the guest writes to [`ACPI_RESET_PORT`] to reset.
pub const ACPI_RESET_VALUE: u8 = 0x01;
/// `SLP_EN` bit of the sleep control register.
pub const ACPI_SLEEP_SLP_EN: u8 = 1 << 5;
/// Position of the `SLP_TYP` field (bits 4:2) in the sleep control register.
pub const ACPI_SLEEP_SLP_TYP_SHIFT: u8 = 2;
/// The `SLP_TYP` value published in the DSDT's `\_S5_` package.
pub const ACPI_S5_SLP_TYP: u8 = 5;
/// What the guest writes to [`ACPI_SLEEP_CONTROL_PORT`] to power off:
/// `(5 << 2) | (1 << 5)` = 0x34.
pub const ACPI_S5_REQUEST: u8 = (ACPI_S5_SLP_TYP << ACPI_SLEEP_SLP_TYP_SHIFT) | ACPI_SLEEP_SLP_EN;

/// Generic Event Device status register (1 byte, SystemIO).
///
/// Protocol: the VMM sets a bit for each pending event and then raises
/// [`GED_GSI`] (one edge, e.g. one write to an irqfd). The guest's `_EVT`
/// method reads the register and, for each handled bit, writes that bit back
/// as 1 to acknowledge it: the register is write-1-to-clear.
pub const GED_STATUS_PORT: u16 = 0x608;
/// GED status bit: the power button was pressed.
pub const GED_EVENT_POWER_BUTTON: u8 = 1 << 0;
/// The GSI the GED interrupt is wired to. It is described as edge-triggered,
/// active-high, because a VMM raises it through an irqfd, which delivers a
/// pulse (level-triggered would need a resample fd to learn of the EOI).
pub const GED_GSI: u32 = 5;

/// COM1 base I/O port.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1 I/O port range length.
pub const COM1_PORT_LEN: u8 = 8;
/// COM1 interrupt (ISA IRQ, identity-mapped to the same GSI).
pub const COM1_GSI: u32 = 4;

/// The smallest guest we accept: the ACPI tables and boot structures all live
/// in the first MiB. (Real kernels need far more; tiny test guests do not.)
pub const MIN_MEM_BYTES: u64 = HIMEM_START;

/// Guest RAM sizes must be a whole number of these (KVM memory slots are
/// page granular).
pub const MEM_ALIGNMENT: u64 = 0x1000;

/// Why a guest RAM size cannot be laid out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    /// Below [`MIN_MEM_BYTES`].
    #[error("guest memory size {0:#x} bytes is too small: at least 1 MiB is required for the boot structures and ACPI tables")]
    TooSmall(u64),
    /// Not a multiple of [`MEM_ALIGNMENT`].
    #[error("guest memory size {0:#x} bytes is not a multiple of 4 KiB")]
    Unaligned(u64),
    /// The part above 4 GiB would end beyond the 64-bit address space or a
    /// region would not fit a `usize`.
    #[error("guest memory size {0:#x} bytes is too large: RAM relocated above 4 GiB would overflow the address space")]
    TooLarge(u64),
}

/// Splits `mem_bytes` of guest RAM around the 32-bit MMIO hole.
///
/// Returns `[0, min(mem, MMIO_HOLE_START))` and, if RAM is left over,
/// `[MMIO_HOLE_END, MMIO_HOLE_END + rest)`, as `(start, length)` pairs ready
/// for `GuestMemoryMmap::from_ranges`.
pub fn ram_regions(mem_bytes: u64) -> Result<Vec<(GuestAddress, usize)>, LayoutError> {
    if mem_bytes < MIN_MEM_BYTES {
        return Err(LayoutError::TooSmall(mem_bytes));
    }
    // A mask rather than `%`/is_multiple_of: MEM_ALIGNMENT is a power of two
    // and the workspace MSRV (1.80) predates is_multiple_of.
    if mem_bytes & (MEM_ALIGNMENT - 1) != 0 {
        return Err(LayoutError::Unaligned(mem_bytes));
    }
    let too_large = || LayoutError::TooLarge(mem_bytes);
    let low = mem_bytes.min(MMIO_HOLE_START);
    let high = mem_bytes - low;
    let mut regions = vec![(
        GuestAddress(0),
        usize::try_from(low).map_err(|_| too_large())?,
    )];
    if high > 0 {
        MMIO_HOLE_END.checked_add(high).ok_or_else(too_large)?;
        regions.push((
            GuestAddress(MMIO_HOLE_END),
            usize::try_from(high).map_err(|_| too_large())?,
        ));
    }
    Ok(regions)
}

/// End (exclusive) of the RAM below the MMIO hole for a guest of `mem_bytes`:
/// the ceiling for the initrd (see `boot::initrd_load_address`).
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_HOLE_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_is_one_region() {
        let r = ram_regions(128 << 20).unwrap();
        assert_eq!(r, vec![(GuestAddress(0), 128 << 20)]);
    }

    #[test]
    fn exactly_hole_start_is_one_region() {
        let r = ram_regions(MMIO_HOLE_START).unwrap();
        assert_eq!(r, vec![(GuestAddress(0), MMIO_HOLE_START as usize)]);
    }

    #[test]
    fn large_guest_is_split_around_hole() {
        let r = ram_regions(8 << 30).unwrap();
        assert_eq!(
            r,
            vec![
                (GuestAddress(0), 3 << 30),
                (GuestAddress(MMIO_HOLE_END), 5 << 30),
            ]
        );
    }

    #[test]
    fn minimum_is_one_mib() {
        assert!(ram_regions(MIN_MEM_BYTES).is_ok());
        assert_eq!(ram_regions(0), Err(LayoutError::TooSmall(0)));
        assert_eq!(
            ram_regions(MIN_MEM_BYTES - MEM_ALIGNMENT),
            Err(LayoutError::TooSmall(MIN_MEM_BYTES - MEM_ALIGNMENT))
        );
    }

    #[test]
    fn unaligned_is_rejected() {
        let size = (64 << 20) + 1;
        assert_eq!(ram_regions(size), Err(LayoutError::Unaligned(size)));
    }

    #[test]
    fn overflow_is_rejected() {
        let size = !(MEM_ALIGNMENT - 1);
        assert_eq!(ram_regions(size), Err(LayoutError::TooLarge(size)));
    }

    #[test]
    fn low_ram_end_stops_at_hole() {
        assert_eq!(low_ram_end(512 << 20), 512 << 20);
        assert_eq!(low_ram_end(8 << 30), MMIO_HOLE_START);
    }

    #[test]
    fn s5_request_value() {
        assert_eq!(ACPI_S5_REQUEST, 0x34);
    }

    #[test]
    fn fixed_regions_do_not_overlap() {
        const _: () = assert!(PVH_INFO_START < ZERO_PAGE_START);
        const _: () = assert!(ZERO_PAGE_START + 0x1000 <= BOOT_STACK_POINTER);
        const _: () = assert!(BOOT_STACK_POINTER < PML4_START);
        const _: () = assert!(PDE_START + 0x1000 <= CMDLINE_START);
        const _: () = assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
        const _: () = assert!(ACPI_AREA_START < ACPI_AREA_END);
        const _: () = assert!(VIRTIO_MMIO_BASE > MMIO_HOLE_START);
        const _: () = assert!(VIRTIO_MMIO_BASE < IOAPIC_START);
    }
}
