//! Creating qcow2 images (`qemu-img create -f qcow2` equivalent).
//!
//! Layout: header cluster, refcount table, refcount blocks, L1 table, then (with preallocation) every
//! L2 table and every data cluster, in guest order. Everything is counted once; the header is
//! written last so an interrupted create never looks like a valid image.

use std::path::{Path, PathBuf};

use super::header::{
    CompressionType, Header, COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION, MAX_CLUSTER_BITS,
    MIN_CLUSTER_BITS, V2_HEADER_LEN, V3_HEADER_LEN,
};
use super::refcount::entry_set;
use super::table::{write_be_u64s, COPIED};
use super::MAX_L1_ENTRIES;
use crate::block::file::ImageFile;
use crate::block::{BlockError, ImageFormat, Preallocation};

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Virtual size in bytes (a multiple of 512).
    pub size: u64,
    /// 2 (QEMU's compat=0.10) or 3 (compat=1.1).
    pub version: u32,
    /// 9 (512 B) ..= 21 (2 MiB); 16 (64 KiB) is QEMU's default.
    pub cluster_bits: u32,
    /// Backing file name as it will be stored (relative names resolve against the image's directory)
    /// and its format.
    pub backing: Option<(PathBuf, ImageFormat)>,
    pub preallocation: Preallocation,
    /// v3 only.
    pub lazy_refcounts: bool,
    /// Compression used by compressed writes; zstd needs v3.
    pub compression_type: CompressionType,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            size: 0,
            version: 3,
            cluster_bits: 16,
            backing: None,
            preallocation: Preallocation::Off,
            lazy_refcounts: false,
            compression_type: CompressionType::Zlib,
        }
    }
}

const REFCOUNT_ORDER: u32 = 4;

/// Creates (or overwrites) a qcow2 image at `path`.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<(), BlockError> {
    let bad = |d: String| BlockError::invalid(path, d);
    if opts.version != 2 && opts.version != 3 {
        return Err(bad(format!("qcow2 version {} (2 or 3)", opts.version)));
    }
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&opts.cluster_bits) {
        return Err(bad(format!(
            "cluster size 2^{} (512 bytes to 2 MiB, a power of two)",
            opts.cluster_bits
        )));
    }
    if !opts.size.is_multiple_of(512) || opts.size > i64::MAX as u64 {
        return Err(bad(format!(
            "image size {} must be a multiple of 512 bytes",
            opts.size
        )));
    }
    if opts.version < 3 && opts.lazy_refcounts {
        return Err(bad("lazy refcounts need qcow2 version 3".into()));
    }
    if opts.version < 3 && opts.compression_type != CompressionType::Zlib {
        return Err(bad("compression type zstd needs qcow2 version 3".into()));
    }
    let cb = opts.cluster_bits;
    let cs = 1u64 << cb;
    let l2_entries = cs / 8;
    let data_clusters = opts.size.div_ceil(cs);
    let l1_size = data_clusters.div_ceil(l2_entries);
    if l1_size > MAX_L1_ENTRIES {
        return Err(bad(format!(
            "image size {} is too large for {cs}-byte clusters",
            opts.size
        )));
    }
    let l1_clusters = (l1_size * 8).div_ceil(cs);
    let prealloc = opts.preallocation != Preallocation::Off;
    let l2_tables = if prealloc { l1_size } else { 0 };
    let data = if prealloc { data_clusters } else { 0 };
    let fixed = 1 + l1_clusters + l2_tables + data;

    let per_block = (cs * 8) >> REFCOUNT_ORDER;
    let (mut rt, mut rb) = (1u64, 1u64);
    loop {
        let total = fixed + rt + rb;
        let need_rb = total.div_ceil(per_block);
        let need_rt = (need_rb * 8).div_ceil(cs);
        if need_rb <= rb && need_rt <= rt {
            break;
        }
        rb = rb.max(need_rb);
        rt = rt.max(need_rt);
    }
    let rt_start = 1;
    let rb_start = rt_start + rt;
    let l1_start = rb_start + rb;
    let l2_start = l1_start + l1_clusters;
    let data_start = l2_start + l2_tables;
    let total = data_start + data;

    let mut hdr = Header {
        version: opts.version,
        backing_file_offset: 0,
        backing_file_size: 0,
        cluster_bits: cb,
        size: opts.size,
        crypt_method: 0,
        l1_size: l1_size as u32,
        l1_table_offset: l1_start * cs,
        refcount_table_offset: rt_start * cs,
        refcount_table_clusters: rt as u32,
        nb_snapshots: 0,
        snapshots_offset: 0,
        incompatible: 0,
        compatible: 0,
        autoclear: 0,
        refcount_order: REFCOUNT_ORDER,
        header_length: if opts.version >= 3 {
            V3_HEADER_LEN
        } else {
            V2_HEADER_LEN
        },
        compression_type: opts.compression_type,
        backing_file: None,
        backing_format: None,
        feature_names: Vec::new(),
        has_bitmaps: false,
    };
    if opts.lazy_refcounts {
        hdr.compatible |= COMPAT_LAZY_REFCOUNTS;
    }
    if opts.compression_type != CompressionType::Zlib {
        hdr.incompatible |= INCOMPAT_COMPRESSION;
    }
    if let Some((b, fmt)) = &opts.backing {
        let name = b
            .to_str()
            .ok_or_else(|| bad(format!("backing file name {} is not UTF-8", b.display())))?;
        hdr.backing_file = Some(name.to_string());
        hdr.backing_format = Some(fmt.as_str().to_string());
    }
    let header_bytes = hdr.encode().map_err(bad)?;

    let mut f = ImageFile::create(path)?;
    f.set_len(total * cs)?;

    // Refcount table and blocks: every cluster up to `total` is in use once.
    let table: Vec<u64> = (0..rt * cs / 8)
        .map(|i| if i < rb { (rb_start + i) * cs } else { 0 })
        .collect();
    f.write_at(&write_be_u64s(&table), rt_start * cs)?;
    for b in 0..rb {
        let mut block = vec![0u8; cs as usize];
        for i in 0..per_block {
            if b * per_block + i >= total {
                break;
            }
            entry_set(&mut block, i as usize, REFCOUNT_ORDER, 1);
        }
        f.write_at(&block, (rb_start + b) * cs)?;
    }
    if prealloc {
        let l1: Vec<u64> = (0..l1_size)
            .map(|i| ((l2_start + i) * cs) | COPIED)
            .collect();
        f.write_at(&write_be_u64s(&l1), l1_start * cs)?;
        for t in 0..l2_tables {
            let l2: Vec<u64> = (0..l2_entries)
                .map(|i| {
                    let g = t * l2_entries + i;
                    if g < data_clusters {
                        ((data_start + g) * cs) | COPIED
                    } else {
                        0
                    }
                })
                .collect();
            f.write_at(&write_be_u64s(&l2), (l2_start + t) * cs)?;
        }
        match opts.preallocation {
            Preallocation::Falloc => {
                crate::block::raw::posix_fallocate(f.file(), path, data_start * cs, data * cs)?
            }
            Preallocation::Full => f.write_zero_buffers(data_start * cs, data * cs)?,
            _ => {}
        }
    }
    f.sync()?;
    f.write_at(&header_bytes, 0)?;
    f.sync()
}
