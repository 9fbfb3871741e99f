//! Moving a request's data between an image and guest memory.
//!
//! A request's data sits in guest buffers ([`VolatileSlice`]s of guest memory). Backends that can read or write
//! the image straight into those buffers (a raw file with preadv/pwritev) do so; everything else goes through
//! a bounce buffer. The bounce path costs an extra copy of every byte, which is most of a large request's
//! cost when the host's page cache already holds the data.

use std::os::fd::RawFd;

use vm_memory::{Bytes, VolatileSlice};

use super::{BlockBackend, BlockError};

/// Largest bounce step, bounding the scratch buffer (which stays resident for the disk's life, so it is kept
/// small: bouncing is the slow path anyway).
pub const BOUNCE_CHUNK: usize = 64 * 1024;

/// Guest buffers, in request order.
pub type GuestBufs<'a> = [VolatileSlice<'a>];

/// Total bytes in `bufs`.
pub fn total_len(bufs: &GuestBufs<'_>) -> usize {
    bufs.iter().map(|s| s.len()).sum()
}

/// Reads `total_len(bufs)` bytes at `offset` into `bufs` with `read_at`, through `scratch`.
pub fn bounce_read(
    backend: &mut (impl BlockBackend + ?Sized),
    bufs: &GuestBufs<'_>,
    offset: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), BlockError> {
    let mut pos = offset;
    for s in bufs {
        let mut done = 0;
        while done < s.len() {
            let n = (s.len() - done).min(BOUNCE_CHUNK);
            if scratch.len() < n {
                scratch.resize(n, 0);
            }
            backend.read_at(&mut scratch[..n], pos)?;
            s.write_slice(&scratch[..n], done)
                .map_err(|e| BlockError::GuestMemory(e.to_string()))?;
            done += n;
            pos += n as u64;
        }
    }
    Ok(())
}

/// Writes `bufs` at `offset` with `write_at`, through `scratch`.
pub fn bounce_write(
    backend: &mut (impl BlockBackend + ?Sized),
    bufs: &GuestBufs<'_>,
    offset: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), BlockError> {
    let mut pos = offset;
    for s in bufs {
        let mut done = 0;
        while done < s.len() {
            let n = (s.len() - done).min(BOUNCE_CHUNK);
            if scratch.len() < n {
                scratch.resize(n, 0);
            }
            s.read_slice(&mut scratch[..n], done)
                .map_err(|e| BlockError::GuestMemory(e.to_string()))?;
            backend.write_at(&scratch[..n], pos)?;
            done += n;
            pos += n as u64;
        }
    }
    Ok(())
}

/// The part of `bufs` from byte `start`, `len` bytes long.
pub fn sub_range<'a>(
    bufs: &GuestBufs<'a>,
    start: usize,
    len: usize,
) -> Result<Vec<VolatileSlice<'a>>, BlockError> {
    let mut out = Vec::new();
    let (mut pos, mut left) = (0usize, len);
    for s in bufs {
        if left == 0 {
            break;
        }
        let end = pos + s.len();
        if end > start {
            let from = start.saturating_sub(pos);
            let take = (s.len() - from).min(left);
            out.push(
                s.subslice(from, take)
                    .map_err(|e| BlockError::GuestMemory(e.to_string()))?,
            );
            left -= take;
        }
        pos = end;
    }
    Ok(out)
}

/// The kernel's limit on iovecs per call.
const IOV_MAX: usize = 1024;

/// Direction of a vectored transfer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// File → guest (preadv).
    Read,
    /// Guest → file (pwritev).
    Write,
}

/// preadv/pwritev of all of `bufs` at `offset` on `fd`. A read that meets the end of the file leaves the rest
/// of the buffers zeroed, as `read_at` does.
pub fn transfer_vectored(
    fd: RawFd,
    bufs: &GuestBufs<'_>,
    offset: u64,
    dir: Direction,
) -> std::io::Result<()> {
    let mut iov: Vec<libc::iovec> = bufs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| libc::iovec {
            iov_base: s.ptr_guard_mut().as_ptr().cast(),
            iov_len: s.len(),
        })
        .collect();
    let total: usize = iov.iter().map(|v| v.iov_len).sum();
    let mut first = 0;
    let mut done = 0usize;
    while done < total {
        let count = (iov.len() - first).min(IOV_MAX) as libc::c_int;
        let at = (offset + done as u64) as libc::off_t;
        // SAFETY: every iovec describes guest memory borrowed by `bufs` for this call (the slices keep the
        // mapping alive and in bounds); the kernel reads or writes at most iov_len bytes of each.
        let r = unsafe {
            match dir {
                Direction::Read => libc::preadv(fd, iov[first..].as_ptr(), count, at),
                Direction::Write => libc::pwritev(fd, iov[first..].as_ptr(), count, at),
            }
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            if dir == Direction::Write {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
            }
            // End of file: the rest reads as zeroes.
            for v in &iov[first..] {
                // SAFETY: as above; the bytes zeroed are exactly the unread part of each buffer.
                unsafe { std::ptr::write_bytes(v.iov_base.cast::<u8>(), 0, v.iov_len) };
            }
            return Ok(());
        }
        let mut left = r as usize;
        done += left;
        while left > 0 {
            let v = &mut iov[first];
            if left >= v.iov_len {
                left -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: advancing within the same buffer, by fewer bytes than it has left.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(left) }.cast();
                v.iov_len -= left;
                left = 0;
            }
        }
    }
    Ok(())
}

