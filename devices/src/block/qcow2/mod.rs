//! qcow2 images, versions 2 and 3, read-write.
//!
//! Supported: cluster sizes 512 B – 2 MiB; L1/L2 tables with a bounded LRU cache; refcount orders 0..=6
//! (16-bit is what we create) with table growth; zero clusters (v3 zero flag, preallocated or not);
//! compressed clusters (read zlib/deflate and zstd, write [`Qcow2::write_compressed`] with the image's
//! compression type; writing into a compressed cluster decompresses it into a fresh cluster); backing
//! chains of qcow2 or raw images (from the header, resolved against the image's directory, or from a
//! [`BackingSpec`](crate::block::BackingSpec)); discard; the dirty bit and lazy refcounts; internal
//! snapshots (the table is never rewritten and shared clusters are copied on write, i.e. the
//! `QCOW_OFLAG_COPIED` rules); unknown header extensions are preserved.
//!
//! Refused with a message naming the feature: encryption, external data files, extended L2 entries
//! (subclusters), unknown incompatible feature bits, compression types other than zlib/zstd, and
//! write access to images marked corrupt. Autoclear bits (e.g. persistent bitmaps) are cleared on a
//! writable open, as the spec requires of programs that don't maintain those features.
//!
//! # Crash consistency
//!
//! Metadata is written through (no dirty metadata caches), in dependency order: refcounts of newly
//! allocated clusters are set — and, unless cache='unsafe' or lazy refcounts are on, synced — before
//! anything points at them; data is written before the L2 entry that maps it; a new L2 table before the
//! L1 entry. Clusters are reserved in chunks ([`Qcow2::alloc`]) so the sync happens once per chunk, not
//! once per write. Refcount decrements (discard, copy-on-write of shared clusters) are deferred until
//! the next flush, after the sync that made the unmapping durable. A crash therefore leaks clusters at
//! worst, which `qemu-img check` reports as leaks, not corruption. With lazy refcounts the image is
//! marked dirty while it has unflushed changes and refcounts are rebuilt from the L1/L2 tables (all
//! snapshots included) when an image still marked dirty is opened for writing.
//!
//! # Discard and zeroes
//!
//! v3: whole clusters become zero clusters (or unallocated when there is no backing file), their
//! storage freed if unmapping is allowed. v2 has no zero flag: without a backing file clusters are
//! deallocated; with one, zeroes are written as data so the backing file never shows through (QEMU
//! would let it show through; returning zeroes is the stronger promise). Partial clusters always get
//! zero data, so reads after discard/write-zeroes return zeroes everywhere.

pub mod cache;
pub mod check;
pub mod compress;
pub mod create;
pub mod header;
pub mod info;
mod rebuild;
pub mod refcount;
pub mod snapshot;
pub mod table;

use std::path::{Path, PathBuf};

pub use check::{check, CheckResult, Repair};
pub use create::{create, CreateOptions};
pub use header::CompressionType;
pub use info::{info, ImageInfo};

use self::cache::Lru;
use self::header::{Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, OFF_AUTOCLEAR, OFF_INCOMPATIBLE};
use self::refcount::{Op, Refcounts};
use self::snapshot::Snapshot;
use self::table::{decode_l1, read_be_u64s, write_be_u64s, L2Entry, COPIED, ZERO};
use super::file::ImageFile;
use super::guest_io::{self, GuestBufs};
use super::{check_range, lock, open_chain, BlockBackend, BlockError, ImageFormat, OpenOptions};
use vm_memory::Bytes;

/// Memory for cached L2 tables (QEMU's default covers 8 MiB worth of tables too).
const L2_CACHE_BYTES: u64 = 8 << 20;
const REFCOUNT_CACHE_BYTES: u64 = 2 << 20;
/// QEMU's QCOW_MAX_L1_SIZE: 32 MiB of L1 entries.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// Refcount decrements queued before we flush on our own.
const MAX_PENDING_FREES: usize = 4096;

/// How a run of guest bytes maps onto the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    Zero,
    Backing,
    Data(u64),
    Compressed(u64),
}

pub struct Qcow2 {
    file: ImageFile,
    path: PathBuf,
    hdr: Header,
    cluster_bits: u32,
    cs: u64,
    l2_bits: u32,
    size: u64,
    l1: Vec<u64>,
    l2_cache: Lru<Vec<u64>>,
    /// Loaded only for writable opens: reads never need refcounts.
    refs: Option<Refcounts>,
    backing: Option<Box<dyn BlockBackend>>,
    read_only: bool,
    discard_unmap: bool,
    lazy: bool,
    /// We set the dirty bit (lazy refcounts) and have not cleared it yet.
    marked_dirty: bool,
    /// Reserved clusters (refcount 1, referenced by nothing yet): (first cluster, count).
    pool: Vec<(u64, u64)>,
    /// Chunk size of reservations, in clusters.
    chunk: u64,
    /// Byte ranges whose clusters lose one reference at the next flush.
    pending_free: Vec<(u64, u64)>,
    free_hint: u64,
    /// Last decompressed cluster, by its L2 entry.
    decompressed: Option<(u64, Vec<u8>)>,
    /// Where the next compressed cluster may go: (byte offset, end of its host cluster).
    compress_slot: Option<(u64, u64)>,
    snapshots: Vec<Snapshot>,
    snapshot_table_len: u64,
    closed: bool,
}

