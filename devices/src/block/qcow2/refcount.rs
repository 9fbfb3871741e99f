//! Refcounts: the refcount table, refcount blocks (any `refcount_order` 0..=6), and their growth.
//!
//! Every change is written through at once, in an order that keeps the image consistent if the process
//! dies between two writes: a new refcount block is written (with its own refcount already accounted
//! for) before the table points to it; a grown table is written and synced before the header switches
//! to it, and the old table is freed only after that.

use std::path::{Path, PathBuf};

use super::cache::Lru;
use super::header::{Header, OFF_REFCOUNT_TABLE};
use super::table::{read_be_u64s, write_be_u64s};
use crate::block::file::ImageFile;
use crate::block::BlockError;

/// Refcount table entries: bits 0-8 are reserved.
const REFT_RESERVED: u64 = 0x1ff;
/// Largest refcount table we read or grow to (QEMU's limit is 8 MiB).
const MAX_TABLE_BYTES: u64 = 32 << 20;
/// Bounds the recursion "a new refcount block needs a refcount in a block that does not exist yet".
const MAX_DEPTH: u32 = 16;

/// What to do to a range of refcounts.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Set(u64),
    Add(i64),
}

pub struct Refcounts {
    path: PathBuf,
    cluster_bits: u32,
    order: u32,
    table_offset: u64,
    table_clusters: u64,
    /// Refcount block offsets by block index (0: no block, all refcounts zero).
    table: Vec<u64>,
    /// Entries of `table` that exist in the on-disk table at `table_offset`.
    disk_entries: usize,
    blocks: Lru<Vec<u8>>,
    /// First cluster past everything allocated; new metadata goes here.
    pub end_cluster: u64,
    growing: bool,
}

impl Refcounts {
    pub fn load(
        file: &mut ImageFile,
        hdr: &Header,
        cache_bytes: u64,
    ) -> Result<Refcounts, BlockError> {
        let path = file.path().to_path_buf();
        let corrupt = |d: String| BlockError::corrupt(&path, d);
        let cs = hdr.cluster_size();
        let off = hdr.refcount_table_offset;
        let clusters = u64::from(hdr.refcount_table_clusters);
        let bytes = clusters << hdr.cluster_bits;
        if off == 0 || !off.is_multiple_of(cs) || clusters == 0 {
            return Err(corrupt(format!(
                "refcount table at offset {off:#x} with {clusters} clusters (must be a non-empty, cluster-aligned table after the header)"
            )));
        }
        if bytes > MAX_TABLE_BYTES || off.checked_add(bytes).is_none_or(|end| end > file.len()) {
            return Err(corrupt(format!(
                "refcount table at {off:#x} of {bytes} bytes runs past the end of the file ({} bytes) or is too large",
                file.len()
            )));
        }
        let mut raw = vec![0u8; bytes as usize];
        file.read_at(&mut raw, off)?;
        let table = read_be_u64s(&raw);
        for (i, &e) in table.iter().enumerate() {
            if e & REFT_RESERVED != 0 {
                return Err(corrupt(format!(
                    "refcount table entry {i} ({e:#x}) is not cluster aligned"
                )));
            }
            if e != 0 && (e < cs || e.checked_add(cs).is_none_or(|end| end > file.len())) {
                return Err(corrupt(format!(
                    "refcount block {i} at {e:#x} overlaps the header or lies past the end of the file"
                )));
            }
            if e != 0 && e < off + bytes && e + cs > off {
                return Err(corrupt(format!(
                    "refcount block {i} at {e:#x} overlaps the refcount table"
                )));
            }
        }
        let cap = (cache_bytes >> hdr.cluster_bits).clamp(4, 1024) as usize;
        Ok(Refcounts {
            path,
            cluster_bits: hdr.cluster_bits,
            order: hdr.refcount_order,
            table_offset: off,
            table_clusters: clusters,
            disk_entries: table.len(),
            table,
            blocks: Lru::new(cap),
            end_cluster: file.len().div_ceil(cs),
            growing: false,
        })
    }

    /// A refcount structure that ignores the one on disk, for [`Refcounts::rebuild`] of an image whose
    /// refcount table is itself damaged (so [`Refcounts::load`] would refuse it).
    pub fn blank(file: &ImageFile, hdr: &Header) -> Refcounts {
        Refcounts {
            path: file.path().to_path_buf(),
            cluster_bits: hdr.cluster_bits,
            order: hdr.refcount_order,
            table_offset: hdr.refcount_table_offset,
            table_clusters: u64::from(hdr.refcount_table_clusters),
            table: Vec::new(),
            disk_entries: 0,
            blocks: Lru::new(4),
            end_cluster: file.len().div_ceil(hdr.cluster_size()),
            growing: false,
        }
    }

