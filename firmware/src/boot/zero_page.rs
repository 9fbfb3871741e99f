//! The zero page (`struct boot_params`) for the Linux x86 64-bit boot protocol.

use linux_loader::bootparam::{boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::boot::BootError;
use crate::e820::E820Entry;
use crate::layout::{CMDLINE_START, ZERO_PAGE_START};

/// `boot_flag` value every setup header carries.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header` value: "HdrS" little-endian.
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader` for a boot loader without an assigned ID.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `kernel_alignment` to report for an ELF vmlinux, which has no setup header
/// to take it from: 16 MiB, the x86_64 default `CONFIG_PHYSICAL_ALIGN`.
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;

/// The setup header version from which `cmdline_size` is meaningful.
const PROTOCOL_CMDLINE_SIZE: u16 = 0x0206;

/// Low and high 32-bit halves; the boot protocol splits 64-bit values between
/// the setup header and the `ext_*` fields of `boot_params`.
fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// Builds the zero page for the 64-bit entry point.
///
/// - `header`: the setup header read from a bzImage (it is copied, then our
///   fields overwrite it), or `None` for an ELF vmlinux.
/// - `cmdline_len`: what [`crate::boot::write_cmdline`] returned (bytes
///   including the NUL), or 0 for no command line.
/// - `initrd`: where the initrd was loaded and its size.
/// - `e820`: the memory map, at most 128 entries.
/// - `rsdp`: the ACPI RSDP, so the kernel need not scan for it.
pub fn linux_boot_params(
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<(GuestAddress, u64)>,
    e820: &[E820Entry],
    rsdp: GuestAddress,
) -> Result<boot_params, BootError> {
    let mut params = boot_params::default();
    match header {
        Some(hdr) => {
            params.hdr = hdr;
            let (version, max) = (hdr.version, hdr.cmdline_size);
            let len = cmdline_len.saturating_sub(1);
            if version >= PROTOCOL_CMDLINE_SIZE && len > max as usize {
                return Err(BootError::CmdlineTooLongForKernel { len, max });
            }
        }
        None => params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES,
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;

    if cmdline_len > 0 {
        params.hdr.cmd_line_ptr = CMDLINE_START as u32;
        params.ext_cmd_line_ptr = 0;
        // cmdline_len is at most CMDLINE_MAX_SIZE when it came from
        // write_cmdline; saturate rather than wrap if a caller made one up.
        params.hdr.cmdline_size = u32::try_from(cmdline_len - 1).unwrap_or(u32::MAX);
    } else {
        params.hdr.cmd_line_ptr = 0;
        params.hdr.cmdline_size = 0;
    }

    let ((image, ext_image), (size, ext_size)) = match initrd {
        Some((addr, len)) => (split(addr.0), split(len)),
        None => ((0, 0), (0, 0)),
    };
    params.hdr.ramdisk_image = image;
    params.hdr.ramdisk_size = size;
    params.ext_ramdisk_image = ext_image;
    params.ext_ramdisk_size = ext_size;

    let max = params.e820_table.len();
    if e820.len() > max {
        return Err(BootError::TooManyE820Entries {
            count: e820.len(),
            max,
        });
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(e820) {
        *slot = (*entry).into();
    }
    // Checked above: at most 128 entries, so it fits the u8 count.
    params.e820_entries = e820.len() as u8;

    params.acpi_rsdp_addr = rsdp.0;
    Ok(params)
}

/// Writes `params` at [`ZERO_PAGE_START`], returning that address (the value
/// for `%rsi` at the 64-bit entry point).
pub fn write_boot_params<M: GuestMemory>(
    mem: &M,
    params: &boot_params,
) -> Result<GuestAddress, BootError> {
    let addr = GuestAddress(ZERO_PAGE_START);
    mem.write_obj(*params, addr)
        .map_err(|source| BootError::GuestMemory {
            what: "zero page (boot_params)",
            addr: ZERO_PAGE_START,
            source,
        })?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{e820_map, E820Kind};
    use vm_memory::GuestMemoryMmap;

    fn rsdp() -> GuestAddress {
        GuestAddress(0xe0000)
    }

    #[test]
    fn elf_kernel_fields() {
        let map = e820_map(256 << 20).unwrap();
        let initrd = (GuestAddress(0x0f00_0000), 0x12_3456);
        let p = linux_boot_params(None, 14, Some(initrd), &map, rsdp()).unwrap();
        let hdr = p.hdr;
        assert_eq!(hdr.type_of_loader, 0xff);
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!({ hdr.kernel_alignment }, 0x0100_0000);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.cmdline_size }, 13);
        assert_eq!({ hdr.ramdisk_image }, 0x0f00_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x12_3456);
        assert_eq!({ p.ext_ramdisk_image }, 0);
        assert_eq!({ p.ext_cmd_line_ptr }, 0);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        assert_eq!(p.e820_entries as usize, map.len());
        for (i, e) in map.iter().enumerate() {
            let b = p.e820_table[i];
            assert_eq!(
                ({ b.addr }, { b.size }, { b.r#type }),
                (e.addr, e.size, e.kind as u32)
            );
        }
    }

    #[test]
    fn bzimage_header_is_kept_and_overridden() {
        let hdr = setup_header {
            setup_sects: 27,
            version: 0x020f,
            cmdline_size: 2047,
            initrd_addr_max: 0x7fff_ffff,
            kernel_alignment: 0x20_0000,
            type_of_loader: 0,
            ..Default::default()
        };
        let p = linux_boot_params(Some(hdr), 0, None, &[], rsdp()).unwrap();
        let h = p.hdr;
        assert_eq!(h.setup_sects, 27);
        assert_eq!({ h.version }, 0x020f);
        assert_eq!(
            { h.kernel_alignment },
            0x20_0000,
            "kernel's own alignment kept"
        );
        assert_eq!({ h.initrd_addr_max }, 0x7fff_ffff);
        assert_eq!(h.type_of_loader, 0xff);
        assert_eq!({ h.cmd_line_ptr }, 0, "no command line");
        assert_eq!({ h.ramdisk_image }, 0);
        assert_eq!(p.e820_entries, 0);
    }

    #[test]
    fn cmdline_longer_than_kernel_accepts() {
        let hdr = setup_header {
            version: 0x0206,
            cmdline_size: 255,
            ..Default::default()
        };
        assert!(linux_boot_params(Some(hdr), 256, None, &[], rsdp()).is_ok());
        let err = linux_boot_params(Some(hdr), 257, None, &[], rsdp()).unwrap_err();
        assert!(matches!(
            err,
            BootError::CmdlineTooLongForKernel { len: 256, max: 255 }
        ));
        // Old protocols have no cmdline_size field: not checked.
        let old = setup_header {
            version: 0x0205,
            ..Default::default()
        };
        assert!(linux_boot_params(Some(old), 1000, None, &[], rsdp()).is_ok());
    }

    #[test]
    fn initrd_above_4g_uses_ext_fields() {
        let initrd = (GuestAddress(0x1_2345_6000), 0x1_0000_0001);
        let p = linux_boot_params(None, 0, Some(initrd), &[], rsdp()).unwrap();
        assert_eq!(
            ({ p.hdr.ramdisk_image }, { p.ext_ramdisk_image }),
            (0x2345_6000, 1)
        );
        assert_eq!(({ p.hdr.ramdisk_size }, { p.ext_ramdisk_size }), (1, 1));
    }

    #[test]
    fn e820_capacity() {
        let entry = E820Entry {
            addr: 0,
            size: 0x1000,
            kind: E820Kind::Ram,
        };
        assert!(linux_boot_params(None, 0, None, &[entry; 128], rsdp()).is_ok());
        let err = linux_boot_params(None, 0, None, &[entry; 129], rsdp()).unwrap_err();
        assert!(matches!(
            err,
            BootError::TooManyE820Entries {
                count: 129,
                max: 128
            }
        ));
    }

    #[test]
    fn written_at_zero_page() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let map = e820_map(1 << 20).unwrap();
        let p = linux_boot_params(None, 5, None, &map, rsdp()).unwrap();
        assert_eq!(write_boot_params(&mem, &p).unwrap(), GuestAddress(0x7000));
        let back: boot_params = mem.read_obj(GuestAddress(0x7000)).unwrap();
        assert_eq!(back, p);
        // Spot-check raw offsets from the boot protocol documentation.
        let flag: u16 = mem.read_obj(GuestAddress(0x7000 + 0x1fe)).unwrap();
        assert_eq!(flag, 0xaa55);
        let magic: u32 = mem.read_obj(GuestAddress(0x7000 + 0x202)).unwrap();
        assert_eq!(magic, 0x5372_6448);
        let entries: u8 = mem.read_obj(GuestAddress(0x7000 + 0x1e8)).unwrap();
        assert_eq!(entries as usize, map.len());
        let rsdp_addr: u64 = mem.read_obj(GuestAddress(0x7000 + 0x70)).unwrap();
        assert_eq!(rsdp_addr, 0xe0000);
        let cmdline: u32 = mem.read_obj(GuestAddress(0x7000 + 0x228)).unwrap();
        assert_eq!(cmdline, 0x20000);
    }

    #[test]
    fn unmapped_zero_page_is_an_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err = write_boot_params(&mem, &boot_params::default()).unwrap_err();
        assert!(matches!(err, BootError::GuestMemory { addr: 0x7000, .. }));
    }
}