impl Qcow2 {
    /// Opens a qcow2 image (`opts.format` is not consulted).
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Qcow2, BlockError> {
        Qcow2::open_at_depth(path, opts, 0)
    }

    pub(crate) fn open_at_depth(
        path: &Path,
        opts: &OpenOptions,
        depth: usize,
    ) -> Result<Qcow2, BlockError> {
        let mut file = ImageFile::open(path, opts.read_only, opts.cache)?;
        if opts.lock {
            lock::lock_image(file.file(), path, !opts.read_only)?;
        }
        let hdr = read_header(&mut file, path)?;
        if !opts.read_only && hdr.incompatible & INCOMPAT_CORRUPT != 0 {
            return Err(BlockError::invalid(
                path,
                "image is marked corrupt; it can only be opened read-only (repair it with 'qemu-img check -r all')",
            ));
        }
        let cluster_bits = hdr.cluster_bits;
        let cs = hdr.cluster_size();
        let l2_bits = cluster_bits - 3;
        let l1 = read_l1(&mut file, path, &hdr)?;
        let (snapshots, snapshot_table_len) =
            snapshot::read_table(&mut file, path, hdr.snapshots_offset, hdr.nb_snapshots, cs)?;
        let backing = open_backing(path, &hdr, opts, depth)?;
        let mut q = Qcow2 {
            path: path.to_path_buf(),
            cluster_bits,
            cs,
            l2_bits,
            size: hdr.size,
            l1,
            l2_cache: Lru::new((L2_CACHE_BYTES >> cluster_bits).clamp(4, 1024) as usize),
            refs: None,
            backing,
            read_only: opts.read_only,
            discard_unmap: opts.discard_unmap,
            lazy: hdr.version >= 3 && hdr.lazy_refcounts(),
            marked_dirty: false,
            pool: Vec::new(),
            chunk: ((4u64 << 20) >> cluster_bits).clamp(1, 256),
            pending_free: Vec::new(),
            free_hint: 0,
            decompressed: None,
            compress_slot: None,
            snapshots,
            snapshot_table_len,
            closed: opts.read_only,
            hdr,
            file,
        };
        if !opts.read_only {
            q.open_for_write()?;
        }
        Ok(q)
    }

    fn open_for_write(&mut self) -> Result<(), BlockError> {
        if self.hdr.autoclear != 0 {
            // We don't maintain bitmaps or anything else autoclear bits vouch for.
            self.file.write_at(&0u64.to_be_bytes(), OFF_AUTOCLEAR)?;
            self.file.sync()?;
            self.hdr.autoclear = 0;
        }
        self.refs = Some(Refcounts::load(
            &mut self.file,
            &self.hdr,
            REFCOUNT_CACHE_BYTES,
        )?);
        if self.hdr.dirty() {
            log::info!(
                "{}: image was left dirty; rebuilding refcounts",
                self.path.display()
            );
            rebuild::rebuild_refcounts(self)?;
            self.write_incompatible(self.hdr.incompatible & !INCOMPAT_DIRTY)?;
        }
        Ok(())
    }

    pub fn header(&self) -> &Header {
        &self.hdr
    }

    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    pub fn cluster_size(&self) -> u64 {
        self.cs
    }

    fn corrupt(&self, detail: impl Into<String>) -> BlockError {
        BlockError::corrupt(&self.path, detail)
    }

    fn refs_update(&mut self, first: u64, count: u64, op: Op) -> Result<(), BlockError> {
        let refs = self
            .refs
            .as_mut()
            .expect("refcounts are loaded for writable images");
        refs.update(&mut self.file, first, count, op)
    }

    fn write_incompatible(&mut self, bits: u64) -> Result<(), BlockError> {
        self.file.write_at(&bits.to_be_bytes(), OFF_INCOMPATIBLE)?;
        self.file.sync()?;
        self.hdr.incompatible = bits;
        Ok(())
    }

    /// With lazy refcounts, refcount updates are not synced before use; the dirty bit says so.
    fn before_refcount_change(&mut self) -> Result<(), BlockError> {
        if self.lazy && !self.marked_dirty {
            self.write_incompatible(self.hdr.incompatible | INCOMPAT_DIRTY)?;
            self.marked_dirty = true;
        }
        Ok(())
    }

