//! The host file under an image: positioned I/O that honours the cache mode.
//!
//! With `O_DIRECT` (cache='none'/'directsync') every transfer is bounced through a buffer aligned to
//! [`DIRECT_ALIGN`], with read-modify-write of partial blocks, so callers may use any offset and length.
//! Reads past the end of the file return zeroes, as QEMU's file driver does.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::guest_io::{self, Direction};
use super::{BlockError, CacheMode};

/// Alignment used for `O_DIRECT` transfers: covers 512- and 4096-byte logical blocks.
pub const DIRECT_ALIGN: usize = 4096;

/// Largest bounce transfer; bigger requests are split.
const BOUNCE_MAX: usize = 1 << 20;

/// A zeroed heap buffer with a fixed alignment (`O_DIRECT` needs it).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is a plain heap allocation owned exclusively by this value.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// Panics only on a zero-size or overflowing layout, which callers never ask for.
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        let layout =
            Layout::from_size_align(len.max(1), align).expect("valid bounce buffer layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, layout }
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to layout.size() initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// An open image file plus what the cache mode says about it.
pub struct ImageFile {
    file: File,
    path: PathBuf,
    direct: bool,
    /// cache='unsafe': flushes (and internal ordering barriers) do nothing.
    no_flush: bool,
    /// Cached file length; kept in step with our own writes.
    len: u64,
    bounce: Option<AlignedBuf>,
}

impl ImageFile {
    /// Opens an existing file with the flags `cache` asks for.
    pub fn open(path: &Path, read_only: bool, cache: CacheMode) -> Result<ImageFile, BlockError> {
        let mut oo = OpenOptions::new();
        oo.read(true).write(!read_only);
        let mut flags = 0;
        if cache.direct() {
            flags |= libc::O_DIRECT;
        }
        if cache == CacheMode::Directsync && !read_only {
            flags |= libc::O_DSYNC;
        }
        oo.custom_flags(flags);
        let file = match oo.open(path) {
            Ok(f) => f,
            Err(e) if cache.direct() && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(BlockError::DirectIoUnsupported {
                    path: path.to_path_buf(),
                    cache,
                })
            }
            Err(e) => return Err(BlockError::io(path, "open")(e)),
        };
        let len = file_len(&file).map_err(BlockError::io(path, "stat"))?;
        let mut f = ImageFile {
            file,
            path: path.to_path_buf(),
            direct: cache.direct(),
            no_flush: cache == CacheMode::Unsafe,
            len,
            bounce: None,
        };
        if f.direct {
            f.probe_direct(cache)?;
        }
        Ok(f)
    }

    /// Creates (or empties) an image file, holding QEMU-compatible write locks on it first so that an
    /// image in use by another process is never truncated under it (qemu-img refuses that too).
    pub fn create(path: &Path) -> Result<ImageFile, BlockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(BlockError::io(path, "create"))?;
        super::lock::lock_image(&file, path, true)?;
        file.set_len(0).map_err(BlockError::io(path, "truncate"))?;
        Ok(ImageFile {
            file,
            path: path.to_path_buf(),
            direct: false,
            no_flush: false,
            len: 0,
            bounce: None,
        })
    }

    /// Some filesystems accept `O_DIRECT` at open and refuse it at the first transfer.
    fn probe_direct(&mut self, cache: CacheMode) -> Result<(), BlockError> {
        let mut buf = AlignedBuf::new(DIRECT_ALIGN, DIRECT_ALIGN);
        match self.file.read_at(buf.as_mut_slice(), 0) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Err(BlockError::DirectIoUnsupported {
                    path: self.path.clone(),
                    cache,
                })
            }
            Err(e) => Err(BlockError::io(&self.path, "read")(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Current length of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `buf.len()` bytes at `offset`; bytes past the end of the file read as zeroes.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        if self.direct {
            return self.direct_read(buf, offset);
        }
        read_full(&self.file, buf, offset).map_err(BlockError::io(&self.path, "read"))
    }

    /// Reads straight into guest buffers; false when it cannot (O_DIRECT with buffers not aligned for it),
    /// and the caller bounces instead.
    pub fn read_vectored(
        &mut self,
        bufs: &guest_io::GuestBufs<'_>,
        offset: u64,
    ) -> Result<bool, BlockError> {
        if self.direct && !guest_io::aligned(bufs, offset, DIRECT_ALIGN) {
            return Ok(false);
        }
        guest_io::transfer_vectored(self.file.as_raw_fd(), bufs, offset, Direction::Read)
            .map_err(BlockError::io(&self.path, "read"))?;
        Ok(true)
    }

    /// Writes guest buffers straight to the file, extending it if needed; false as for `read_vectored`.
    pub fn write_vectored(
        &mut self,
        bufs: &guest_io::GuestBufs<'_>,
        offset: u64,
    ) -> Result<bool, BlockError> {
        if self.direct && !guest_io::aligned(bufs, offset, DIRECT_ALIGN) {
            return Ok(false);
        }
        let len = guest_io::total_len(bufs) as u64;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| BlockError::invalid(&self.path, "write past 2^64"))?;
        guest_io::transfer_vectored(self.file.as_raw_fd(), bufs, offset, Direction::Write)
            .map_err(BlockError::io(&self.path, "write"))?;
        self.len = self.len.max(end);
        Ok(true)
    }

    /// Writes all of `buf` at `offset`, extending the file if needed.
    pub fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| BlockError::invalid(&self.path, "write past 2^64"))?;
        if self.direct {
            self.direct_write(buf, offset)?;
        } else {
            self.file
                .write_all_at(buf, offset)
                .map_err(BlockError::io(&self.path, "write"))?;
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// An ordering/durability barrier: `fdatasync`, except under cache='unsafe'.
    pub fn sync(&mut self) -> Result<(), BlockError> {
        if self.no_flush {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(BlockError::io(&self.path, "fdatasync"))
    }

    /// Whether [`ImageFile::sync`] actually does something.
    pub fn syncs(&self) -> bool {
        !self.no_flush
    }

    pub fn set_len(&mut self, len: u64) -> Result<(), BlockError> {
        self.file
            .set_len(len)
            .map_err(BlockError::io(&self.path, "truncate"))?;
        self.len = len;
        Ok(())
    }

    /// Deallocates a range; reads of it return zeroes afterwards. `Ok(false)` if the filesystem can't.
    pub fn punch_hole(&mut self, offset: u64, len: u64) -> Result<bool, BlockError> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Zeroes a range without writing buffers. `Ok(false)` if the filesystem can't.
    pub fn zero_range(&mut self, offset: u64, len: u64) -> Result<bool, BlockError> {
        self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn fallocate(&mut self, mode: libc::c_int, offset: u64, len: u64) -> Result<bool, BlockError> {
        if len == 0 {
            return Ok(true);
        }
        let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(BlockError::invalid(&self.path, "fallocate range past 2^63"));
        };
        loop {
            // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, l) };
            if r == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP)
                | Some(libc::ENOSYS)
                | Some(libc::EINVAL)
                | Some(libc::ENODEV) => return Ok(false),
                _ => return Err(BlockError::io(&self.path, "fallocate")(e)),
            }
        }
    }

    /// Writes zeroes over a range with plain writes (the fallback when fallocate can't).
    pub fn write_zero_buffers(&mut self, mut offset: u64, mut len: u64) -> Result<(), BlockError> {
        let zeroes = vec![0u8; BOUNCE_MAX.min(len as usize).max(1)];
        while len > 0 {
            let n = (zeroes.len() as u64).min(len) as usize;
            self.write_at(&zeroes[..n], offset)?;
            offset += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    fn bounce(slot: &mut Option<AlignedBuf>, len: usize) -> &mut AlignedBuf {
        if slot.as_ref().is_none_or(|b| b.len() < len) {
            *slot = Some(AlignedBuf::new(len, DIRECT_ALIGN));
        }
        slot.as_mut().expect("bounce buffer was just set")
    }

    fn direct_read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        let a = DIRECT_ALIGN as u64;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let start = pos & !(a - 1);
            let head = (pos - start) as usize;
            let want = (buf.len() - done).min(BOUNCE_MAX - head);
            let span = (head + want).next_multiple_of(DIRECT_ALIGN);
            let file = &self.file;
            let path = &self.path;
            let b = Self::bounce(&mut self.bounce, span);
            let chunk = &mut b.as_mut_slice()[..span];
            read_full(file, chunk, start).map_err(BlockError::io(path, "read"))?;
            buf[done..done + want].copy_from_slice(&chunk[head..head + want]);
            done += want;
        }
        Ok(())
    }

    fn direct_write(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        let a = DIRECT_ALIGN as u64;
        let old_len = self.len;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let start = pos & !(a - 1);
            let head = (pos - start) as usize;
            let want = (buf.len() - done).min(BOUNCE_MAX - head);
            let span = (head + want).next_multiple_of(DIRECT_ALIGN);
            let file = &self.file;
            let path = &self.path;
            let b = Self::bounce(&mut self.bounce, span);
            let chunk = &mut b.as_mut_slice()[..span];
            // Read-modify-write the partial first and last blocks.
            if head != 0 {
                read_full(file, &mut chunk[..DIRECT_ALIGN], start)
                    .map_err(BlockError::io(path, "read"))?;
            }
            if !(head + want).is_multiple_of(DIRECT_ALIGN) && (span > DIRECT_ALIGN || head == 0) {
                let last = span - DIRECT_ALIGN;
                read_full(file, &mut chunk[last..], start + last as u64)
                    .map_err(BlockError::io(path, "read"))?;
            }
            chunk[head..head + want].copy_from_slice(&buf[done..done + want]);
            file.write_all_at(chunk, start)
                .map_err(BlockError::io(path, "write"))?;
            done += want;
        }
        // Whole-block writes may have stretched the file past what was asked for; put it back.
        let end = offset + buf.len() as u64;
        let wanted = old_len.max(end);
        if end.next_multiple_of(a) > wanted && end.next_multiple_of(a) > old_len {
            self.file
                .set_len(wanted)
                .map_err(BlockError::io(&self.path, "truncate"))?;
        }
        Ok(())
    }
}

/// `pread` until `buf` is full; what lies past the end of the file reads as zeroes.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Length of a regular file or size of a block device.
pub fn file_len(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut f = file;
    f.seek(SeekFrom::End(0))
}
