//! The guest's physical memory map, as reported through e820 (zero page) or the
//! PVH memory map table.

use linux_loader::bootparam::boot_e820_entry;
use linux_loader::loader::elf::start_info::hvm_memmap_table_entry;

use crate::layout::{
    ram_regions, LayoutError, ACPI_AREA_START, EBDA_START, HIMEM_START, LOW_MEMORY_END,
};

/// The kind of an e820 range; the discriminants are the e820 type codes,
/// which the PVH memory map table shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Reserved: the guest must not use it.
    Reserved = 2,
    /// ACPI reclaimable: usable once the ACPI tables have been read.
    Acpi = 3,
    /// ACPI non-volatile storage.
    Nvs = 4,
    /// Memory with errors.
    Unusable = 5,
}

/// One range of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Guest physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Kind,
}

impl E820Entry {
    fn new(addr: u64, size: u64, kind: E820Kind) -> Self {
        Self { addr, size, kind }
    }
}

impl From<E820Entry> for boot_e820_entry {
    fn from(e: E820Entry) -> Self {
        boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        }
    }
}

impl From<E820Entry> for hvm_memmap_table_entry {
    fn from(e: E820Entry) -> Self {
        hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind as u32,
            reserved: 0,
        }
    }
}

/// The memory map for a guest with `mem_bytes` of RAM laid out by
/// [`ram_regions`], sorted by address:
///
/// - RAM `[0, EBDA_START)`
/// - reserved `[EBDA_START, 640 KiB)` (EBDA)
/// - reserved `[ACPI_AREA_START, 1 MiB)`: the ACPI tables. Reserved rather
///   than ACPI-reclaimable so Linux keeps them (and the RSDP scan area) intact.
/// - RAM `[1 MiB, end of low RAM)` if the guest has more than 1 MiB
/// - RAM above 4 GiB, if any
pub fn e820_map(mem_bytes: u64) -> Result<Vec<E820Entry>, LayoutError> {
    let regions = ram_regions(mem_bytes)?;
    let mut map = vec![
        E820Entry::new(0, EBDA_START, E820Kind::Ram),
        E820Entry::new(EBDA_START, LOW_MEMORY_END - EBDA_START, E820Kind::Reserved),
        E820Entry::new(
            ACPI_AREA_START,
            HIMEM_START - ACPI_AREA_START,
            E820Kind::Reserved,
        ),
    ];
    for (start, len) in regions {
        // ram_regions guarantees both fit in u64 without overflow.
        let start = start.0;
        let end = start + len as u64;
        let start = start.max(HIMEM_START);
        if end > start {
            map.push(E820Entry::new(start, end - start, E820Kind::Ram));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{MMIO_HOLE_END, MMIO_HOLE_START};

    #[test]
    fn small_guest() {
        let map = e820_map(256 << 20).unwrap();
        assert_eq!(
            map,
            vec![
                E820Entry::new(0, 0x9fc00, E820Kind::Ram),
                E820Entry::new(0x9fc00, 0x400, E820Kind::Reserved),
                E820Entry::new(0xe0000, 0x20000, E820Kind::Reserved),
                E820Entry::new(0x10_0000, (256 << 20) - 0x10_0000, E820Kind::Ram),
            ]
        );
    }

    #[test]
    fn one_mib_guest_has_no_high_ram() {
        let map = e820_map(1 << 20).unwrap();
        assert_eq!(map.len(), 3);
        assert!(map.iter().all(|e| e.addr < HIMEM_START));
    }

    #[test]
    fn big_guest_has_ram_above_4g() {
        let map = e820_map(6 << 30).unwrap();
        assert_eq!(map.len(), 5);
        assert_eq!(
            map[3],
            E820Entry::new(HIMEM_START, MMIO_HOLE_START - HIMEM_START, E820Kind::Ram)
        );
        assert_eq!(
            map[4],
            E820Entry::new(MMIO_HOLE_END, 3 << 30, E820Kind::Ram)
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820Kind::Ram)
            .map(|e| e.size)
            .sum();
        // Everything but the EBDA..1 MiB window is usable.
        assert_eq!(ram, (6 << 30) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn sorted_and_disjoint() {
        let map = e820_map(5 << 30).unwrap();
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{w:?}");
        }
    }

    #[test]
    fn bad_size_is_an_error() {
        assert_eq!(e820_map(0), Err(LayoutError::TooSmall(0)));
    }

    #[test]
    fn conversions() {
        let e = E820Entry::new(0x1000, 0x2000, E820Kind::Acpi);
        let b: boot_e820_entry = e.into();
        let (addr, size, ty) = (b.addr, b.size, b.r#type);
        assert_eq!((addr, size, ty), (0x1000, 0x2000, 3));
        let h: hvm_memmap_table_entry = e.into();
        assert_eq!(
            (h.addr, h.size, h.type_, h.reserved),
            (0x1000, 0x2000, 3, 0)
        );
    }
}