    /// Metadata areas a data cluster or table must never overlap.
    fn check_overlap(&self, off: u64, len: u64, what: &str) -> Result<(), BlockError> {
        let (rt_off, rt_len) = match &self.refs {
            Some(r) => (r.table_offset(), r.table_clusters() << self.cluster_bits),
            None => (
                self.hdr.refcount_table_offset,
                u64::from(self.hdr.refcount_table_clusters) << self.cluster_bits,
            ),
        };
        let areas = [
            ("header", 0, self.cs),
            (
                "L1 table",
                self.hdr.l1_table_offset,
                u64::from(self.hdr.l1_size) * 8,
            ),
            ("refcount table", rt_off, rt_len),
            (
                "snapshot table",
                self.hdr.snapshots_offset,
                self.snapshot_table_len,
            ),
        ];
        for (name, a, l) in areas {
            if l != 0 && off < a.saturating_add(l) && a < off.saturating_add(len) {
                return Err(self.corrupt(format!("{what} at {off:#x} overlaps the {name}")));
            }
        }
        Ok(())
    }

    // ---- L2 tables ----

    /// Loads (through the cache) the L2 table at `off`.
    fn load_l2(&mut self, off: u64) -> Result<(), BlockError> {
        if self.l2_cache.contains(off) {
            return Ok(());
        }
        if off.checked_add(self.cs).is_none_or(|e| e > self.file.len()) {
            return Err(self.corrupt(format!(
                "L2 table at {off:#x} lies past the end of the file"
            )));
        }
        self.check_overlap(off, self.cs, "L2 table")?;
        let mut raw = vec![0u8; self.cs as usize];
        self.file.read_at(&mut raw, off)?;
        self.l2_cache.insert(off, read_be_u64s(&raw));
        Ok(())
    }

    fn l2_offset(&self, l1_idx: u64) -> u64 {
        // L1 entries were validated at open and are only ever written by us.
        self.l1
            .get(l1_idx as usize)
            .map_or(0, |&e| e & table::OFFSET_MASK)
    }

    /// Copies `n` raw entries of the L2 table at `off` from index `idx`.
    fn l2_entries(&mut self, off: u64, idx: u64, n: u64) -> Result<Vec<u64>, BlockError> {
        self.load_l2(off)?;
        let t = self.l2_cache.get(off).expect("L2 table was just cached");
        Ok(t[idx as usize..(idx + n) as usize].to_vec())
    }

    /// Writes entries of an L2 table (cache and file).
    fn l2_store(&mut self, off: u64, idx: u64, vals: &[u64]) -> Result<(), BlockError> {
        self.load_l2(off)?;
        let t = self
            .l2_cache
            .get_mut(off)
            .expect("L2 table was just cached");
        t[idx as usize..idx as usize + vals.len()].copy_from_slice(vals);
        self.file.write_at(&write_be_u64s(vals), off + idx * 8)
    }

    /// The L2 table for `l1_idx`, allocated or copied (if shared with a snapshot) so it can be written.
    fn l2_for_write(&mut self, l1_idx: u64) -> Result<u64, BlockError> {
        let raw = self.l1[l1_idx as usize];
        let (off, copied) = decode_l1(raw).map_err(|e| self.corrupt(e))?;
        if off != 0 && copied {
            return Ok(off);
        }
        let table = if off == 0 {
            vec![0u64; 1 << self.l2_bits]
        } else {
            self.load_l2(off)?;
            self.l2_cache
                .get(off)
                .expect("L2 table was just cached")
                .clone()
        };
        let new = self.alloc(1)?;
        self.file.write_at(&write_be_u64s(&table), new)?;
        self.l1[l1_idx as usize] = new | COPIED;
        let l1_off = self.hdr.l1_table_offset + l1_idx * 8;
        self.file.write_at(&(new | COPIED).to_be_bytes(), l1_off)?;
        self.l2_cache.insert(new, table);
        if off != 0 {
            self.l2_cache.remove(off);
            self.pending_free.push((off, self.cs));
        }
        Ok(new)
    }

    // ---- mapping and reading ----

    fn decode(&self, raw: u64) -> Result<L2Entry, BlockError> {
        L2Entry::decode(raw, self.cluster_bits, self.hdr.version).map_err(|e| self.corrupt(e))
    }

    fn unallocated(&self) -> Map {
        if self.backing.is_some() {
            Map::Backing
        } else {
            Map::Zero
        }
    }

    fn entry_map(&self, e: L2Entry, raw: u64) -> Result<Map, BlockError> {
        Ok(match e {
            L2Entry::Unallocated => self.unallocated(),
            L2Entry::Zero { .. } => Map::Zero,
            L2Entry::Normal { host, .. } => {
                if host >= self.file.len() {
                    return Err(self.corrupt(format!(
                        "data cluster at {host:#x} lies past the end of the file"
                    )));
                }
                Map::Data(host)
            }
            L2Entry::Compressed { host, .. } => {
                if host >= self.file.len() || host < self.cs {
                    return Err(self.corrupt(format!(
                        "compressed cluster at {host:#x} lies outside the file"
                    )));
                }
                Map::Compressed(raw)
            }
        })
    }

