//! The qcow2 header and its extensions: parsing with validation, and encoding for new images.
//!
//! Only fixed-position fields are ever rewritten in an existing image (dirty bit, autoclear bits,
//! refcount table location), so unknown header extensions survive untouched.

use std::path::Path;

use crate::block::BlockError;

pub const MAGIC: [u8; 4] = *b"QFI\xfb";

pub const V2_HEADER_LEN: u32 = 72;
pub const V3_HEADER_MIN_LEN: u32 = 104;
/// What we write for v3: the 104-byte header plus the compression type byte, padded to 8.
pub const V3_HEADER_LEN: u32 = 112;

/// Byte offsets of fields rewritten in place.
pub const OFF_REFCOUNT_TABLE: u64 = 48;
pub const OFF_INCOMPATIBLE: u64 = 72;
pub const OFF_AUTOCLEAR: u64 = 88;

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_SUPPORTED: u64 = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;

pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;

pub const AUTOCLEAR_BITMAPS: u64 = 1 << 0;

pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
pub const EXT_BITMAPS: u32 = 0x2385_2875;
pub const EXT_CRYPTO: u32 = 0x0537_be77;
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// QEMU refuses longer backing file names.
pub const MAX_BACKING_NAME: u32 = 1023;

pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;

/// Compression algorithm for compressed clusters (header field `compression_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    #[default]
    Zlib,
    Zstd,
}

impl CompressionType {
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// A named feature bit from the feature name table extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureName {
    /// 0 incompatible, 1 compatible, 2 autoclear.
    pub kind: u8,
    pub bit: u8,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: CompressionType,
    /// Backing file name as stored (not yet resolved against the image's directory).
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    pub feature_names: Vec<FeatureName>,
    pub has_bitmaps: bool,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub fn dirty(&self) -> bool {
        self.incompatible & INCOMPAT_DIRTY != 0
    }

    pub fn lazy_refcounts(&self) -> bool {
        self.compatible & COMPAT_LAZY_REFCOUNTS != 0
    }

