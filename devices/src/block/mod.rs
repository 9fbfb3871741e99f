//! Block backends: what a virtio-blk device reads and writes through.
//!
//! One trait, [`BlockBackend`], with two implementations: [`raw`] files (or block devices) and [`qcow2`]
//! images (versions 2 and 3, backing chains, zero and compressed clusters, internal snapshots preserved).
//! [`open`] turns a path plus libvirt-style [`OpenOptions`] into a boxed backend.
//!
//! # Cache modes (libvirt `<driver cache=...>`)
//!
//! | mode           | host page cache | `O_DIRECT` | `O_DSYNC` | guest flush            | after each write request |
//! |----------------|-----------------|------------|-----------|------------------------|--------------------------|
//! | `none`         | bypassed        | yes        | no        | `fdatasync`            | —                        |
//! | `writethrough` | used            | no         | no        | `fdatasync`            | `fdatasync`              |
//! | `writeback`    | used (default)  | no         | no        | `fdatasync`            | —                        |
//! | `directsync`   | bypassed        | yes        | yes       | `fdatasync`            | (every write is synced)  |
//! | `unsafe`       | used            | no         | no        | no-op                  | —                        |
//!
//! `O_DIRECT` needs aligned buffers and offsets; [`file::ImageFile`] bounces every request through a
//! 4096-byte-aligned buffer, so callers never care. A filesystem that refuses `O_DIRECT` (tmpfs) makes the
//! open fail with [`BlockError::DirectIoUnsupported`] instead of silently caching.
//!
//! # Locking
//!
//! Images are locked with QEMU's byte-range OFD-lock convention (see [`lock`]), so that ironvirt and QEMU
//! (or two ironvirt processes) never both write one image. Backing files are locked for reading.
//!
//! # Discard and write-zeroes
//!
//! `discard` is a no-op unless the image was opened with `discard_unmap` (libvirt `discard='unmap'`), as
//! QEMU's `discard='ignore'` is. `write_zeroes` may deallocate only when both the request allows it and
//! `discard_unmap` is set, as in QEMU.

pub mod file;
pub mod fuzz;
pub mod guest_io;
pub mod lock;
pub mod qcow2;
pub mod raw;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Everything that can go wrong in a block backend. Messages name the file and the thing at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A request's buffer is not where guest memory is (the guest's fault, answered with an I/O error).
    #[error("guest buffer: {0}")]
    GuestMemory(String),
    #[error("{op} {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("request of {len} bytes at offset {offset} is outside {} (disk size {size} bytes)", .path.display())]
    OutOfRange {
        path: PathBuf,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("{} is open read-only", .0.display())]
    ReadOnly(PathBuf),
    #[error("image {} is in use by another process (locked): {detail}", .path.display())]
    Locked { path: PathBuf, detail: String },
    #[error("cache='{cache}' needs O_DIRECT, which the filesystem holding {} does not support", .path.display())]
    DirectIoUnsupported { path: PathBuf, cache: CacheMode },
    #[error("{}: unsupported qcow2 feature: {feature}", .path.display())]
    Unsupported { path: PathBuf, feature: String },
    #[error("{}: corrupt qcow2 image: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: {detail}", .path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("backing file {} of {}: {source}", .backing.display(), .path.display())]
    Backing {
        path: PathBuf,
        backing: PathBuf,
        #[source]
        source: Box<BlockError>,
    },
}

impl BlockError {
    pub(crate) fn io<'a>(
        path: &'a Path,
        op: &'static str,
    ) -> impl FnOnce(io::Error) -> BlockError + 'a {
        move |source| BlockError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> BlockError {
        BlockError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(path: &Path, feature: impl Into<String>) -> BlockError {
        BlockError::Unsupported {
            path: path.to_path_buf(),
            feature: feature.into(),
        }
    }

    pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> BlockError {
        BlockError::Invalid {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// A virtual disk as the guest sees it.
pub trait BlockBackend: Send {
    /// Virtual disk size in bytes.
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Reads exactly buf.len() bytes at offset (offset + len <= size, else BlockError::OutOfRange).
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError>;
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError>;
    /// Makes everything written so far durable (a no-op under cache='unsafe').
    fn flush(&mut self) -> Result<(), BlockError>;
    /// Guest discard/TRIM: may deallocate; reads afterwards return zeroes or old data as QEMU allows (for qcow2 return zeroes).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError>;
    /// Reads afterwards return zeroes; `may_unmap` allows deallocating.
    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<(), BlockError>;
    /// Reads `guest_io::total_len(bufs)` bytes at `offset` into guest buffers. The default bounces through
    /// `scratch` with `read_at`; backends that can fill guest memory directly override it.
    fn read_into(
        &mut self,
        bufs: &guest_io::GuestBufs<'_>,
        offset: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        guest_io::bounce_read(self, bufs, offset, scratch)
    }
    /// Writes guest buffers at `offset`; the default bounces through `scratch` with `write_at`.
    fn write_from(
        &mut self,
        bufs: &guest_io::GuestBufs<'_>,
        offset: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        guest_io::bounce_write(self, bufs, offset, scratch)
    }
}

/// On-disk image format (libvirt `<driver type=...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    #[default]
    Raw,
    Qcow2,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }

    /// Guesses the format from the first bytes of a file: the qcow2 magic, else raw (as QEMU probes).
    pub fn probe(path: &Path) -> Result<ImageFormat, BlockError> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(BlockError::io(path, "open"))?;
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match f.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BlockError::io(path, "read")(e)),
            }
        }
        Ok(if got == 4 && magic == qcow2::header::MAGIC {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        })
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImageFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(ImageFormat::Raw),
            "qcow2" => Ok(ImageFormat::Qcow2),
            other => Err(format!("unsupported image format '{other}'")),
        }
    }
}

