//! Raw images: the file (or block device) is the disk, byte for byte.
//!
//! Discard punches a hole (a no-op where the filesystem can't, as in QEMU); write-zeroes punches a hole
//! when unmapping is allowed, else uses `FALLOC_FL_ZERO_RANGE`, else writes zero buffers.

use std::path::{Path, PathBuf};

use super::file::ImageFile;
use super::guest_io::{self, GuestBufs};
use super::{check_range, lock, BlockBackend, BlockError, OpenOptions, Preallocation};

pub struct RawBackend {
    file: ImageFile,
    path: PathBuf,
    size: u64,
    read_only: bool,
    discard_unmap: bool,
}

impl RawBackend {
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<RawBackend, BlockError> {
        let file = ImageFile::open(path, opts.read_only, opts.cache)?;
        if opts.lock {
            lock::lock_image(file.file(), path, !opts.read_only)?;
        }
        Ok(RawBackend {
            size: file.len(),
            file,
            path: path.to_path_buf(),
            read_only: opts.read_only,
            discard_unmap: opts.discard_unmap,
        })
    }

    fn check_write(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly(self.path.clone()));
        }
        check_range(&self.path, offset, len, self.size)
    }
}

impl BlockBackend for RawBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(&self.path, offset, buf.len() as u64, self.size)?;
        self.file.read_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        self.check_write(offset, buf.len() as u64)?;
        self.file.write_at(buf, offset)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.file.sync()
    }

    fn read_into(
        &mut self,
        bufs: &GuestBufs<'_>,
        offset: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        check_range(
            &self.path,
            offset,
            guest_io::total_len(bufs) as u64,
            self.size,
        )?;
        if !self.file.read_vectored(bufs, offset)? {
            guest_io::bounce_read(self, bufs, offset, scratch)?;
        }
        Ok(())
    }

    fn write_from(
        &mut self,
        bufs: &GuestBufs<'_>,
        offset: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        self.check_write(offset, guest_io::total_len(bufs) as u64)?;
        if !self.file.write_vectored(bufs, offset)? {
            guest_io::bounce_write(self, bufs, offset, scratch)?;
        }
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_write(offset, len)?;
        if self.discard_unmap {
            self.file.punch_hole(offset, len)?;
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<(), BlockError> {
        self.check_write(offset, len)?;
        if may_unmap && self.discard_unmap && self.file.punch_hole(offset, len)? {
            return Ok(());
        }
        if self.file.zero_range(offset, len)? {
            return Ok(());
        }
        self.file.write_zero_buffers(offset, len)
    }
}

/// Creates (or truncates) a raw image of `size` bytes. Refuses an image another process has open
/// (locked), as qemu-img does.
pub fn create(path: &Path, size: u64, preallocation: Preallocation) -> Result<(), BlockError> {
    let mut f = ImageFile::create(path)?;
    f.set_len(size)?;
    match preallocation {
        Preallocation::Off | Preallocation::Metadata => {}
        Preallocation::Falloc => posix_fallocate(f.file(), path, 0, size)?,
        Preallocation::Full => f.write_zero_buffers(0, size)?,
    }
    f.sync()
}

/// Reserves disk blocks for a range (preallocation=falloc).
pub(crate) fn posix_fallocate(
    f: &std::fs::File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<(), BlockError> {
    use std::os::unix::io::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(BlockError::invalid(path, "preallocation range past 2^63"));
    };
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), off, l) };
    if r != 0 {
        return Err(BlockError::io(path, "posix_fallocate")(
            std::io::Error::from_raw_os_error(r),
        ));
    }
    Ok(())
}
