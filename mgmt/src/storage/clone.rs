//! `vol-clone` and `vol-create-from`, with libvirt 10.7's semantics (storage_driver.c's
//! storageVolCreateXMLFrom and the build-from functions of storage_util.c), done by our own
//! block code instead of qemu-img:
//!
//! - The new volume's capacity is the larger of the requested one and the input's; an omitted
//!   `<allocation>` means "fully allocated" (the whole capacity).
//! - Raw file into raw file (libvirt's createRawFile): the file is made `capacity` long, the
//!   allocation is reserved with fallocate when it covers the input's capacity, and the input's
//!   bytes are copied with zero blocks skipped; `--reflink` shares the input's extents instead
//!   (FICLONE, which btrfs and XFS support) and fails where the filesystem cannot.
//! - Any copy that involves qcow2 is what libvirt runs `qemu-img convert -f IN -O OUT [-o …]`
//!   for: the result is the input's disk contents **flattened** (no backing file, even when the
//!   input had one or the new volume's XML names one — libvirt drops `-b` when converting, after
//!   checking that a named backing store is the input's own and readable); its virtual size is
//!   the input's (qemu-img convert takes no size); qcow2 gets `compat=0.10` unless the XML says
//!   otherwise; `--prealloc-metadata` gives `preallocation=metadata` when the allocation is below
//!   the capacity, else `preallocation=falloc`. `--reflink` is refused (libvirt's qemu-img path
//!   accepts no reflink flag).
//! - Into a logical pool (libvirt's storageBackendCreateBlockFrom, or qemu-img convert -O raw
//!   onto the LV for a qcow2 input): lvcreate with the new capacity, then every byte of the
//!   input's disk contents is written onto the LV — zeroes included, because a fresh LV holds
//!   whatever its extents held before. A failed copy removes the new volume.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ironvirt_devices::block::{self, ImageFormat, OpenOptions};

use super::backend::logical;
use super::driver::{PoolRecord, StorageDriver};
use super::image::{self, CreateSpec};
use super::volume::{check_name, file_pool, VolCreate, VolInfo};
use super::StorageError;

/// The flags of `vol-clone` / `vol-create-from`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyFlags {
    /// `--prealloc-metadata` (VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA).
    pub prealloc_metadata: bool,
    /// `--reflink` (VIR_STORAGE_VOL_CREATE_REFLINK).
    pub reflink: bool,
}

/// linux/fs.h FICLONE = _IOW(0x94, 9, int): the same request as BTRFS_IOC_CLONE.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Zero blocks a raw copy leaves as holes: libvirt's write block (at least 4 KiB).
const RAW_GRAIN: usize = 4096;

const CHUNK: usize = 1 << 20;

/// The volume XML virsh's vol-clone builds: the input's `vol-dumpxml` with the name replaced.
pub fn clone_spec(v: &VolInfo, name: &str) -> VolCreate {
    VolCreate {
        name: name.to_string(),
        capacity: v.capacity,
        allocation: Some(v.allocation),
        format: (!v.format.is_empty()).then(|| v.format.clone()),
        backing: v.backing.as_ref().map(|b| b.path.clone()),
        backing_format: v.backing.as_ref().and_then(|b| b.format.clone()),
        prealloc_metadata: false,
        compat: v.compat.clone(),
        cluster_size: v.cluster_size,
        lazy_refcounts: v.lazy_refcounts,
    }
}

impl StorageDriver {
    /// `vol-clone`: a copy of `vol` named `new_name` in the same pool.
    pub fn clone_volume(
        &self,
        pool: Option<&str>,
        vol: &str,
        new_name: &str,
        flags: CopyFlags,
    ) -> Result<VolInfo, StorageError> {
        let v = self.volume(pool, vol)?;
        let pool = v.pool.clone();
        self.create_volume_from(&pool, &clone_spec(&v, new_name), &v, flags)
    }

    /// `vol-create-from`: a new volume in `pool` as `spec` describes, holding `input`'s disk
    /// contents (see the module documentation for the rules).
    pub fn create_volume_from(
        &self,
        pool: &str,
        spec: &VolCreate,
        input: &VolInfo,
        flags: CopyFlags,
    ) -> Result<VolInfo, StorageError> {
        let _g = self.lock()?;
        let r = self.active(pool)?;
        check_name(&spec.name)?;
        let mut spec = spec.clone();
        spec.capacity = spec.capacity.max(input.capacity);
        spec.allocation = Some(spec.effective_allocation());
        let flags = CopyFlags {
            prealloc_metadata: flags.prealloc_metadata || spec.prealloc_metadata,
            ..flags
        };
        spec.prealloc_metadata = flags.prealloc_metadata;
        if !file_pool(&r) {
            return self.create_lv_from(&r, &spec, input, flags);
        }
        let path = r.target().join(&spec.name);
        if path.exists() {
            return Err(StorageError::VolumeExists(spec.name.clone()));
        }
        let out = image::block_format(spec.format.as_deref().unwrap_or("raw"))?;
        let in_fmt = input.block_format()?;
        let result = if out == ImageFormat::Raw && in_fmt == ImageFormat::Raw {
            raw_copy(&path, &spec, input, flags)
        } else {
            convert(&r, &path, out, &spec, input, flags)
        };
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        VolInfo::read(r.name(), &path)
    }

