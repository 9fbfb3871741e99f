//! Guest buffers as slices and iovecs (for virtio-blk and virtio-net), and frames between a TAP and guest
//! memory without a staging copy: `writev` from a transmit chain's buffers and
//! `readv` into receive buffers. Guest buffers become iovecs only when each lies inside one memory region;
//! callers fall back to copying otherwise.

use std::os::fd::RawFd;

use virtio_queue::DescriptorChain;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

/// The kernel's limit on iovecs per call.
const IOV_MAX: usize = 1024;

/// A chain's device-readable (`writable == false`) or device-writable buffers as slices of guest memory,
/// less `skip_front` bytes at the start and `drop_back` at the end; None if one is not wholly inside one
/// guest memory region, or the buffers are shorter than what is skipped.
pub fn chain_slices<'m>(
    mem: &'m GuestMemoryMmap,
    chain: &DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
    skip_front: usize,
    drop_back: usize,
) -> Option<Vec<VolatileSlice<'m>>> {
    let ranges: Vec<(u64, usize)> = chain
        .clone()
        .filter(|d| d.is_write_only() == writable)
        .map(|d| (d.addr().0, d.len() as usize))
        .collect();
    let total: usize = ranges.iter().map(|r| r.1).sum();
    let mut left = total.checked_sub(skip_front + drop_back)?;
    let mut out = Vec::with_capacity(ranges.len());
    let mut pos = 0usize;
    for (addr, len) in ranges {
        let start = skip_front.saturating_sub(pos).min(len);
        pos += len;
        let take = (len - start).min(left);
        if take == 0 {
            continue;
        }
        out.push(
            mem.get_slice(GuestAddress(addr + start as u64), take)
                .ok()?,
        );
        left -= take;
    }
    Some(out)
}

/// A chain's readable or writable buffers as iovecs, with their total length (see [`chain_slices`]).
pub fn chain_iovecs(
    mem: &GuestMemoryMmap,
    chain: &DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
) -> Option<(Vec<libc::iovec>, usize)> {
    let slices = chain_slices(mem, chain, writable, 0, 0)?;
    let total = slices.iter().map(|s| s.len()).sum();
    let iov: Vec<libc::iovec> = slices
        .iter()
        .map(|s| libc::iovec {
            iov_base: s.ptr_guard_mut().as_ptr().cast(),
            iov_len: s.len(),
        })
        .collect();
    (iov.len() <= IOV_MAX).then_some((iov, total))
}

/// One `writev` of a whole frame to the TAP.
pub fn write_frame(fd: RawFd, iov: &[libc::iovec]) -> std::io::Result<usize> {
    // SAFETY: the iovecs point into guest memory that stays mapped for the VM's life (the device holds the
    // memory), and writev only reads them.
    let r = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// One `readv` of a frame from the TAP into guest buffers.
pub fn read_frame(fd: RawFd, iov: &[libc::iovec]) -> std::io::Result<usize> {
    // SAFETY: as for `write_frame`; the kernel writes at most iov_len bytes into each buffer, all of which
    // the driver offered to the device for writing.
    let r = unsafe { libc::readv(fd, iov.as_ptr(), iov.len().min(IOV_MAX) as libc::c_int) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
