//! Frames between a TAP and guest memory without a staging copy: `writev` from a transmit chain's buffers and
//! `readv` into receive buffers. Guest buffers become iovecs only when each lies inside one memory region;
//! callers fall back to copying otherwise.

use std::os::fd::RawFd;

use virtio_queue::DescriptorChain;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The kernel's limit on iovecs per call.
const IOV_MAX: usize = 1024;

/// A chain's device-readable (`writable == false`) or device-writable buffers as iovecs, with their total
/// length; None if one is not wholly inside guest memory.
pub fn chain_iovecs(
    mem: &GuestMemoryMmap,
    chain: &DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
) -> Option<(Vec<libc::iovec>, usize)> {
    let mut iov = Vec::new();
    let mut total = 0usize;
    for d in chain.clone().filter(|d| d.is_write_only() == writable) {
        let len = d.len() as usize;
        if len == 0 {
            continue;
        }
        let slice = mem.get_slice(GuestAddress(d.addr().0), len).ok()?;
        iov.push(libc::iovec {
            iov_base: slice.ptr_guard_mut().as_ptr().cast(),
            iov_len: len,
        });
        total += len;
    }
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