    pub fn table_offset(&self) -> u64 {
        self.table_offset
    }

    pub fn table_clusters(&self) -> u64 {
        self.table_clusters
    }

    pub fn block_offsets(&self) -> &[u64] {
        &self.table
    }

    fn cs(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Refcount entries per block.
    pub fn per_block(&self) -> u64 {
        (self.cs() * 8) >> self.order
    }

    pub fn max_value(&self) -> u64 {
        if self.order == 6 {
            u64::MAX
        } else {
            (1u64 << (1u32 << self.order)) - 1
        }
    }

    fn block<'a>(
        &'a mut self,
        file: &mut ImageFile,
        off: u64,
    ) -> Result<&'a mut Vec<u8>, BlockError> {
        if !self.blocks.contains(off) {
            let mut b = vec![0u8; self.cs() as usize];
            file.read_at(&mut b, off)?;
            self.blocks.insert(off, b);
        }
        Ok(self
            .blocks
            .get_mut(off)
            .expect("refcount block was just cached"))
    }

    pub fn get(&mut self, file: &mut ImageFile, cluster: u64) -> Result<u64, BlockError> {
        let per = self.per_block();
        let bi = cluster / per;
        let Some(&off) = self.table.get(bi as usize) else {
            return Ok(0);
        };
        if off == 0 {
            return Ok(0);
        }
        let order = self.order;
        let b = self.block(file, off)?;
        Ok(entry_get(b, (cluster % per) as usize, order))
    }

    /// Applies `op` to the refcounts of `count` clusters from `first`, creating blocks as needed.
    pub fn update(
        &mut self,
        file: &mut ImageFile,
        first: u64,
        count: u64,
        op: Op,
    ) -> Result<(), BlockError> {
        self.update_depth(file, first, count, op, 0)
    }

    fn update_depth(
        &mut self,
        file: &mut ImageFile,
        first: u64,
        count: u64,
        op: Op,
        depth: u32,
    ) -> Result<(), BlockError> {
        let per = self.per_block();
        let max = self.max_value();
        let order = self.order;
        let mut c = first;
        let end = first
            .checked_add(count)
            .ok_or_else(|| BlockError::corrupt(&self.path, "cluster range overflows"))?;
        while c < end {
            let bi = c / per;
            let n = (end - c).min(per - c % per);
            let has_block = self.table.get(bi as usize).is_some_and(|&o| o != 0);
            if !has_block && matches!(op, Op::Set(0)) {
                c += n;
                continue;
            }
            let off = self.ensure_block(file, bi, depth)?;
            let path = self.path.clone();
            let b = self.block(file, off)?;
            let first_idx = (c % per) as usize;
            for i in first_idx..first_idx + n as usize {
                let old = entry_get(b, i, order);
                let new = match op {
                    Op::Set(v) => v,
                    Op::Add(d) if d >= 0 => old
                        .checked_add(d as u64)
                        .filter(|&v| v <= max)
                        .ok_or_else(|| {
                            BlockError::corrupt(
                                &path,
                                format!("refcount of cluster {} overflows", bi * per + i as u64),
                            )
                        })?,
                    Op::Add(d) => old.checked_sub(d.unsigned_abs()).ok_or_else(|| {
                        BlockError::corrupt(
                            &path,
                            format!(
                                "refcount of cluster {} would drop below zero",
                                bi * per + i as u64
                            ),
                        )
                    })?,
                };
                entry_set(b, i, order, new);
            }
            let (bs, be) = byte_span(first_idx, first_idx + n as usize, order);
            let bytes = b[bs..be].to_vec();
            file.write_at(&bytes, off + bs as u64)?;
            c += n;
        }
        Ok(())
    }

    /// Returns the offset of refcount block `bi`, creating it (and growing the table) if needed.
    fn ensure_block(
        &mut self,
        file: &mut ImageFile,
        bi: u64,
        depth: u32,
    ) -> Result<u64, BlockError> {
        if depth > MAX_DEPTH {
            return Err(BlockError::corrupt(
                &self.path,
                "refcount block allocation does not converge",
            ));
        }
        if let Some(&off) = self.table.get(bi as usize) {
            if off != 0 {
                return Ok(off);
            }
        } else {
            if self.growing {
                return Err(BlockError::corrupt(
                    &self.path,
                    "refcount table growth does not converge",
                ));
            }
            self.grow_table(file, bi)?;
            if let Some(&off) = self.table.get(bi as usize).filter(|&&o| o != 0) {
                return Ok(off);
            }
        }
        let per = self.per_block();
        let c = self.end_cluster;
        self.end_cluster += 1;
        let off = c << self.cluster_bits;
        let mut block = vec![0u8; self.cs() as usize];
        if c / per == bi {
            // The new block covers itself: its own refcount goes in with it.
            entry_set(&mut block, (c % per) as usize, self.order, 1);
        } else {
            // Account for the block before anything points to it, so a crash leaks rather than corrupts.
            self.update_depth(file, c, 1, Op::Set(1), depth + 1)?;
        }
        file.write_at(&block, off)?;
        self.table[bi as usize] = off;
        self.write_table_entry(file, bi)?;
        self.blocks.insert(off, block);
        Ok(off)
    }

    fn write_table_entry(&mut self, file: &mut ImageFile, bi: u64) -> Result<(), BlockError> {
        // While the table is being replaced, entries past the old table live only in memory until
        // the whole new table is written.
        if (bi as usize) < self.disk_entries {
            let v = self.table[bi as usize].to_be_bytes();
            file.write_at(&v, self.table_offset + bi * 8)?;
        }
        Ok(())
    }

    /// Replaces the refcount table with a larger one at the end of the file.
    fn grow_table(&mut self, file: &mut ImageFile, need_bi: u64) -> Result<(), BlockError> {
        let cs = self.cs();
        let per = self.per_block();
        let mut entries = (need_bi + 1)
            .max(self.table.len() as u64 * 2)
            .max(self.end_cluster / per + 2);
        let clusters = loop {
            let clusters = (entries * 8).div_ceil(cs);
            // Room for the blocks covering everything up to the new table and the blocks themselves.
            let covered = self.end_cluster + clusters + clusters.div_ceil(per) + 4;
            if entries * per >= covered {
                break clusters;
            }
            entries = covered.div_ceil(per) * 2;
        };
        let bytes = clusters * cs;
        if bytes > MAX_TABLE_BYTES {
            return Err(BlockError::invalid(
                &self.path,
                format!("refcount table would grow past {MAX_TABLE_BYTES} bytes"),
            ));
        }
        self.growing = true;
        let t = self.end_cluster;
        self.end_cluster += clusters;
        self.table.resize((bytes / 8) as usize, 0);
        let r = self.switch_table(file, t, clusters);
        self.growing = false;
        r
    }

    fn switch_table(
        &mut self,
        file: &mut ImageFile,
        t: u64,
        clusters: u64,
    ) -> Result<(), BlockError> {
        self.update(file, t, clusters, Op::Set(1))?;
        let new_off = t << self.cluster_bits;
        file.write_at(&write_be_u64s(&self.table), new_off)?;
        file.sync()?;
        let mut h = [0u8; 12];
        h[..8].copy_from_slice(&new_off.to_be_bytes());
        h[8..].copy_from_slice(&(clusters as u32).to_be_bytes());
        file.write_at(&h, OFF_REFCOUNT_TABLE)?;
        file.sync()?;
        let (old_off, old_clusters) = (self.table_offset, self.table_clusters);
        self.table_offset = new_off;
        self.table_clusters = clusters;
        self.disk_entries = self.table.len();
        self.growing = false;
        self.update(
            file,
            old_off >> self.cluster_bits,
            old_clusters,
            Op::Add(-1),
        )
    }

    /// First run of `n` clusters with refcount zero in `[from, limit)`.
    pub fn find_free(
        &mut self,
        file: &mut ImageFile,
        from: u64,
        limit: u64,
        n: u64,
    ) -> Result<Option<u64>, BlockError> {
        let mut run_start = from;
        let mut c = from;
        while c < limit {
            if self.get(file, c)? != 0 {
                run_start = c + 1;
            } else if c + 1 - run_start >= n {
                return Ok(Some(run_start));
            }
            c += 1;
        }
        Ok(None)
    }

    /// Replaces the whole refcount structure with `counts` (one entry per cluster), placing the new
    /// table and blocks at the end of the file. Used to repair an image left dirty.
    pub fn rebuild(
        &mut self,
        file: &mut ImageFile,
        mut counts: Vec<u64>,
    ) -> Result<(), BlockError> {
        let cs = self.cs();
        let per = self.per_block();
        let base = counts.len() as u64;
        // New table at `base`, then the blocks; find sizes that cover everything including themselves.
        let mut nblocks = base.div_ceil(per).max(1);
        let tclusters = loop {
            let tclusters = (nblocks * 8).div_ceil(cs);
            let total = base + tclusters + nblocks;
            let need = total.div_ceil(per);
            if need <= nblocks {
                break tclusters;
            }
            nblocks = need;
        };
        if tclusters * cs > MAX_TABLE_BYTES {
            return Err(BlockError::invalid(
                &self.path,
                "rebuilt refcount table would be too large",
            ));
        }
        let total = base + tclusters + nblocks;
        counts.resize(total as usize, 1);
        let max = self.max_value();
        if let Some(i) = counts.iter().position(|&v| v > max) {
            return Err(BlockError::corrupt(
                &self.path,
                format!(
                    "cluster {i} is referenced {} times, more than refcount_order {} allows",
                    counts[i], self.order
                ),
            ));
        }
        let mut table = vec![0u64; (tclusters * cs / 8) as usize];
        for b in 0..nblocks {
            let off = (base + tclusters + b) * cs;
            let mut block = vec![0u8; cs as usize];
            for i in 0..per {
                let c = b * per + i;
                if c >= total {
                    break;
                }
                entry_set(&mut block, i as usize, self.order, counts[c as usize]);
            }
            file.write_at(&block, off)?;
            table[b as usize] = off;
        }
        let toff = base * cs;
        file.write_at(&write_be_u64s(&table), toff)?;
        file.sync()?;
        let mut h = [0u8; 12];
        h[..8].copy_from_slice(&toff.to_be_bytes());
        h[8..].copy_from_slice(&(tclusters as u32).to_be_bytes());
        file.write_at(&h, OFF_REFCOUNT_TABLE)?;
        file.sync()?;
        self.table_offset = toff;
        self.table_clusters = tclusters;
        self.disk_entries = table.len();
        self.table = table;
        self.blocks.clear();
        self.end_cluster = total;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads entry `i` of a refcount block with `1 << order`-bit entries (sub-byte entries are packed
/// least significant bits first, as QEMU does).
pub fn entry_get(b: &[u8], i: usize, order: u32) -> u64 {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let per_byte = 8 / bits;
            let shift = (i % per_byte) * bits;
            u64::from((b[i / per_byte] >> shift) & ((1u16 << bits) - 1) as u8)
        }
        3 => u64::from(b[i]),
        4 => u64::from(u16::from_be_bytes([b[2 * i], b[2 * i + 1]])),
        5 => u64::from(u32::from_be_bytes([
            b[4 * i],
            b[4 * i + 1],
            b[4 * i + 2],
            b[4 * i + 3],
        ])),
        _ => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[8 * i..8 * i + 8]);
            u64::from_be_bytes(a)
        }
    }
}