    /// Maps guest bytes from `pos` (at most `max`): what they are and how many share that mapping.
    fn map(&mut self, pos: u64, max: u64) -> Result<(Map, u64), BlockError> {
        let cb = self.cluster_bits;
        let c = pos >> cb;
        let l1_idx = c >> self.l2_bits;
        let table_end = (l1_idx + 1) << (self.l2_bits + cb);
        let limit = max.min(table_end - pos);
        let off = self.l2_offset(l1_idx);
        if off == 0 {
            return Ok((self.unallocated(), limit));
        }
        self.load_l2(off)?;
        let mask = (1u64 << self.l2_bits) - 1;
        let first_raw =
            self.l2_cache.get(off).expect("L2 table was just cached")[(c & mask) as usize];
        let first = self.entry_map(self.decode(first_raw)?, first_raw)?;
        let mut len = (self.cs - (pos & (self.cs - 1))).min(limit);
        if matches!(first, Map::Compressed(_)) {
            return Ok((first, len));
        }
        let mut next = c + 1;
        while len < limit {
            let raw = self.l2_cache.get(off).expect("L2 table is cached")[(next & mask) as usize];
            let m = self.entry_map(self.decode(raw)?, raw)?;
            let same = match (first, m) {
                (Map::Data(h0), Map::Data(h)) => h == h0 + ((next - c) << cb),
                (a, b) => a == b && !matches!(a, Map::Compressed(_)),
            };
            if !same {
                break;
            }
            len = (len + self.cs).min(limit);
            next += 1;
        }
        Ok((first, len))
    }

    fn read_backing(&mut self, buf: &mut [u8], pos: u64) -> Result<(), BlockError> {
        let Some(b) = self.backing.as_mut() else {
            buf.fill(0);
            return Ok(());
        };
        let bsize = b.size();
        let n = if pos >= bsize {
            0
        } else {
            (bsize - pos).min(buf.len() as u64) as usize
        };
        if n > 0 {
            b.read_at(&mut buf[..n], pos)?;
        }
        buf[n..].fill(0);
        Ok(())
    }

    fn decompress(&mut self, raw: u64) -> Result<&[u8], BlockError> {
        if self.decompressed.as_ref().is_none_or(|(r, _)| *r != raw) {
            let L2Entry::Compressed { host, sectors } = self.decode(raw)? else {
                return Err(self.corrupt("entry is not compressed"));
            };
            let len = sectors * 512 - (host & 511);
            let mut input = vec![0u8; len as usize];
            self.file.read_at(&mut input, host)?;
            let mut out = vec![0u8; self.cs as usize];
            compress::decompress(self.hdr.compression_type, &input, &mut out)
                .map_err(|e| self.corrupt(format!("compressed cluster at {host:#x}: {e}")))?;
            self.decompressed = Some((raw, out));
        }
        Ok(&self
            .decompressed
            .as_ref()
            .expect("decompressed cluster was just cached")
            .1)
    }

    fn read_mapped(&mut self, buf: &mut [u8], pos: u64, m: Map) -> Result<(), BlockError> {
        match m {
            Map::Zero => buf.fill(0),
            Map::Backing => self.read_backing(buf, pos)?,
            Map::Data(host) => self.file.read_at(buf, host + (pos & (self.cs - 1)))?,
            Map::Compressed(raw) => {
                let in_off = (pos & (self.cs - 1)) as usize;
                let data = self.decompress(raw)?;
                buf.copy_from_slice(&data[in_off..in_off + buf.len()]);
            }
        }
        Ok(())
    }

    /// The current contents of guest cluster `c` (for copy-on-write of a partially written cluster).
    fn cluster_content(&mut self, c: u64, raw: u64, out: &mut [u8]) -> Result<(), BlockError> {
        let m = self.entry_map(self.decode(raw)?, raw)?;
        self.read_mapped(out, c << self.cluster_bits, m)
    }

    // ---- allocation ----

    /// Returns the offset of `k` contiguous clusters whose refcount is already 1.
    ///
    /// Clusters are reserved in chunks: the refcounts of a whole chunk are set and synced once, and
    /// what is not used yet stays in `pool` (a leak if we crash, given back on close).
    pub(crate) fn alloc(&mut self, k: u64) -> Result<u64, BlockError> {
        if let Some(i) = self.pool.iter().position(|r| r.1 >= k) {
            let (start, n) = self.pool[i];
            if n == k {
                self.pool.remove(i);
            } else {
                self.pool[i] = (start + k, n - k);
            }
            return Ok(start << self.cluster_bits);
        }
        self.before_refcount_change()?;
        let want = k.max(self.chunk);
        let hint = self.free_hint;
        let (file, refs) = (
            &mut self.file,
            self.refs.as_mut().expect("refcounts are loaded for writes"),
        );
        let end = refs.end_cluster;
        let (start, count) = match refs.find_free(file, hint, end, k)? {
            Some(s) => {
                let mut n = k;
                while n < want && s + n < end && refs.get(file, s + n)? == 0 {
                    n += 1;
                }
                (s, n)
            }
            None => {
                refs.end_cluster += want;
                (end, want)
            }
        };
        self.free_hint = start + count;
        refs.update(file, start, count, Op::Set(1))?;
        if !self.lazy {
            // Refcounts must be durable before the first reference to these clusters is.
            file.sync()?;
        }
        if self.pool.len() >= 8 {
            let (s, n) = self.pool.remove(0);
            self.refs_update(s, n, Op::Set(0))?;
            self.free_hint = self.free_hint.min(s);
        }
        if count > k {
            self.pool.push((start + k, count - k));
        }
        Ok(start << self.cluster_bits)
    }

