//! Direct kernel boot: loads a bzImage or ELF vmlinux, the initrd and command line, and the boot structures
//! the chosen entry protocol needs.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ironvirt_firmware::boot as fwboot;
use ironvirt_firmware::e820::E820Entry;
use ironvirt_firmware::layout;
use linux_loader::loader::{bzimage::BzImage, elf::Elf, KernelLoader, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::regs::BootEntry;
use crate::config::BootConfig;

/// setup_header.xloadflags bit: the kernel has a 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of the 64-bit entry point from the protected-mode kernel's load address.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// The bzImage setup header's "HdrS" signature sits at this offset.
const BZIMAGE_MAGIC_OFFSET: usize = 0x202;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read kernel image {path}: {source}")]
    KernelIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel image {path} is neither an ELF vmlinux nor a bzImage (file too short or no ELF/HdrS signature)")]
    KernelFormat { path: PathBuf },
    #[error("kernel image {path} could not be loaded ({reason}); is it truncated or corrupt?")]
    KernelLoad { path: PathBuf, reason: String },
    #[error("kernel image {path} has no 64-bit entry point (bzImage older than Linux 3.8 or 32-bit only)")]
    No64BitEntry { path: PathBuf },
    #[error("cannot read initrd {path}: {source}")]
    InitrdIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initrd {path} ({size} bytes) does not fit in guest memory: {reason}")]
    InitrdFit {
        path: PathBuf,
        size: u64,
        reason: String,
    },
    #[error("cannot write the kernel command line: {0}")]
    Cmdline(String),
    #[error("cannot write boot parameters: {0}")]
    Params(String),
}

fn kernel_io(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::KernelIo {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads everything for a direct kernel boot and returns where the boot vCPU starts.
pub fn load(
    mem: &GuestMemoryMmap,
    boot: &BootConfig,
    e820: &[E820Entry],
    rsdp: GuestAddress,
) -> Result<BootEntry, BootError> {
    let path = boot.kernel.as_path();
    let mut kernel = File::open(path).map_err(kernel_io(path))?;
    let mut head = [0u8; 0x210];
    let head_len = read_up_to(&mut kernel, &mut head).map_err(kernel_io(path))?;
    kernel.seek(SeekFrom::Start(0)).map_err(kernel_io(path))?;
    let high = Some(GuestAddress(layout::HIMEM_START));
    let load_error = |e: linux_loader::loader::Error| BootError::KernelLoad {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };

    let (kernel_entry, setup_header) = if head_len >= 4 && &head[..4] == ELF_MAGIC {
        let result = Elf::load(mem, None, &mut kernel, high).map_err(load_error)?;
        match result.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(entry) => (KernelEntry::Pvh(entry), None),
            _ => (KernelEntry::Linux64(result.kernel_load), None),
        }
    } else if head_len >= BZIMAGE_MAGIC_OFFSET + 4
        && &head[BZIMAGE_MAGIC_OFFSET..BZIMAGE_MAGIC_OFFSET + 4] == b"HdrS"
    {
        let result = BzImage::load(mem, None, &mut kernel, high).map_err(load_error)?;
        let header = result
            .setup_header
            .ok_or_else(|| load_error(linux_loader::loader::Error::InvalidKernelStartAddress))?;
        if header.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BootError::No64BitEntry {
                path: path.to_path_buf(),
            });
        }
        (
            KernelEntry::Linux64(GuestAddress(
                result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
            )),
            Some(header),
        )
    } else {
        return Err(BootError::KernelFormat {
            path: path.to_path_buf(),
        });
    };

    let cmdline_len =
        fwboot::write_cmdline(mem, &boot.cmdline).map_err(|e| BootError::Cmdline(e.to_string()))?;
    let initrd = match &boot.initrd {
        Some(p) => Some(load_initrd(
            mem,
            p,
            e820,
            setup_header.map(|h| h.initrd_addr_max),
        )?),
        None => None,
    };

    match kernel_entry {
        KernelEntry::Pvh(entry) => {
            let start_info = fwboot::write_pvh_start_info(mem, cmdline_len > 0, initrd, e820, rsdp)
                .map_err(|e| BootError::Params(e.to_string()))?;
            Ok(BootEntry::Pvh { entry, start_info })
        }
        KernelEntry::Linux64(entry) => {
            let params = fwboot::linux_boot_params(setup_header, cmdline_len, initrd, e820, rsdp)
                .map_err(|e| BootError::Params(e.to_string()))?;
            let boot_params = fwboot::write_boot_params(mem, &params)
                .map_err(|e| BootError::Params(e.to_string()))?;
            Ok(BootEntry::Linux64 { entry, boot_params })
        }
    }
}

enum KernelEntry {
    Pvh(GuestAddress),
    Linux64(GuestAddress),
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// End of the RAM region that starts at 1 MiB (initrds must stay below 4 GiB for both protocols).
fn low_ram_end(e820: &[E820Entry]) -> u64 {
    e820.iter()
        .filter(|e| {
            e.kind == ironvirt_firmware::e820::E820Kind::Ram && e.addr == layout::HIMEM_START
        })
        .map(|e| e.addr + e.size)
        .next()
        .unwrap_or(layout::HIMEM_START)
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    e820: &[E820Entry],
    initrd_addr_max: Option<u32>,
) -> Result<(GuestAddress, u64), BootError> {
    let io = |source| BootError::InitrdIo {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let addr =
        fwboot::initrd_load_address(low_ram_end(e820), size, initrd_addr_max).map_err(|e| {
            BootError::InitrdFit {
                path: path.to_path_buf(),
                size,
                reason: e.to_string(),
            }
        })?;
    let len = usize::try_from(size).map_err(|_| BootError::InitrdFit {
        path: path.to_path_buf(),
        size,
        reason: "too large for this host".into(),
    })?;
    mem.read_exact_volatile_from(addr, &mut file, len)
        .map_err(|e| BootError::InitrdIo {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((addr, size))
}
