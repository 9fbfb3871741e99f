//! `qemu-img info` for qcow2 images, without opening the image as a disk (and without locking it,
//! like `qemu-img info -U`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::header::CompressionType;
use super::snapshot::{self, Snapshot};
use crate::block::file::ImageFile;
use crate::block::{BlockError, CacheMode, ImageFormat};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub virtual_size: u64,
    pub cluster_size: u64,
    pub version: u32,
    /// As stored in the header (relative names are relative to the image's directory).
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    pub dirty: bool,
    pub corrupt: bool,
    pub lazy_refcounts: bool,
    pub compression_type: CompressionType,
    pub refcount_bits: u32,
    pub snapshots: Vec<Snapshot>,
    /// Bytes the file occupies on the host (allocated blocks), like qemu-img's "disk size".
    pub actual_size: u64,
    /// Length of the file.
    pub file_length: u64,
}

pub fn info(path: &Path) -> Result<ImageInfo, BlockError> {
    let mut file = ImageFile::open(path, true, CacheMode::Writeback)?;
    let hdr = super::read_header(&mut file, path)?;
    let (snapshots, _) = snapshot::read_table(
        &mut file,
        path,
        hdr.snapshots_offset,
        hdr.nb_snapshots,
        hdr.cluster_size(),
    )?;
    let meta = file
        .file()
        .metadata()
        .map_err(BlockError::io(path, "stat"))?;
    Ok(ImageInfo {
        format: ImageFormat::Qcow2,
        virtual_size: hdr.size,
        cluster_size: hdr.cluster_size(),
        version: hdr.version,
        backing_file: hdr.backing_file.clone(),
        backing_format: hdr.backing_format.clone(),
        dirty: hdr.dirty(),
        corrupt: hdr.incompatible & super::header::INCOMPAT_CORRUPT != 0,
        lazy_refcounts: hdr.lazy_refcounts(),
        compression_type: hdr.compression_type,
        refcount_bits: 1 << hdr.refcount_order,
        snapshots,
        actual_size: meta.blocks() * 512,
        file_length: meta.len(),
    })
}