    /// Queues the storage an old L2 entry referenced for release at the next flush.
    fn release_entry(&mut self, raw: u64) -> Result<(), BlockError> {
        match self.decode(raw)? {
            L2Entry::Normal { host, .. } | L2Entry::Zero { host, .. } if host != 0 => {
                self.pending_free.push((host, self.cs));
            }
            L2Entry::Compressed { host, sectors } => {
                self.pending_free.push((host & !511, sectors * 512));
                if self.decompressed.as_ref().is_some_and(|(r, _)| *r == raw) {
                    self.decompressed = None;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Drops the references queued by `release_entry`; the unmapping must already be durable.
    fn apply_frees(&mut self) -> Result<(), BlockError> {
        if self.pending_free.is_empty() {
            return Ok(());
        }
        self.before_refcount_change()?;
        let frees = std::mem::take(&mut self.pending_free);
        let cb = self.cluster_bits;
        for (off, len) in frees {
            let first = off >> cb;
            let last = (off + len - 1) >> cb;
            self.refs_update(first, last - first + 1, Op::Add(-1))?;
            self.free_hint = self.free_hint.min(first);
        }
        Ok(())
    }

    fn maybe_apply_frees(&mut self) -> Result<(), BlockError> {
        if self.pending_free.len() > MAX_PENDING_FREES {
            self.file.sync()?;
            self.apply_frees()?;
        }
        Ok(())
    }

    // ---- writing ----

    fn check_writable(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly(self.path.clone()));
        }
        check_range(&self.path, offset, len, self.size)
    }

    /// Writes `data` at guest `pos`; the range lies within one L2 table.
    fn write_in_table(&mut self, data: &[u8], pos: u64) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let cs = self.cs;
        let end = pos + data.len() as u64;
        let first_c = pos >> cb;
        let count = ((end - 1) >> cb) - first_c + 1;
        let l1_idx = first_c >> self.l2_bits;
        let idx0 = first_c & ((1 << self.l2_bits) - 1);
        let l2 = self.l2_for_write(l1_idx)?;
        let entries = self.l2_entries(l2, idx0, count)?;
        let mut i = 0u64;
        while i < count {
            let e = self.decode(entries[i as usize])?;
            let run_start = (first_c + i) << cb;
            match e {
                L2Entry::Normal { host, copied: true } => {
                    let mut j = i + 1;
                    while j < count
                        && self.decode(entries[j as usize])?
                            == (L2Entry::Normal {
                                host: host + ((j - i) << cb),
                                copied: true,
                            })
                    {
                        j += 1;
                    }
                    let ws = pos.max(run_start);
                    let we = end.min((first_c + j) << cb);
                    self.check_overlap(host, (j - i) << cb, "data cluster")?;
                    let d = &data[(ws - pos) as usize..(we - pos) as usize];
                    self.file.write_at(d, host + (ws - run_start))?;
                    i = j;
                }
                L2Entry::Zero { host, copied: true } if host != 0 => {
                    // Preallocated zero cluster: fill it in place, then drop the zero flag.
                    self.check_overlap(host, cs, "data cluster")?;
                    let mut buf = vec![0u8; cs as usize];
                    let ws = pos.max(run_start);
                    let we = end.min(run_start + cs);
                    buf[(ws - run_start) as usize..(we - run_start) as usize]
                        .copy_from_slice(&data[(ws - pos) as usize..(we - pos) as usize]);
                    self.file.write_at(&buf, host)?;
                    self.l2_store(l2, idx0 + i, &[host | COPIED])?;
                    i += 1;
                }
                _ => {
                    let mut j = i + 1;
                    while j < count && needs_alloc(self.decode(entries[j as usize])?) {
                        j += 1;
                    }
                    self.write_allocating(data, pos, l2, idx0, first_c, i, j, &entries)?;
                    i = j;
                }
            }
        }
        Ok(())
    }

    /// Writes clusters `[i, j)` of a request into freshly allocated clusters, copying what the
    /// request does not cover from their old contents.
    #[allow(clippy::too_many_arguments)]
    fn write_allocating(
        &mut self,
        data: &[u8],
        pos: u64,
        l2: u64,
        idx0: u64,
        first_c: u64,
        i: u64,
        j: u64,
        entries: &[u64],
    ) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let cs = self.cs as usize;
        let k = j - i;
        let end = pos + data.len() as u64;
        let run_start = (first_c + i) << cb;
        let run_end = (first_c + j) << cb;
        let ws = pos.max(run_start);
        let we = end.min(run_end);
        let mut buf = vec![0u8; (k << cb) as usize];
        if ws > run_start {
            self.cluster_content(first_c + i, entries[i as usize], &mut buf[..cs])?;
        }
        if we < run_end && (k > 1 || ws == run_start) {
            let last = buf.len() - cs;
            self.cluster_content(first_c + j - 1, entries[(j - 1) as usize], &mut buf[last..])?;
        }
        buf[(ws - run_start) as usize..(we - run_start) as usize]
            .copy_from_slice(&data[(ws - pos) as usize..(we - pos) as usize]);
        let host = self.alloc(k)?;
        self.file.write_at(&buf, host)?;
        let new: Vec<u64> = (0..k).map(|t| (host + (t << cb)) | COPIED).collect();
        self.l2_store(l2, idx0 + i, &new)?;
        for t in i..j {
            self.release_entry(entries[t as usize])?;
        }
        Ok(())
    }

