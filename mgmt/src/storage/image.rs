//! Image files as a storage backend sees them: format probing, sizes, creation, resizing and
//! copying — all with ironvirt's own block code.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use ironvirt_devices::block::{self, qcow2, raw, ImageFormat, OpenOptions, Preallocation};

use super::StorageError;

/// What `pool-refresh` learns about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// raw, qcow2, vmdk, vdi, vpc or iso.
    pub format: &'static str,
    pub capacity: u64,
    /// Bytes the file occupies on the host.
    pub allocation: u64,
    /// Length of the file.
    pub physical: u64,
    pub backing: Option<(String, Option<String>)>,
    /// qcow2 only: "0.10" or "1.1", the cluster size and lazy refcounts.
    pub compat: Option<String>,
    pub cluster_size: Option<u64>,
    pub lazy_refcounts: bool,
}

fn read_at(f: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// Probes a file's format from its magic numbers, as libvirt's virStorageFileProbeFormat does
/// for the formats it knows; anything unrecognised is raw. Returns the format and, for formats
/// other than raw and qcow2, the virtual size read from their header.
pub fn probe(path: &Path) -> Result<(&'static str, Option<u64>), StorageError> {
    let mut f = File::open(path).map_err(StorageError::io("cannot open volume", path))?;
    let len = f
        .metadata()
        .map_err(StorageError::io("cannot stat volume", path))?
        .len();
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head.truncate(got);
    let le64 = |b: &[u8], o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
    };
    if head.starts_with(b"QFI\xfb") {
        return Ok(("qcow2", None));
    }
    if head.starts_with(b"KDMV") {
        // Capacity in sectors at offset 12.
        return Ok(("vmdk", le64(&head, 12).map(|s| s.saturating_mul(512))));
    }
    if head.get(64..68) == Some(&[0x7f, 0x10, 0xda, 0xbe][..]) {
        return Ok(("vdi", le64(&head, 0x170)));
    }
    if head.starts_with(b"conectix") {
        let size = head
            .get(40..48)
            .map(|s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])));
        // libvirt reads the "original size" field (offset 40) of the footer.
        return Ok(("vpc", size));
    }
    if len >= 512 {
        let mut footer = [0u8; 512];
        if read_at(&f, &mut footer, len - 512) == 512 && footer.starts_with(b"conectix") {
            let size = u64::from_be_bytes(footer[40..48].try_into().unwrap_or([0; 8]));
            return Ok(("vpc", Some(size)));
        }
    }
    let mut cd = [0u8; 5];
    if read_at(&f, &mut cd, 32769) == 5 && &cd == b"CD001" {
        return Ok(("iso", Some(len)));
    }
    Ok(("raw", None))
}

/// Reads a file's format and figures.
pub fn inspect(path: &Path) -> Result<ImageSummary, StorageError> {
    let meta = std::fs::metadata(path).map_err(StorageError::io("cannot stat volume", path))?;
    let (format, size) = probe(path)?;
    let mut s = ImageSummary {
        format,
        capacity: size.unwrap_or(meta.len()),
        allocation: meta.blocks() * 512,
        physical: meta.len(),
        backing: None,
        compat: None,
        cluster_size: None,
        lazy_refcounts: false,
    };
    if format == "qcow2" {
        let i = qcow2::info(path)?;
        s.capacity = i.virtual_size;
        s.backing = i.backing_file.map(|b| {
            // Relative names are relative to the image's directory; libvirt shows them resolved.
            let resolved = if Path::new(&b).is_absolute() {
                b
            } else {
                path.parent()
                    .unwrap_or(Path::new("/"))
                    .join(b)
                    .display()
                    .to_string()
            };
            (resolved, i.backing_format.clone())
        });
        s.compat = Some(if i.version >= 3 { "1.1" } else { "0.10" }.into());
        s.cluster_size = Some(i.cluster_size);
        s.lazy_refcounts = i.lazy_refcounts;
    }
    Ok(s)
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    pub format: ImageFormat,
    pub capacity: u64,
    /// Bytes to reserve up front (raw: `posix_fallocate` of that much, up to the capacity;
    /// qcow2: only with `prealloc_metadata`, see there).
    pub allocation: Option<u64>,
    pub backing: Option<(PathBuf, ImageFormat)>,
    /// libvirt's VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA (qcow2 only): `preallocation=metadata`
    /// when the allocation (in KiB) is below the capacity, else `preallocation=falloc` — the
    /// rule of storageBackendCreateQemuImgOpts. Without it a qcow2 image is never preallocated.
    pub prealloc_metadata: bool,
    /// qcow2 version 2 (compat 0.10) instead of 3.
    pub compat_v2: bool,
    pub cluster_size: Option<u64>,
    pub lazy_refcounts: bool,
}