    fn create_lv_from(
        &self,
        r: &PoolRecord,
        spec: &VolCreate,
        input: &VolInfo,
        flags: CopyFlags,
    ) -> Result<VolInfo, StorageError> {
        if flags.prealloc_metadata {
            return Err(StorageError::Unsupported(
                "metadata preallocation is not supported for block volumes".into(),
            ));
        }
        if flags.reflink {
            return Err(StorageError::Unsupported(format!(
                "--reflink needs a filesystem that shares extents; pool '{}' holds logical volumes",
                r.name()
            )));
        }
        let lv_spec = VolCreate {
            prealloc_metadata: false,
            ..spec.clone()
        };
        let lv = self.create_lv(r, &lv_spec)?;
        if let Err(e) = copy_onto_device(input, Path::new(&lv.path)) {
            // A half-copied volume would look like a good one.
            let _ = logical::delete_volume(&lv.path);
            return Err(e);
        }
        Ok(lv)
    }
}

/// libvirt's createRawFile with an input volume.
fn raw_copy(
    path: &Path,
    spec: &VolCreate,
    input: &VolInfo,
    flags: CopyFlags,
) -> Result<(), StorageError> {
    if flags.prealloc_metadata {
        return Err(StorageError::Unsupported(
            "metadata preallocation is not supported for raw volumes".into(),
        ));
    }
    if spec.backing.is_some() {
        return Err(StorageError::Unsupported(
            "backing storage not supported for raw volumes".into(),
        ));
    }
    spec.qcow2_v2(ImageFormat::Raw)?;
    let dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StorageError::io("Failed to create file", path))?;
    dst.set_len(spec.capacity)
        .map_err(StorageError::io("cannot extend file", path))?;
    let allocation = spec.effective_allocation();
    // An allocation below the input's capacity asks for a sparse copy: nothing is reserved.
    if allocation >= input.capacity && allocation > 0 {
        image::fallocate(&dst, path, 0, allocation.min(spec.capacity))?;
    }
    let src_path = Path::new(&input.path);
    let src =
        File::open(src_path).map_err(StorageError::io("could not open input path", src_path))?;
    if flags.reflink {
        // SAFETY: FICLONE takes the source descriptor as its argument; both are open files.
        let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) };
        if r < 0 {
            return Err(StorageError::io("failed to clone files from", src_path)(
                std::io::Error::last_os_error(),
            ));
        }
    } else {
        let mut buf = vec![0u8; CHUNK];
        let mut off = 0u64;
        while off < input.capacity {
            let n = (input.capacity - off).min(CHUNK as u64) as usize;
            let got = read_full(&src, &mut buf[..n], off, src_path)?;
            if got == 0 {
                break;
            }
            for (i, piece) in buf[..got].chunks(RAW_GRAIN).enumerate() {
                if piece.iter().any(|b| *b != 0) {
                    dst.write_all_at(piece, off + (i * RAW_GRAIN) as u64)
                        .map_err(StorageError::io("failed writing to file", path))?;
                }
            }
            off += got as u64;
        }
    }
    dst.sync_all()
        .map_err(StorageError::io("cannot sync data to file", path))
}

/// Reads up to `buf.len()` bytes at `off`; fewer only at the end of the input.
fn read_full(f: &File, buf: &mut [u8], off: u64, path: &Path) -> Result<usize, StorageError> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StorageError::io("failed reading from file", path)(e)),
        }
    }
    Ok(got)
}