    /// Makes guest range `[offset, offset+len)` read as zeroes; `unmap` allows freeing storage.
    fn zero_range(&mut self, offset: u64, len: u64, unmap: bool) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let cstart = pos & !(self.cs - 1);
            let cend = cstart + self.cs;
            let piece_end = end.min(cend);
            let whole = pos == cstart && (piece_end == cend || piece_end == self.size);
            if whole {
                // As many whole clusters as lie within this L2 table.
                let table_end = ((cstart >> (cb + self.l2_bits)) + 1) << (cb + self.l2_bits);
                let mut stop = end.min(table_end) & !(self.cs - 1);
                if end == self.size && end.min(table_end) == end {
                    stop = end.next_multiple_of(self.cs).min(table_end);
                }
                let n = ((stop - cstart) >> cb).max(1);
                self.zero_clusters(cstart >> cb, n, unmap)?;
                pos = (cstart + (n << cb)).min(end);
            } else {
                if self.reads_zero(pos >> cb)? {
                    pos = piece_end;
                    continue;
                }
                let zeroes = vec![0u8; (piece_end - pos) as usize];
                let mut p = pos;
                while p < piece_end {
                    // One L2 table at a time, as write_in_table expects.
                    let table_end = ((p >> (cb + self.l2_bits)) + 1) << (cb + self.l2_bits);
                    let e = piece_end.min(table_end);
                    self.write_in_table(&zeroes[(p - pos) as usize..(e - pos) as usize], p)?;
                    p = e;
                }
                pos = piece_end;
            }
        }
        Ok(())
    }

    /// Whether guest cluster `c` already reads as zeroes without touching anything.
    fn reads_zero(&mut self, c: u64) -> Result<bool, BlockError> {
        let (m, _) = self.map(c << self.cluster_bits, 1)?;
        Ok(match m {
            Map::Zero => true,
            Map::Backing => self
                .backing
                .as_ref()
                .is_some_and(|b| (c << self.cluster_bits) >= b.size()),
            _ => false,
        })
    }

    /// Zeroes `n` whole clusters from guest cluster `c0`, all within one L2 table.
    fn zero_clusters(&mut self, c0: u64, n: u64, unmap: bool) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let l1_idx = c0 >> self.l2_bits;
        let idx0 = c0 & ((1 << self.l2_bits) - 1);
        let has_backing = self.backing.is_some();
        let v3 = self.hdr.version >= 3;
        if self.l2_offset(l1_idx) == 0 && !has_backing {
            return Ok(()); // Unallocated without a backing file already reads as zeroes.
        }
        if !v3 && has_backing {
            // No zero flag: write zero data so the backing file cannot show through.
            let zeroes = vec![0u8; (n << cb) as usize];
            return self.write_in_table(&zeroes, c0 << cb);
        }
        let l2 = self.l2_for_write(l1_idx)?;
        let old = self.l2_entries(l2, idx0, n)?;
        let mut new = Vec::with_capacity(n as usize);
        let mut release = Vec::new();
        for &raw in &old {
            let e = self.decode(raw)?;
            let v = match e {
                L2Entry::Normal { host, copied: true } if !unmap => {
                    if v3 {
                        host | COPIED | ZERO
                    } else {
                        // v2 without backing: zero the data in place.
                        self.check_overlap(host, self.cs, "data cluster")?;
                        self.file.write_zero_buffers(host, self.cs)?;
                        raw
                    }
                }
                L2Entry::Zero { host, copied: true } if !unmap && host != 0 => raw,
                _ => {
                    if !matches!(e, L2Entry::Unallocated | L2Entry::Zero { host: 0, .. }) {
                        release.push(raw);
                    }
                    if has_backing {
                        ZERO
                    } else {
                        0
                    }
                }
            };
            new.push(v);
        }
        if new != old {
            self.l2_store(l2, idx0, &new)?;
        }
        for raw in release {
            self.release_entry(raw)?;
        }
        Ok(())
    }

    /// Writes one guest cluster compressed (for `qemu-img convert -c`-style image building).
    ///
    /// The cluster must be unallocated or zero. Data that does not compress is written normally.
    /// `data` may be shorter than a cluster only for the last cluster of the disk.
    pub fn write_compressed(&mut self, guest_cluster: u64, data: &[u8]) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let pos = guest_cluster << cb;
        self.check_writable(pos, data.len() as u64)?;
        if data.len() as u64 > self.cs || (data.len() as u64) < self.cs.min(self.size - pos) {
            return Err(BlockError::invalid(
                &self.path,
                "compressed writes take exactly one cluster",
            ));
        }
        let mut full = data.to_vec();
        full.resize(self.cs as usize, 0);
        let compressed = match self.hdr.compression_type {
            CompressionType::Zlib => compress::deflate(&full),
            CompressionType::Zstd => compress::zstd_compress(&full),
        };
        let l1_idx = guest_cluster >> self.l2_bits;
        let idx = guest_cluster & ((1 << self.l2_bits) - 1);
        let l2 = self.l2_for_write(l1_idx)?;
        let old = self.l2_entries(l2, idx, 1)?[0];
        if !matches!(
            self.decode(old)?,
            L2Entry::Unallocated | L2Entry::Zero { host: 0, .. }
        ) {
            return Err(BlockError::invalid(
                &self.path,
                format!(
                    "compressed write to guest cluster {guest_cluster}, which is already allocated"
                ),
            ));
        }
        let Some(z) = compressed.filter(|z| (z.len() as u64) < self.cs) else {
            return self.write_in_table(data, pos);
        };
        let len = z.len() as u64;
        let host = match self.compress_slot {
            Some((next, end)) if next + len <= end => {
                // Another compressed cluster shares this host cluster: one more reference to it.
                self.before_refcount_change()?;
                self.refs_update(next >> cb, 1, Op::Add(1))?;
                if !self.lazy {
                    self.file.sync()?;
                }
                next
            }
            _ => self.alloc(1)?,
        };
        self.file.write_at(&z, host)?;
        let cluster_end = (host | (self.cs - 1)) + 1;
        // Byte-granular packing, as QEMU does: entries carry byte offsets.
        let next = host + len;
        self.compress_slot = (next < cluster_end).then_some((next, cluster_end));
        let entry = L2Entry::encode_compressed(host, len, cb);
        self.l2_store(l2, idx, &[entry])
    }

    /// Flushes and releases everything a clean close owes the image. Idempotent.
    pub fn close(&mut self) -> Result<(), BlockError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.file.sync()?;
        self.apply_frees()?;
        for (s, n) in std::mem::take(&mut self.pool) {
            self.refs_update(s, n, Op::Set(0))?;
        }
        if self.marked_dirty {
            self.file.sync()?;
            self.write_incompatible(self.hdr.incompatible & !INCOMPAT_DIRTY)?;
            self.marked_dirty = false;
        }
        self.file.sync()
    }
}