    /// Parses the header from the start of the file. `first` holds at least the first cluster (or the
    /// whole file if shorter); bytes past the end of the file must be absent, not zero-filled.
    pub fn parse(path: &Path, first: &[u8]) -> Result<Header, BlockError> {
        let corrupt = |d: String| BlockError::corrupt(path, d);
        if first.len() < 4 || first[..4] != MAGIC {
            return Err(BlockError::invalid(path, "not a qcow2 image (bad magic)"));
        }
        if first.len() < V2_HEADER_LEN as usize {
            return Err(corrupt(format!(
                "file is {} bytes, shorter than a qcow2 header",
                first.len()
            )));
        }
        let version = be32(first, 4);
        if version != 2 && version != 3 {
            return Err(BlockError::unsupported(
                path,
                format!("qcow2 version {version}"),
            ));
        }
        let cluster_bits = be32(first, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(corrupt(format!(
                "cluster_bits {cluster_bits} outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
            )));
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(first, 8),
            backing_file_size: be32(first, 16),
            cluster_bits,
            size: be64(first, 24),
            crypt_method: be32(first, 32),
            l1_size: be32(first, 36),
            l1_table_offset: be64(first, 40),
            refcount_table_offset: be64(first, 48),
            refcount_table_clusters: be32(first, 56),
            nb_snapshots: be32(first, 60),
            snapshots_offset: be64(first, 64),
            incompatible: 0,
            compatible: 0,
            autoclear: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            compression_type: CompressionType::Zlib,
            backing_file: None,
            backing_format: None,
            feature_names: Vec::new(),
            has_bitmaps: false,
        };
        if version == 3 {
            if first.len() < V3_HEADER_MIN_LEN as usize {
                return Err(corrupt("file is shorter than a qcow2 v3 header".into()));
            }
            h.incompatible = be64(first, 72);
            h.compatible = be64(first, 80);
            h.autoclear = be64(first, 88);
            h.refcount_order = be32(first, 96);
            h.header_length = be32(first, 100);
            if h.header_length < V3_HEADER_MIN_LEN || !h.header_length.is_multiple_of(8) {
                return Err(corrupt(format!(
                    "header_length {} (must be a multiple of 8, at least {V3_HEADER_MIN_LEN})",
                    h.header_length
                )));
            }
        }
        let cs = h.cluster_size();
        if u64::from(h.header_length) > cs || h.header_length as usize > first.len() {
            return Err(corrupt(format!(
                "header_length {} does not fit in the first cluster",
                h.header_length
            )));
        }
        if h.header_length > 104 {
            h.compression_type = match first[104] {
                0 => CompressionType::Zlib,
                1 => CompressionType::Zstd,
                t => {
                    return Err(BlockError::unsupported(
                        path,
                        format!("compression type {t}"),
                    ))
                }
            };
        }
        if h.incompatible & INCOMPAT_COMPRESSION == 0 && h.compression_type != CompressionType::Zlib
        {
            return Err(corrupt(
                "compression type set without the compression-type incompatible bit".into(),
            ));
        }
        h.parse_extensions(path, first)?;
        h.check_features(path)?;
        if h.crypt_method != 0 {
            return Err(BlockError::unsupported(
                path,
                format!("encryption (crypt_method {})", h.crypt_method),
            ));
        }
        if h.refcount_order > 6 {
            return Err(corrupt(format!(
                "refcount_order {} (at most 6)",
                h.refcount_order
            )));
        }
        if h.size > i64::MAX as u64 {
            return Err(corrupt(format!("virtual size {} too large", h.size)));
        }
        if h.backing_file_offset != 0 {
            if h.backing_file_size > MAX_BACKING_NAME || h.backing_file_size == 0 {
                return Err(corrupt(format!(
                    "backing file name length {}",
                    h.backing_file_size
                )));
            }
            let start = h.backing_file_offset;
            let end = start.saturating_add(u64::from(h.backing_file_size));
            if end > first.len() as u64 || end > cs || start < u64::from(h.header_length) {
                return Err(corrupt(format!(
                    "backing file name at offset {start} lies outside the header cluster"
                )));
            }
            let name = &first[start as usize..end as usize];
            let name = std::str::from_utf8(name)
                .map_err(|_| corrupt("backing file name is not UTF-8".into()))?;
            h.backing_file = Some(name.to_string());
        }
        Ok(h)
    }

    fn parse_extensions(&mut self, path: &Path, first: &[u8]) -> Result<(), BlockError> {
        let corrupt = |d: String| BlockError::corrupt(path, d);
        let cs = self.cluster_size() as usize;
        let mut limit = first.len().min(cs);
        if self.backing_file_offset != 0 && (self.backing_file_offset as usize) < limit {
            limit = self.backing_file_offset as usize;
        }
        let mut off = self.header_length as usize;
        loop {
            if off + 8 > limit {
                // QEMU tolerates a missing end marker when the extensions run into the backing name.
                return Ok(());
            }
            let ty = be32(first, off);
            let len = be32(first, off + 4) as usize;
            off += 8;
            if ty == EXT_END {
                return Ok(());
            }
            if len > limit - off {
                return Err(corrupt(format!(
                    "header extension {ty:#x} of {len} bytes runs past the header cluster"
                )));
            }
            let data = &first[off..off + len];
            match ty {
                EXT_BACKING_FORMAT => {
                    let s = std::str::from_utf8(data)
                        .map_err(|_| corrupt("backing format name is not UTF-8".into()))?;
                    self.backing_format = Some(s.trim_end_matches('\0').to_string());
                }
                EXT_FEATURE_TABLE => {
                    for e in data.chunks_exact(48) {
                        let name = e[2..].split(|&b| b == 0).next().unwrap_or(&[]);
                        self.feature_names.push(FeatureName {
                            kind: e[0],
                            bit: e[1],
                            name: String::from_utf8_lossy(name).into_owned(),
                        });
                    }
                }
                EXT_BITMAPS => self.has_bitmaps = true,
                EXT_CRYPTO => {
                    return Err(BlockError::unsupported(
                        path,
                        "encryption (full disk encryption header)",
                    ))
                }
                EXT_DATA_FILE => return Err(BlockError::unsupported(path, "external data file")),
                _ => {} // Unknown extensions are kept as they are: we never rewrite them.
            }
            off += len.next_multiple_of(8);
        }
    }