/// Creates the image at `path`, which must not exist yet.
pub fn create(path: &Path, spec: &CreateSpec) -> Result<(), StorageError> {
    match spec.format {
        ImageFormat::Raw => {
            if spec.prealloc_metadata {
                return Err(StorageError::Unsupported(
                    "metadata preallocation is not supported for raw volumes".into(),
                ));
            }
            if spec.backing.is_some() {
                return Err(StorageError::Unsupported(
                    "backing storage not supported for raw volumes".into(),
                ));
            }
            raw::create(path, spec.capacity, Preallocation::Off)?;
            if let Some(alloc) = spec.allocation.filter(|a| *a > 0) {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(StorageError::io("cannot open volume", path))?;
                fallocate(&f, path, 0, alloc.min(spec.capacity))?;
            }
            Ok(())
        }
        ImageFormat::Qcow2 => {
            let cluster_bits = match spec.cluster_size {
                None => 16,
                Some(cs) if cs.is_power_of_two() => cs.trailing_zeros(),
                Some(cs) => {
                    return Err(StorageError::InvalidArg(format!(
                        "cluster size {cs} is not a power of two"
                    )))
                }
            };
            if spec.prealloc_metadata && spec.backing.is_some() {
                return Err(StorageError::Unsupported(
                    "metadata preallocation conflicts with backing store".into(),
                ));
            }
            let kib = |b: u64| b.div_ceil(1024);
            let preallocation = if !spec.prealloc_metadata {
                Preallocation::Off
            } else if kib(spec.capacity) > kib(spec.allocation.unwrap_or(spec.capacity)) {
                Preallocation::Metadata
            } else {
                Preallocation::Falloc
            };
            let opts = qcow2::CreateOptions {
                // qemu-img rounds the virtual size up to whole sectors.
                size: spec.capacity.div_ceil(512) * 512,
                version: if spec.compat_v2 { 2 } else { 3 },
                cluster_bits,
                backing: spec.backing.clone(),
                preallocation,
                lazy_refcounts: spec.lazy_refcounts,
                ..qcow2::CreateOptions::default()
            };
            qcow2::create(path, &opts)?;
            Ok(())
        }
    }
}

pub(crate) fn fallocate(f: &File, path: &Path, offset: u64, len: u64) -> Result<(), StorageError> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(StorageError::InvalidArg(format!(
            "allocation past 2^63 bytes for {}",
            path.display()
        )));
    };
    // SAFETY: a plain syscall on a descriptor we own.
    let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), off, l) };
    if r != 0 {
        return Err(StorageError::io("cannot allocate", path)(
            std::io::Error::from_raw_os_error(r),
        ));
    }
    Ok(())
}

/// Changes the virtual size. raw: the file length (with `allocate`, the new part is reserved);
/// qcow2: grows in place as long as the L1 table's clusters cover the new size.
pub fn resize(path: &Path, new_size: u64, allocate: bool) -> Result<(), StorageError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StorageError::io("cannot open volume", path))?;
    // Refuses an image a running VM (or qemu) has open for writing.
    block::lock::lock_image(&f, path, true)?;
    let (format, _) = probe(path)?;
    match format {
        "raw" => {
            let old = f
                .metadata()
                .map_err(StorageError::io("cannot stat volume", path))?
                .len();
            f.set_len(new_size)
                .map_err(StorageError::io("cannot resize volume", path))?;
            if allocate && new_size > old {
                fallocate(&f, path, old, new_size - old)?;
            }
            f.sync_all()
                .map_err(StorageError::io("cannot sync volume", path))
        }
        "qcow2" => grow_qcow2(&f, path, new_size),
        other => Err(StorageError::Unsupported(format!(
            "resizing {other} volumes is not supported"
        ))),
    }
}