/// Writes entry `i`; `v` must fit the entry width.
pub fn entry_set(b: &mut [u8], i: usize, order: u32, v: u64) {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let per_byte = 8 / bits;
            let shift = (i % per_byte) * bits;
            let mask = (((1u16 << bits) - 1) as u8) << shift;
            let byte = &mut b[i / per_byte];
            *byte = (*byte & !mask) | (((v as u8) << shift) & mask);
        }
        3 => b[i] = v as u8,
        4 => b[2 * i..2 * i + 2].copy_from_slice(&(v as u16).to_be_bytes()),
        5 => b[4 * i..4 * i + 4].copy_from_slice(&(v as u32).to_be_bytes()),
        _ => b[8 * i..8 * i + 8].copy_from_slice(&v.to_be_bytes()),
    }
}

/// Byte range of a block holding entries `[from, to)`.
fn byte_span(from: usize, to: usize, order: u32) -> (usize, usize) {
    let bits = 1usize << order;
    ((from * bits) / 8, (to * bits).div_ceil(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_all_orders() {
        for order in 0..=6u32 {
            let mut b = vec![0u8; 512];
            let n = (512 * 8) >> order;
            let max = if order == 6 {
                u64::MAX
            } else {
                (1u64 << (1 << order)) - 1
            };
            for i in 0..n {
                entry_set(&mut b, i, order, (i as u64 * 7919) & max);
            }
            for i in 0..n {
                assert_eq!(
                    entry_get(&b, i, order),
                    (i as u64 * 7919) & max,
                    "order {order} entry {i}"
                );
            }
        }
    }
}