/// Whether every buffer and the offset are aligned to `align` (what `O_DIRECT` needs to skip the bounce).
pub fn aligned(bufs: &GuestBufs<'_>, offset: u64, align: usize) -> bool {
    offset.is_multiple_of(align as u64)
        && bufs.iter().all(|s| {
            (s.ptr_guard().as_ptr() as usize).is_multiple_of(align) && s.len().is_multiple_of(align)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn slices(mem: &mut [u8], cuts: &[usize]) -> Vec<VolatileSlice<'static>> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            // SAFETY: the test's buffer outlives the slices (leaked below) and the ranges are in bounds.
            out.push(unsafe { VolatileSlice::new(mem.as_mut_ptr().add(at), c - at) });
            at = c;
        }
        out
    }

    #[test]
    fn vectored_read_write_round_trip_and_zero_past_eof() {
        let dir = std::env::temp_dir().join(format!("iv-guest-io-{}", std::process::id()));
        let mut f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dir)
            .unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        f.write_all(&data).unwrap();
        let mem: &'static mut [u8] = Box::leak(vec![0xaau8; 12_000].into_boxed_slice());
        let bufs = slices(mem, &[1, 4097, 9000, 12_000]);
        transfer_vectored(f.as_raw_fd(), &bufs, 0, Direction::Read).unwrap();
        assert_eq!(&mem[..10_000], &data[..]);
        assert!(
            mem[10_000..].iter().all(|&b| b == 0),
            "past EOF reads as zero"
        );
        mem.iter_mut().for_each(|b| *b = 0x55);
        transfer_vectored(
            f.as_raw_fd(),
            &slices(mem, &[3, 12_000]),
            100,
            Direction::Write,
        )
        .unwrap();
        let back = std::fs::read(&dir).unwrap();
        assert_eq!(back.len(), 12_100);
        assert!(back[100..].iter().all(|&b| b == 0x55));
        assert_eq!(&back[..100], &data[..100]);
        let _ = std::fs::remove_file(&dir);
    }

    /// read_into / write_from agree with read_at / write_at on raw and on qcow2 (data, zero, unallocated
    /// and backing extents), for buffers split at odd places.
    #[test]
    fn backends_fill_guest_buffers_like_read_at() {
        use crate::block::{open, qcow2, ImageFormat, OpenOptions};
        let dir = std::env::temp_dir().join(format!("iv-guest-io-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 1u64 << 20;
        let base = dir.join("base.raw");
        std::fs::write(
            &base,
            (0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let overlay = dir.join("top.qcow2");
        qcow2::create(
            &overlay,
            &qcow2::CreateOptions {
                size,
                cluster_bits: 12,
                backing: Some((base.clone(), ImageFormat::Raw)),
                ..Default::default()
            },
        )
        .unwrap();
        let mut seed = 0x1234_5678u64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for (path, format) in [(&base, ImageFormat::Raw), (&overlay, ImageFormat::Qcow2)] {
            let opts = OpenOptions {
                format,
                ..Default::default()
            };
            let mut b = open(path, &opts).unwrap();
            let mut scratch = Vec::new();
            for _ in 0..40 {
                let off = rnd(size - 70_000);
                let len = 1 + rnd(60_000) as usize;
                let mut src = vec![0u8; len];
                src.iter_mut().for_each(|x| *x = rnd(256) as u8);
                let cut = 1 + rnd(len as u64) as usize;
                let mem: &'static mut [u8] = Box::leak(src.clone().into_boxed_slice());
                let bufs = slices(mem, &[cut.min(len), len]);
                if rnd(2) == 0 {
                    b.write_from(&bufs, off, &mut scratch).unwrap();
                } else {
                    b.write_at(&src, off).unwrap();
                }
                let roff = rnd(size - 70_000);
                let rlen = 1 + rnd(65_000) as usize;
                let mut want = vec![0u8; rlen];
                b.read_at(&mut want, roff).unwrap();
                let got: &'static mut [u8] = Box::leak(vec![0u8; rlen].into_boxed_slice());
                let c1 = rnd(rlen as u64) as usize;
                let c2 = c1 + rnd((rlen - c1) as u64) as usize;
                let rb = slices(got, &[c1, c2, rlen]);
                b.read_into(&rb, roff, &mut scratch).unwrap();
                assert_eq!(&got[..], &want[..], "{format:?} read of {rlen} at {roff}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn alignment() {
        let mem: &'static mut [u8] = Box::leak(vec![0u8; 3 * 4096].into_boxed_slice());
        let base = mem.as_ptr() as usize;
        let skip = base.next_multiple_of(4096) - base;
        let bufs = slices(&mut mem[skip..], &[4096]);
        assert!(aligned(&bufs, 8192, 4096));
        assert!(!aligned(&bufs, 512, 4096));
        let odd = slices(&mut mem[skip..], &[100]);
        assert!(!aligned(&odd, 0, 4096));
    }
}
