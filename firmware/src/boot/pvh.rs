//! The PVH boot ABI's `hvm_start_info`, for ELF kernels with a PVH entry note.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::boot::BootError;
use crate::e820::E820Entry;
use crate::layout::{CMDLINE_START, PVH_INFO_START, ZERO_PAGE_START};

const START_INFO_SIZE: u64 = std::mem::size_of::<hvm_start_info>() as u64;
const MEMMAP_ENTRY_SIZE: u64 = std::mem::size_of::<hvm_memmap_table_entry>() as u64;
const MODLIST_ENTRY_SIZE: u64 = std::mem::size_of::<hvm_modlist_entry>() as u64;

/// How many memory map entries fit between [`PVH_INFO_START`] and the zero
/// page, next to the start info and one module entry.
pub const PVH_MAX_E820_ENTRIES: usize =
    ((ZERO_PAGE_START - PVH_INFO_START - START_INFO_SIZE - MODLIST_ENTRY_SIZE) / MEMMAP_ENTRY_SIZE)
        as usize;

fn write<M: GuestMemory>(
    mem: &M,
    what: &'static str,
    addr: u64,
    bytes: &[u8],
) -> Result<(), BootError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| BootError::GuestMemory { what, addr, source })
}

/// Writes `hvm_start_info` (version 1) at [`PVH_INFO_START`], followed by the
/// memory map table and, with an initrd, a one-entry module list. Returns the
/// start info's address (the value for `%ebx` at the PVH entry point).
///
/// `cmdline` says whether [`crate::boot::write_cmdline`] put a command line at
/// [`CMDLINE_START`]; without one `cmdline_paddr` is 0 ("absent").
pub fn write_pvh_start_info<M: GuestMemory>(
    mem: &M,
    cmdline: bool,
    initrd: Option<(GuestAddress, u64)>,
    e820: &[E820Entry],
    rsdp: GuestAddress,
) -> Result<GuestAddress, BootError> {
    if e820.len() > PVH_MAX_E820_ENTRIES {
        return Err(BootError::TooManyE820Entries {
            count: e820.len(),
            max: PVH_MAX_E820_ENTRIES,
        });
    }
    // All entry sizes are multiples of 8, so everything stays 8-byte aligned.
    let memmap_addr = PVH_INFO_START + START_INFO_SIZE;
    let modlist_addr = memmap_addr + e820.len() as u64 * MEMMAP_ENTRY_SIZE;

    let mut memmap = Vec::with_capacity(e820.len() * MEMMAP_ENTRY_SIZE as usize);
    for entry in e820 {
        let raw: hvm_memmap_table_entry = (*entry).into();
        memmap.extend_from_slice(vm_memory::ByteValued::as_slice(&raw));
    }
    write(mem, "PVH memory map table", memmap_addr, &memmap)?;

    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        rsdp_paddr: rsdp.0,
        memmap_paddr: memmap_addr,
        // Checked against PVH_MAX_E820_ENTRIES above.
        memmap_entries: e820.len() as u32,
        cmdline_paddr: if cmdline { CMDLINE_START } else { 0 },
        ..Default::default()
    };
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr.0,
            size,
            ..Default::default()
        };
        write(
            mem,
            "PVH module list",
            modlist_addr,
            vm_memory::ByteValued::as_slice(&module),
        )?;
        info.nr_modules = 1;
        info.modlist_paddr = modlist_addr;
    }
    write(
        mem,
        "PVH start info",
        PVH_INFO_START,
        vm_memory::ByteValued::as_slice(&info),
    )?;
    Ok(GuestAddress(PVH_INFO_START))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{e820_map, E820Kind};
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn start_info_with_initrd() {
        let mem = mem();
        let map = e820_map(6 << 30).unwrap();
        let initrd = (GuestAddress(0x0800_0000), 0x4000);
        let addr =
            write_pvh_start_info(&mem, true, Some(initrd), &map, GuestAddress(0xe0000)).unwrap();
        assert_eq!(addr, GuestAddress(0x6000));
        let info: hvm_start_info = mem.read_obj(addr).unwrap();
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.version, 1);
        assert_eq!(info.flags, 0);
        assert_eq!(info.cmdline_paddr, 0x20000);
        assert_eq!(info.rsdp_paddr, 0xe0000);
        assert_eq!(info.memmap_entries as usize, map.len());
        assert!(info.memmap_paddr > 0x6000);
        for (i, e) in map.iter().enumerate() {
            let raw: hvm_memmap_table_entry = mem
                .read_obj(GuestAddress(info.memmap_paddr + i as u64 * 24))
                .unwrap();
            assert_eq!(
                (raw.addr, raw.size, raw.type_),
                (e.addr, e.size, e.kind as u32)
            );
        }
        assert_eq!(info.nr_modules, 1);
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), (0x0800_0000, 0x4000));
        assert_eq!(module.cmdline_paddr, 0);
        assert!(info.modlist_paddr + 32 <= ZERO_PAGE_START);
        assert!(info.modlist_paddr >= info.memmap_paddr + map.len() as u64 * 24);
    }

    #[test]
    fn absent_cmdline_and_initrd_are_zero() {
        let mem = mem();
        let map = e820_map(1 << 20).unwrap();
        write_pvh_start_info(&mem, false, None, &map, GuestAddress(0xe0000)).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert_eq!(info.cmdline_paddr, 0);
        assert_eq!(info.nr_modules, 0);
        assert_eq!(info.modlist_paddr, 0);
    }

    #[test]
    fn memmap_capacity() {
        let mem = mem();
        let entry = E820Entry {
            addr: 0,
            size: 0x1000,
            kind: E820Kind::Ram,
        };
        let full = vec![entry; PVH_MAX_E820_ENTRIES];
        let initrd = Some((GuestAddress(0x20_0000), 1));
        write_pvh_start_info(&mem, true, initrd, &full, GuestAddress(0)).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert!(info.modlist_paddr + 32 <= ZERO_PAGE_START);
        let too_many = vec![entry; PVH_MAX_E820_ENTRIES + 1];
        let err = write_pvh_start_info(&mem, true, initrd, &too_many, GuestAddress(0)).unwrap_err();
        assert!(matches!(err, BootError::TooManyE820Entries { .. }));
    }
}
