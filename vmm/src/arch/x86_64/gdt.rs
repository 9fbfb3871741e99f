//! The boot GDT and its conversion into KVM segment registers.

use kvm_bindings::kvm_segment;

/// Builds a GDT descriptor from its flags (bits 52..55 and 40..47 of the descriptor), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// Selector indexes into [`BOOT_GDT`].
pub const CODE32_INDEX: u16 = 1;
pub const CODE64_INDEX: u16 = 2;
pub const DATA_INDEX: u16 = 3;
pub const TSS_INDEX: u16 = 4;

/// Flat segments for both boot protocols: the PVH entry runs 32-bit protected-mode code, the Linux 64-bit
/// entry long-mode code; both need flat data segments and a TSS for VMX/SVM entry checks.
pub const BOOT_GDT: [u64; 5] = [
    0,                             // null
    gdt_entry(0xc09b, 0, 0xfffff), // 32-bit code, 4 GiB, granularity 4 KiB
    gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
    gdt_entry(0xc093, 0, 0xfffff), // data
    gdt_entry(0x808b, 0, 0xfffff), // 32-bit busy TSS
];

/// The `kvm_segment` a descriptor at `index` loads into a segment register.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_segment_fields() {
        let s = segment_from_gdt(BOOT_GDT[CODE64_INDEX as usize], CODE64_INDEX);
        assert_eq!((s.base, s.limit, s.selector), (0, 0xffff_ffff, 0x10));
        assert_eq!(
            (s.type_, s.present, s.dpl, s.db, s.s, s.l, s.g),
            (0xb, 1, 0, 0, 1, 1, 1)
        );
    }

    #[test]
    fn code32_and_data_segments() {
        let c = segment_from_gdt(BOOT_GDT[CODE32_INDEX as usize], CODE32_INDEX);
        assert_eq!((c.db, c.l, c.type_), (1, 0, 0xb));
        let d = segment_from_gdt(BOOT_GDT[DATA_INDEX as usize], DATA_INDEX);
        assert_eq!((d.type_, d.s, d.db, d.limit), (3, 1, 1, 0xffff_ffff));
        let t = segment_from_gdt(BOOT_GDT[TSS_INDEX as usize], TSS_INDEX);
        assert_eq!((t.type_, t.s), (0xb, 0));
    }
}