fn needs_alloc(e: L2Entry) -> bool {
    !matches!(e, L2Entry::Normal { copied: true, .. })
        && !matches!(e, L2Entry::Zero { host, copied: true } if host != 0)
}

impl BlockBackend for Qcow2 {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(&self.path, offset, buf.len() as u64, self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (m, n) = self.map(pos, (buf.len() - done) as u64)?;
            self.read_mapped(&mut buf[done..done + n as usize], pos, m)?;
            done += n as usize;
        }
        Ok(())
    }

    /// Allocated data goes straight from the image into guest memory; zero, backing and compressed extents
    /// bounce as in `read_at`.
    fn read_into(
        &mut self,
        bufs: &GuestBufs<'_>,
        offset: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        let total = guest_io::total_len(bufs);
        check_range(&self.path, offset, total as u64, self.size)?;
        let mut done = 0usize;
        while done < total {
            let pos = offset + done as u64;
            let (m, n) = self.map(pos, (total - done) as u64)?;
            let part = guest_io::sub_range(bufs, done, n as usize)?;
            let direct = match m {
                Map::Data(host) => self
                    .file
                    .read_vectored(&part, host + (pos & (self.cs - 1)))?,
                _ => false,
            };
            if !direct {
                let mut at = 0usize;
                for s in &part {
                    let mut sdone = 0;
                    while sdone < s.len() {
                        let k = (s.len() - sdone).min(guest_io::BOUNCE_CHUNK);
                        if scratch.len() < k {
                            scratch.resize(k, 0);
                        }
                        self.read_mapped(&mut scratch[..k], pos + at as u64, m)?;
                        s.write_slice(&scratch[..k], sdone)
                            .map_err(|e| BlockError::GuestMemory(e.to_string()))?;
                        sdone += k;
                        at += k;
                    }
                }
            }
            done += n as usize;
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        self.check_writable(offset, buf.len() as u64)?;
        let span = 1u64 << (self.cluster_bits + self.l2_bits);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = ((pos / span + 1) * span - pos).min((buf.len() - done) as u64) as usize;
            self.write_in_table(&buf[done..done + n], pos)?;
            done += n;
        }
        self.maybe_apply_frees()
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync()?;
        self.apply_frees()?;
        if self.marked_dirty {
            self.file.sync()?;
            self.write_incompatible(self.hdr.incompatible & !INCOMPAT_DIRTY)?;
            self.marked_dirty = false;
        }
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_writable(offset, len)?;
        if !self.discard_unmap || len == 0 {
            return Ok(());
        }
        self.zero_range(offset, len, true)?;
        self.maybe_apply_frees()
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<(), BlockError> {
        self.check_writable(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.zero_range(offset, len, may_unmap && self.discard_unmap)?;
        self.maybe_apply_frees()
    }
}

impl Drop for Qcow2 {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing {}: {e}", self.path.display());
        }
    }
}