fn grow_qcow2(f: &File, path: &Path, new_size: u64) -> Result<(), StorageError> {
    let i = qcow2::info(path)?;
    let new_size = new_size.div_ceil(512) * 512;
    if new_size < i.virtual_size {
        return Err(StorageError::Unsupported(format!(
            "shrinking qcow2 volume {} is not supported",
            path.display()
        )));
    }
    let mut hdr = [0u8; 48];
    if read_at(f, &mut hdr, 0) != hdr.len() {
        return Err(StorageError::Invalid(format!(
            "{}: truncated qcow2 header",
            path.display()
        )));
    }
    let cs = i.cluster_size;
    let per_l1 = cs * (cs / 8);
    let old_l1 = u64::from(u32::from_be_bytes(hdr[36..40].try_into().unwrap_or([0; 4])));
    let new_l1 = new_size.div_ceil(per_l1);
    // The L1 table was allocated in whole clusters: the slack past its entries is its own.
    let room = (old_l1 * 8).div_ceil(cs).max(1) * cs / 8;
    if new_l1 > room {
        return Err(StorageError::Unsupported(format!(
            "growing qcow2 volume {} to {new_size} bytes needs a larger L1 table",
            path.display()
        )));
    }
    if new_l1 > old_l1 {
        // The new entries must read as unallocated.
        let l1_off = u64::from_be_bytes(hdr[40..48].try_into().unwrap_or([0; 8]));
        let zeros = vec![0u8; ((new_l1 - old_l1) * 8) as usize];
        f.write_all_at(&zeros, l1_off + old_l1 * 8)
            .map_err(StorageError::io("cannot write L1 table of", path))?;
    }
    let mut patch = Vec::with_capacity(16);
    patch.extend_from_slice(&new_size.to_be_bytes());
    f.write_all_at(&patch, 24)
        .map_err(StorageError::io("cannot write header of", path))?;
    f.write_all_at(&(new_l1.max(old_l1) as u32).to_be_bytes(), 36)
        .map_err(StorageError::io("cannot write header of", path))?;
    f.sync_all()
        .map_err(StorageError::io("cannot sync volume", path))
}

/// The granularity at which copies look for zero runs to leave unallocated.
pub const ZERO_GRAIN: usize = 64 * 1024;

/// Copies the disk contents of `src` into the new image `dst` (created like `spec`), leaving
/// zero ranges unallocated so the copy stays sparse.
pub fn copy(
    src: &Path,
    src_format: ImageFormat,
    dst: &Path,
    spec: &CreateSpec,
) -> Result<(), StorageError> {
    copy_with_progress(src, src_format, dst, spec, &mut super::progress::none())
}

/// [`copy`], telling `progress` how many bytes of the disk are done after each chunk.
pub fn copy_with_progress(
    src: &Path,
    src_format: ImageFormat,
    dst: &Path,
    spec: &CreateSpec,
    progress: super::progress::Report,
) -> Result<(), StorageError> {
    let mut input = block::open(
        src,
        &OpenOptions {
            format: src_format,
            read_only: true,
            ..OpenOptions::default()
        },
    )?;
    create(dst, spec)?;
    let result = (|| {
        let mut output = block::open(
            dst,
            &OpenOptions {
                format: spec.format,
                ..OpenOptions::default()
            },
        )?;
        let size = input.size().min(output.size());
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        progress(0, size);
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            input.read_at(&mut buf[..n], off)?;
            // Zero runs are skipped a (default) cluster at a time, so a qcow2 copy allocates
            // only the clusters that hold data, as qemu-img convert leaves them.
            for (i, piece) in buf[..n].chunks(ZERO_GRAIN).enumerate() {
                if piece.iter().any(|b| *b != 0) {
                    output.write_at(piece, off + (i * ZERO_GRAIN) as u64)?;
                }
            }
            off += n as u64;
            progress(off, size);
        }
        output.flush()?;
        Ok::<(), StorageError>(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// The format name as the block layer knows it (raw and qcow2 only).
pub fn block_format(name: &str) -> Result<ImageFormat, StorageError> {
    name.parse()
        .map_err(|_| StorageError::Unsupported(format!("storage format '{name}' is not supported")))
}