    fn feature_name(&self, kind: u8, bit: u32) -> String {
        self.feature_names
            .iter()
            .find(|f| f.kind == kind && u32::from(f.bit) == bit)
            .map(|f| format!("'{}' (bit {bit})", f.name))
            .unwrap_or_else(|| format!("unknown incompatible feature bit {bit}"))
    }

    fn check_features(&self, path: &Path) -> Result<(), BlockError> {
        if self.incompatible & INCOMPAT_DATA_FILE != 0 {
            return Err(BlockError::unsupported(path, "external data file"));
        }
        if self.incompatible & INCOMPAT_EXTL2 != 0 {
            return Err(BlockError::unsupported(
                path,
                "extended L2 entries (subclusters)",
            ));
        }
        let unknown =
            self.incompatible & !INCOMPAT_SUPPORTED & !INCOMPAT_DATA_FILE & !INCOMPAT_EXTL2;
        if unknown != 0 {
            let bit = unknown.trailing_zeros();
            return Err(BlockError::unsupported(path, self.feature_name(0, bit)));
        }
        Ok(())
    }

    /// The first cluster of a new image: header, extensions, backing file name.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&[0u8; 8]); // backing_file_offset, filled below
        b.extend_from_slice(&[0u8; 4]); // backing_file_size
        b.extend_from_slice(&self.cluster_bits.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.crypt_method.to_be_bytes());
        b.extend_from_slice(&self.l1_size.to_be_bytes());
        b.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        b.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        b.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        if self.version >= 3 {
            b.extend_from_slice(&self.incompatible.to_be_bytes());
            b.extend_from_slice(&self.compatible.to_be_bytes());
            b.extend_from_slice(&self.autoclear.to_be_bytes());
            b.extend_from_slice(&self.refcount_order.to_be_bytes());
            b.extend_from_slice(&V3_HEADER_LEN.to_be_bytes());
            b.push(match self.compression_type {
                CompressionType::Zlib => 0,
                CompressionType::Zstd => 1,
            });
            b.resize(V3_HEADER_LEN as usize, 0);
        }
        if let Some(fmt) = &self.backing_format {
            b.extend_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
            b.extend_from_slice(&(fmt.len() as u32).to_be_bytes());
            b.extend_from_slice(fmt.as_bytes());
            b.resize(b.len().next_multiple_of(8), 0);
        }
        if self.version >= 3 {
            // The feature name table lets other tools name our bits in their messages.
            let names: [(u8, u8, &str); 6] = [
                (0, 0, "dirty bit"),
                (0, 1, "corrupt bit"),
                (0, 2, "external data file"),
                (0, 3, "compression type"),
                (0, 4, "extended L2 entries"),
                (1, 0, "lazy refcounts"),
            ];
            b.extend_from_slice(&EXT_FEATURE_TABLE.to_be_bytes());
            b.extend_from_slice(&((names.len() * 48) as u32).to_be_bytes());
            for (kind, bit, name) in names {
                let mut e = [0u8; 48];
                e[0] = kind;
                e[1] = bit;
                e[2..2 + name.len()].copy_from_slice(name.as_bytes());
                b.extend_from_slice(&e);
            }
        }
        b.extend_from_slice(&[0u8; 8]); // end of extensions
        if let Some(name) = &self.backing_file {
            if name.is_empty() || name.len() > MAX_BACKING_NAME as usize {
                return Err(format!(
                    "backing file name of {} bytes (1..={MAX_BACKING_NAME})",
                    name.len()
                ));
            }
            let off = b.len() as u64;
            b[8..16].copy_from_slice(&off.to_be_bytes());
            b[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
        }
        if b.len() as u64 > self.cluster_size() {
            return Err(format!(
                "header, extensions and backing file name ({} bytes) do not fit in one {}-byte cluster",
                b.len(),
                self.cluster_size()
            ));
        }
        Ok(b)
    }
}