/// Reads and parses the header cluster.
fn read_header(file: &mut ImageFile, path: &Path) -> Result<Header, BlockError> {
    let mut first = vec![0u8; file.len().min(4096) as usize];
    file.read_at(&mut first, 0)?;
    if first.len() >= 24 && first[..4] == header::MAGIC {
        let bits = u32::from_be_bytes([first[20], first[21], first[22], first[23]]);
        if (header::MIN_CLUSTER_BITS..=header::MAX_CLUSTER_BITS).contains(&bits)
            && (1u64 << bits) > 4096
        {
            first = vec![0u8; file.len().min(1 << bits) as usize];
            file.read_at(&mut first, 0)?;
        }
    }
    Header::parse(path, &first)
}

/// Reads and validates the active L1 table.
fn read_l1(file: &mut ImageFile, path: &Path, hdr: &Header) -> Result<Vec<u64>, BlockError> {
    let cs = hdr.cluster_size();
    let entries_per_l2 = cs / 8;
    let needed = hdr.size.div_ceil(cs).div_ceil(entries_per_l2);
    let l1_size = u64::from(hdr.l1_size);
    if l1_size < needed {
        return Err(BlockError::corrupt(
            path,
            format!(
                "L1 table of {l1_size} entries is too small for a {}-byte disk",
                hdr.size
            ),
        ));
    }
    if l1_size > MAX_L1_ENTRIES {
        return Err(BlockError::corrupt(
            path,
            format!("L1 table of {l1_size} entries is too large"),
        ));
    }
    if l1_size == 0 {
        return Ok(Vec::new());
    }
    let off = hdr.l1_table_offset;
    if !off.is_multiple_of(cs)
        || off < cs
        || off.checked_add(l1_size * 8).is_none_or(|e| e > file.len())
    {
        return Err(BlockError::corrupt(
            path,
            format!("L1 table at {off:#x} is misaligned, overlaps the header or runs past the end of the file"),
        ));
    }
    let mut raw = vec![0u8; (l1_size * 8) as usize];
    file.read_at(&mut raw, off)?;
    let l1 = read_be_u64s(&raw);
    for (i, &e) in l1.iter().enumerate() {
        let (l2, _) =
            decode_l1(e).map_err(|d| BlockError::corrupt(path, format!("L1 index {i}: {d}")))?;
        if l2 != 0 && (l2 < cs || l2.checked_add(cs).is_none_or(|end| end > file.len())) {
            return Err(BlockError::corrupt(
                path,
                format!("L1 index {i}: L2 table at {l2:#x} overlaps the header or lies past the end of the file"),
            ));
        }
    }
    Ok(l1)
}

/// Opens the backing chain: from the `<backingStore>` spec if given, else from the header.
fn open_backing(
    path: &Path,
    hdr: &Header,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Option<Box<dyn BlockBackend>>, BlockError> {
    let (bpath, format, next) = if let Some(spec) = &opts.backing {
        (
            spec.path.clone(),
            spec.format,
            spec.backing.as_deref().cloned(),
        )
    } else if let Some(name) = &hdr.backing_file {
        if name.starts_with("json:") || name.contains("://") {
            return Err(BlockError::unsupported(
                path,
                format!("backing file '{name}' is not a plain file name"),
            ));
        }
        let p = Path::new(name);
        let bpath = if p.is_absolute() {
            p.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(p)
        };
        let format = match hdr.backing_format.as_deref() {
            Some("raw") => ImageFormat::Raw,
            Some("qcow2") => ImageFormat::Qcow2,
            Some(other) => {
                return Err(BlockError::unsupported(
                    path,
                    format!("backing file format '{other}'"),
                ))
            }
            None => ImageFormat::probe(&bpath).map_err(|e| BlockError::Backing {
                path: path.to_path_buf(),
                backing: bpath.clone(),
                source: Box::new(e),
            })?,
        };
        (bpath, format, None)
    } else {
        return Ok(None);
    };
    let bopts = OpenOptions {
        format,
        read_only: true,
        cache: opts.cache,
        discard_unmap: false,
        backing: next,
        lock: opts.lock,
    };
    open_chain(&bpath, &bopts, depth + 1)
        .map(Some)
        .map_err(|e| BlockError::Backing {
            path: path.to_path_buf(),
            backing: bpath,
            source: Box::new(e),
        })
}