/// What libvirt runs `qemu-img convert` for.
fn convert(
    r: &PoolRecord,
    path: &Path,
    out: ImageFormat,
    spec: &VolCreate,
    input: &VolInfo,
    flags: CopyFlags,
) -> Result<(), StorageError> {
    if flags.reflink {
        return Err(StorageError::InvalidArg(format!(
            "--reflink copies only a raw volume into a raw volume; '{}' ({}) into {} format is a conversion",
            input.name,
            if input.format.is_empty() { "raw" } else { &input.format },
            spec.format.as_deref().unwrap_or("raw")
        )));
    }
    if flags.prealloc_metadata && out != ImageFormat::Qcow2 {
        return Err(StorageError::Unsupported(
            "metadata preallocation only available with qcow2".into(),
        ));
    }
    let v2 = spec.qcow2_v2(out)?;
    if let Some(b) = &spec.backing {
        check_backing(r, b, out, input, flags)?;
    }
    let kib = |b: u64| b.div_ceil(1024);
    // libvirt weighs the allocation against the requested capacity, while the copy itself
    // gets the input's size: hand the create rule an allocation that gives the same answer.
    let metadata_only = kib(spec.capacity) > kib(spec.effective_allocation());
    let cs = CreateSpec {
        format: out,
        capacity: input.capacity,
        allocation: Some(if metadata_only { 0 } else { input.capacity }),
        backing: None,
        prealloc_metadata: flags.prealloc_metadata,
        compat_v2: v2,
        cluster_size: spec.cluster_size,
        lazy_refcounts: spec.lazy_refcounts,
    };
    image::copy(Path::new(&input.path), input.block_format()?, path, &cs)
}

/// libvirt's storageBackendCreateQemuImgSetBacking checks; the backing store is then dropped
/// because the copy is a conversion.
fn check_backing(
    r: &PoolRecord,
    backing: &str,
    out: ImageFormat,
    input: &VolInfo,
    flags: CopyFlags,
) -> Result<(), StorageError> {
    if out == ImageFormat::Raw {
        return Err(StorageError::Unsupported(
            "cannot set backing store for raw volume".into(),
        ));
    }
    if flags.prealloc_metadata {
        return Err(StorageError::Unsupported(
            "metadata preallocation conflicts with backing store".into(),
        ));
    }
    let resolved = if backing.starts_with('/') {
        PathBuf::from(backing)
    } else {
        r.target().join(backing)
    };
    if let Some(b) = &input.backing {
        if Path::new(&b.path) != resolved {
            return Err(StorageError::Internal(format!(
                "a different backing store cannot be specified. ('{backing}' is not '{}', the backing store of '{}')",
                b.path, input.name
            )));
        }
    }
    File::open(&resolved).map(|_| ()).map_err(StorageError::io(
        "inaccessible backing store volume",
        &resolved,
    ))
}

/// Writes every byte of `input`'s disk contents onto the device at `dev` (zeroes included),
/// up to the smaller of the two sizes.
fn copy_onto_device(input: &VolInfo, dev: &Path) -> Result<(), StorageError> {
    let mut src = block::open(
        Path::new(&input.path),
        &OpenOptions {
            format: input.block_format()?,
            read_only: true,
            ..OpenOptions::default()
        },
    )?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(StorageError::io("cannot open volume", dev))?;
    let dev_len = std::io::Seek::seek(&mut &out, std::io::SeekFrom::End(0))
        .map_err(StorageError::io("cannot size volume", dev))?;
    let len = src.size().min(dev_len);
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        src.read_at(&mut buf[..n], off)?;
        out.write_all_at(&buf[..n], off)
            .map_err(StorageError::io("failed writing to volume", dev))?;
        off += n as u64;
    }
    out.sync_all()
        .map_err(StorageError::io("cannot sync data to volume", dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(format: &str, backing: Option<&str>) -> VolInfo {
        VolInfo {
            name: "src".into(),
            key: "/p/src".into(),
            path: "/p/src".into(),
            pool: "p".into(),
            vol_type: "file".into(),
            format: format.into(),
            capacity: 1 << 20,
            allocation: 4096,
            physical: 1 << 20,
            mode: 0o600,
            uid: 0,
            gid: 0,
            atime: (0, 0),
            mtime: (0, 0),
            ctime: (0, 0),
            compat: (format == "qcow2").then(|| "1.1".to_string()),
            cluster_size: (format == "qcow2").then_some(4096),
            lazy_refcounts: false,
            backing: backing.map(|p| super::super::volume::BackingInfo {
                path: p.into(),
                format: Some("raw".into()),
                perms: None,
            }),
        }
    }

    #[test]
    fn clone_xml_is_the_dumpxml_renamed() {
        let s = clone_spec(&vol("qcow2", Some("/p/base")), "copy");
        assert_eq!(s.name, "copy");
        assert_eq!(s.capacity, 1 << 20);
        assert_eq!(s.allocation, Some(4096));
        assert_eq!(s.format.as_deref(), Some("qcow2"));
        assert_eq!(s.backing.as_deref(), Some("/p/base"));
        assert_eq!(s.compat.as_deref(), Some("1.1"));
        assert_eq!(s.cluster_size, Some(4096));
        // A logical volume has no format: the copy is raw.
        let mut lv = vol("", None);
        lv.vol_type = "block".into();
        assert_eq!(clone_spec(&lv, "c").format, None);
    }
}
