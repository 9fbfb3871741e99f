//! Registers, descriptor tables and page tables for the two boot entries we use:
//! - the Linux 64-bit boot protocol (long mode, identity-mapped low 4 GiB, `rsi` = boot_params), for bzImages
//!   and ELF kernels without a PVH note;
//! - the PVH entry (32-bit protected mode, paging off, `ebx` = hvm_start_info), for ELF kernels that have one.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{segment_from_gdt, BOOT_GDT, CODE32_INDEX, CODE64_INDEX, DATA_INDEX, TSS_INDEX};

const BOOT_GDT_ADDR: u64 = 0x500;
const BOOT_IDT_ADDR: u64 = 0x540;
/// Identity page tables: PML4, one PDPT, and four page directories of 2 MiB pages covering 4 GiB.
const PML4_ADDR: u64 = 0x9000;
const PDPT_ADDR: u64 = 0xa000;
const PD_ADDR: u64 = 0xb000;
const PD_COUNT: u64 = 4;
/// Top of the boot stack for the 64-bit entry (grows down, below the page tables).
const BOOT_STACK_TOP: u64 = 0x8ff0;

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Bit 1 of RFLAGS is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2MIB_PAGE: u64 = 0x83;

#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("could not write the boot {what} into guest memory: {source}")]
    Memory {
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    #[error("KVM refused the vCPU's {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

/// Which entry protocol a vCPU starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootEntry {
    /// 64-bit Linux boot protocol at `entry`, with boot_params at `boot_params`.
    Linux64 {
        entry: GuestAddress,
        boot_params: GuestAddress,
    },
    /// PVH 32-bit entry at `entry`, with hvm_start_info at `start_info`.
    Pvh {
        entry: GuestAddress,
        start_info: GuestAddress,
    },
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    what: &'static str,
    val: T,
    addr: u64,
) -> Result<(), RegsError> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|source| RegsError::Memory { what, source })
}

/// Writes the GDT, an empty IDT and (for the 64-bit entry) identity page tables into guest memory.
pub fn write_boot_tables(mem: &GuestMemoryMmap, entry: &BootEntry) -> Result<(), RegsError> {
    for (i, desc) in BOOT_GDT.iter().enumerate() {
        write(mem, "GDT", *desc, BOOT_GDT_ADDR + 8 * i as u64)?;
    }
    write(mem, "IDT", 0u64, BOOT_IDT_ADDR)?;
    if let BootEntry::Linux64 { .. } = entry {
        write(mem, "page tables", PDPT_ADDR | PTE_PRESENT_RW, PML4_ADDR)?;
        for pd in 0..PD_COUNT {
            write(
                mem,
                "page tables",
                (PD_ADDR + pd * 0x1000) | PTE_PRESENT_RW,
                PDPT_ADDR + pd * 8,
            )?;
        }
        for i in 0..512 * PD_COUNT {
            write(
                mem,
                "page tables",
                (i << 21) | PDE_2MIB_PAGE,
                PD_ADDR + i * 8,
            )?;
        }
    }
    Ok(())
}

/// Special registers for `entry`, starting from the vCPU's reset state `sregs`.
pub fn boot_sregs(mut sregs: kvm_sregs, entry: &BootEntry) -> kvm_sregs {
    let code_index = match entry {
        BootEntry::Linux64 { .. } => CODE64_INDEX,
        BootEntry::Pvh { .. } => CODE32_INDEX,
    };
    let data = segment_from_gdt(BOOT_GDT[DATA_INDEX as usize], DATA_INDEX);
    sregs.cs = segment_from_gdt(BOOT_GDT[code_index as usize], code_index);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(BOOT_GDT[TSS_INDEX as usize], TSS_INDEX);
    sregs.gdt.base = BOOT_GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    sregs.idt.base = BOOT_IDT_ADDR;
    sregs.idt.limit = 7;
    match entry {
        BootEntry::Linux64 { .. } => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.cr3 = PML4_ADDR;
            sregs.cr4 = X86_CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
        }
        BootEntry::Pvh { .. } => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    sregs
}

pub fn boot_regs(entry: &BootEntry) -> kvm_regs {
    match *entry {
        BootEntry::Linux64 { entry, boot_params } => kvm_regs {
            rip: entry.0,
            rsp: BOOT_STACK_TOP,
            rbp: BOOT_STACK_TOP,
            rsi: boot_params.0,
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        },
        BootEntry::Pvh { entry, start_info } => kvm_regs {
            rip: entry.0,
            rbx: start_info.0,
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        },
    }
}

/// x87 control word and MXCSR at their power-on values (all exceptions masked).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Puts the boot vCPU at `entry`.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: &BootEntry) -> Result<(), RegsError> {
    let sregs = vcpu.get_sregs().map_err(|source| RegsError::Kvm {
        what: "special registers",
        source,
    })?;
    vcpu.set_sregs(&boot_sregs(sregs, entry))
        .map_err(|source| RegsError::Kvm {
            what: "special registers",
            source,
        })?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(|source| RegsError::Kvm {
            what: "registers",
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn long_mode_tables_identity_map_4g() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let entry = BootEntry::Linux64 {
            entry: GuestAddress(0x100200),
            boot_params: GuestAddress(0x7000),
        };
        write_boot_tables(&mem, &entry).unwrap();
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(PML4_ADDR)).unwrap(),
            PDPT_ADDR | 3
        );
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(PDPT_ADDR + 24)).unwrap(),
            (PD_ADDR + 0x3000) | 3
        );
        let last = PD_ADDR + (512 * PD_COUNT - 1) * 8;
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(last)).unwrap(),
            (0xffe0_0000) | 0x83
        );
        let s = boot_sregs(kvm_sregs::default(), &entry);
        assert_eq!(
            (s.cs.l, s.cs.selector, s.efer, s.cr3),
            (1, 0x10, EFER_LME | EFER_LMA, PML4_ADDR)
        );
        assert_eq!(boot_regs(&entry).rsi, 0x7000);
    }

    #[test]
    fn pvh_entry_is_32bit_protected_mode_without_paging() {
        let entry = BootEntry::Pvh {
            entry: GuestAddress(0x1000000),
            start_info: GuestAddress(0x6000),
        };
        let s = boot_sregs(kvm_sregs::default(), &entry);
        assert_eq!((s.cs.db, s.cs.l, s.cr0 & X86_CR0_PG, s.efer), (1, 0, 0, 0));
        assert_eq!(boot_regs(&entry).rbx, 0x6000);
    }
}
