//! Linux boot structures for direct kernel boot: the command line, the zero
//! page (`boot_params`) for the 64-bit entry, the PVH `hvm_start_info`, and
//! where to put the initrd.

mod cmdline;
mod initrd;
mod pvh;
mod zero_page;

use thiserror::Error;
use vm_memory::GuestMemoryError;

pub use cmdline::write_cmdline;
pub use initrd::{initrd_load_address, DEFAULT_INITRD_ADDR_MAX, INITRD_ALIGNMENT};
pub use pvh::{write_pvh_start_info, PVH_MAX_E820_ENTRIES};
pub use zero_page::{
    linux_boot_params, write_boot_params, KERNEL_BOOT_FLAG_MAGIC, KERNEL_HDR_MAGIC,
    KERNEL_LOADER_OTHER, KERNEL_MIN_ALIGNMENT_BYTES,
};

/// Why a boot structure could not be built or written.
#[derive(Debug, Error)]
pub enum BootError {
    /// The command line (plus its NUL) exceeds the space reserved for it.
    #[error("kernel command line is {len} bytes but at most {max} fit (including the terminating NUL); shorten it")]
    CmdlineTooLong {
        /// Length including the NUL we would append.
        len: usize,
        /// The limit ([`crate::layout::CMDLINE_MAX_SIZE`]).
        max: usize,
    },
    /// The command line contains a NUL byte, which would silently truncate it.
    #[error("kernel command line contains a NUL byte at offset {0}; remove it")]
    CmdlineContainsNul(usize),
    /// The kernel's setup header declares a smaller command line limit.
    #[error(
        "kernel command line is {len} bytes but this kernel accepts at most {max}; shorten it"
    )]
    CmdlineTooLongForKernel {
        /// Length without the NUL.
        len: usize,
        /// The kernel's `cmdline_size`.
        max: u32,
    },
    /// More memory map entries than the structure holds.
    #[error("the memory map has {count} entries but at most {max} fit")]
    TooManyE820Entries {
        /// Entries given.
        count: usize,
        /// Capacity.
        max: usize,
    },
    /// A zero-length initrd.
    #[error("the initrd is empty; pass a non-empty initrd or none at all")]
    EmptyInitrd,
    /// No page-aligned place for the initrd between the kernel area and the limit.
    #[error("an initrd of {size} bytes does not fit below {limit:#x} (and above 1 MiB); give the guest more memory or use a smaller initrd")]
    InitrdDoesNotFit {
        /// Initrd size.
        size: u64,
        /// The address it must end below.
        limit: u64,
    },
    /// Writing into guest memory failed.
    #[error("cannot write the {what} at guest address {addr:#x}: {source}")]
    GuestMemory {
        /// What was being written.
        what: &'static str,
        /// Where.
        addr: u64,
        /// The guest memory error.
        #[source]
        source: GuestMemoryError,
    },
}
