//! Where to load the initrd.

use vm_memory::GuestAddress;

use crate::boot::BootError;
use crate::layout::HIMEM_START;

/// The initrd starts on a page boundary (the boot protocol asks for it).
pub const INITRD_ALIGNMENT: u64 = 0x1000;

/// The `initrd_addr_max` the boot protocol prescribes when a kernel's header
/// says 0 (protocol versions before 2.03).
pub const DEFAULT_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;

/// The highest page-aligned address at which an initrd of `initrd_size` bytes
/// ends at or below both `mem_low_end` (the end of RAM below the MMIO hole) and
/// `initrd_addr_max` (the last byte the kernel accepts, from a bzImage setup
/// header; `None` for an ELF kernel, `Some(0)` means the protocol default).
///
/// Placing it as high as possible keeps it clear of the kernel loaded at
/// 1 MiB; the caller still has to check it does not overlap the kernel image,
/// which this function cannot see. It never returns an address below 1 MiB,
/// where the boot structures and ACPI tables live.
pub fn initrd_load_address(
    mem_low_end: u64,
    initrd_size: u64,
    initrd_addr_max: Option<u32>,
) -> Result<GuestAddress, BootError> {
    if initrd_size == 0 {
        return Err(BootError::EmptyInitrd);
    }
    let limit = match initrd_addr_max {
        None => mem_low_end,
        Some(0) => mem_low_end.min(u64::from(DEFAULT_INITRD_ADDR_MAX) + 1),
        Some(max) => mem_low_end.min(u64::from(max) + 1),
    };
    let does_not_fit = BootError::InitrdDoesNotFit {
        size: initrd_size,
        limit,
    };
    let start = match limit.checked_sub(initrd_size) {
        Some(start) => start & !(INITRD_ALIGNMENT - 1),
        None => return Err(does_not_fit),
    };
    if start < HIMEM_START {
        return Err(does_not_fit);
    }
    Ok(GuestAddress(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_aligned_below_ram_end() {
        let a = initrd_load_address(128 << 20, 0x1800, None).unwrap();
        assert_eq!(a, GuestAddress((128 << 20) - 0x2000));
        let a = initrd_load_address(128 << 20, 0x2000, None).unwrap();
        assert_eq!(a, GuestAddress((128 << 20) - 0x2000));
    }

    #[test]
    fn honours_initrd_addr_max() {
        // initrd_addr_max is inclusive: the initrd may end at max + 1.
        let a = initrd_load_address(3 << 30, 0x1000, Some(0x7fff_ffff)).unwrap();
        assert_eq!(a, GuestAddress(0x8000_0000 - 0x1000));
        let a = initrd_load_address(3 << 30, 0x1000, Some(0)).unwrap();
        assert_eq!(a, GuestAddress(0x3800_0000 - 0x1000));
        // A limit above RAM does not matter.
        let a = initrd_load_address(64 << 20, 0x1000, Some(0x7fff_ffff)).unwrap();
        assert_eq!(a, GuestAddress((64 << 20) - 0x1000));
    }

    #[test]
    fn too_big_is_an_error() {
        let err = initrd_load_address(16 << 20, 16 << 20, None).unwrap_err();
        assert!(matches!(
            err,
            BootError::InitrdDoesNotFit { size, limit } if size == 16 << 20 && limit == 16 << 20
        ));
        // Would land below 1 MiB.
        assert!(initrd_load_address(2 << 20, (1 << 20) + 1, None).is_err());
        assert!(initrd_load_address(0, 1, None).is_err());
        assert!(initrd_load_address(u64::MAX, u64::MAX, None).is_err());
    }

    #[test]
    fn empty_is_an_error() {
        assert!(matches!(
            initrd_load_address(16 << 20, 0, None),
            Err(BootError::EmptyInitrd)
        ));
    }
}