/// libvirt `<driver cache=...>`; see the module docs for the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    None,
    Writethrough,
    #[default]
    Writeback,
    Directsync,
    Unsafe,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::None => "none",
            CacheMode::Writethrough => "writethrough",
            CacheMode::Writeback => "writeback",
            CacheMode::Directsync => "directsync",
            CacheMode::Unsafe => "unsafe",
        }
    }

    /// Whether the host page cache is bypassed (`O_DIRECT`).
    pub fn direct(self) -> bool {
        matches!(self, CacheMode::None | CacheMode::Directsync)
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(CacheMode::None),
            "writethrough" => Ok(CacheMode::Writethrough),
            "writeback" | "default" => Ok(CacheMode::Writeback),
            "directsync" => Ok(CacheMode::Directsync),
            "unsafe" => Ok(CacheMode::Unsafe),
            other => Err(format!("unsupported cache mode '{other}'")),
        }
    }
}

/// How a disk is opened; mirrors libvirt's `<driver>` and `<backingStore>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    pub format: ImageFormat,
    pub read_only: bool,
    pub cache: CacheMode,
    /// `<driver discard='unmap'>`; false = 'ignore': discard is a no-op.
    pub discard_unmap: bool,
    /// From `<backingStore>`; overrides the header's backing file.
    pub backing: Option<BackingSpec>,
    /// Take QEMU-compatible OFD locks (default true).
    pub lock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            format: ImageFormat::Raw,
            read_only: false,
            cache: CacheMode::Writeback,
            discard_unmap: false,
            backing: None,
            lock: true,
        }
    }
}

/// One level of an explicit backing chain (libvirt `<backingStore>`).
///
/// `backing: None` on a qcow2 level means "whatever that image's own header says", so a partial chain
/// from the XML still works; a raw level never has a backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingSpec {
    pub path: PathBuf,
    pub format: ImageFormat,
    pub backing: Option<Box<BackingSpec>>,
}

/// Preallocation at creation (`qemu-img create -o preallocation=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    #[default]
    Off,
    /// qcow2: all metadata written, data clusters mapped onto a sparse file. raw: same as off.
    Metadata,
    /// Like metadata, plus `posix_fallocate` of the data.
    Falloc,
    /// Like metadata, plus zeroes written over the data.
    Full,
}

impl FromStr for Preallocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Preallocation::Off),
            "metadata" => Ok(Preallocation::Metadata),
            "falloc" => Ok(Preallocation::Falloc),
            "full" => Ok(Preallocation::Full),
            other => Err(format!("unsupported preallocation mode '{other}'")),
        }
    }
}

/// Opens a disk image as a guest-visible backend.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn BlockBackend>, BlockError> {
    open_chain(path, opts, 0)
}

/// Longest backing chain followed; deeper chains are almost certainly loops.
pub(crate) const MAX_CHAIN_DEPTH: usize = 64;

pub(crate) fn open_chain(
    path: &Path,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Box<dyn BlockBackend>, BlockError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(BlockError::invalid(
            path,
            format!("backing chain deeper than {MAX_CHAIN_DEPTH} images (a loop?)"),
        ));
    }
    let backend: Box<dyn BlockBackend> = match opts.format {
        ImageFormat::Raw => Box::new(raw::RawBackend::open(path, opts)?),
        ImageFormat::Qcow2 => Box::new(qcow2::Qcow2::open_at_depth(path, opts, depth)?),
    };
    if opts.cache == CacheMode::Writethrough && !opts.read_only {
        return Ok(Box::new(Writethrough(backend)));
    }
    Ok(backend)
}

/// cache='writethrough': every completed write request is made durable before it is acknowledged.
struct Writethrough(Box<dyn BlockBackend>);

impl BlockBackend for Writethrough {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        self.0.write_at(buf, offset)?;
        self.0.flush()
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.0.flush()
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.0.discard(offset, len)?;
        self.0.flush()
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<(), BlockError> {
        self.0.write_zeroes(offset, len, may_unmap)?;
        self.0.flush()
    }
}

/// Checks `offset + len <= size` without overflow.
pub(crate) fn check_range(path: &Path, offset: u64, len: u64, size: u64) -> Result<(), BlockError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange {
            path: path.to_path_buf(),
            offset,
            len,
            size,
        }),
    }
}
