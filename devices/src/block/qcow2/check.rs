//! Consistency check of a qcow2 image, the way `qemu-img check` does it: every reference (header, L1 and
//! L2 tables, data and compressed clusters, snapshot tables, refcount table and blocks) is counted from
//! scratch and compared with the stored refcounts; entries that are misaligned, have reserved bits set or
//! point a cluster or more past the end of the file are corruptions, and so is a `QCOW_OFLAG_COPIED`
//! flag that disagrees with the refcount. Counts, messages and their order follow QEMU's
//! `qcow2_check_refcounts` so that scripts comparing the two see the same figures.
//!
//! Repair ([`Repair::Leaks`], [`Repair::All`]) only ever makes single, in-place updates that leave the
//! image consistent at every step — a refcount set to its counted value, a copied flag corrected (one
//! aligned 8-byte write) — or, when the refcount structure itself is broken, writes a complete new one
//! past the end of the file and switches the header to it with one write (see
//! [`Refcounts::rebuild`]). A crash during repair therefore leaves at worst leaked clusters.

use std::collections::HashMap;
use std::path::Path;

use super::header::{Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, OFF_INCOMPATIBLE};
use super::refcount::{entry_get, Op, Refcounts};
use super::snapshot;
use super::table::{read_be_u64s, COMPRESSED, COPIED, OFFSET_MASK, ZERO};
use crate::block::file::ImageFile;
use crate::block::{lock, BlockError, CacheMode};

/// QEMU's masks for the checks that name reserved bits.
const L1E_RESERVED: u64 = 0x7f00_0000_0000_01ff;
const L2E_STD_RESERVED: u64 = 0x3f00_0000_0000_01fe;
const REFT_RESERVED: u64 = 0x1ff;
const REFT_OFFSET: u64 = !REFT_RESERVED;
/// QEMU's QCOW_MAX_L1_SIZE in entries.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// Largest image (in clusters) whose reference counts we hold in memory (256 MiB of counters).
const MAX_CLUSTERS: u64 = 32 << 20;

/// What `-r` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    None,
    /// Lower refcounts that are higher than the references (leaked clusters).
    Leaks,
    /// Leaks, refcounts lower than the references, copied flags; rebuild broken refcount structures.
    All,
}

impl Repair {
    fn leaks(self) -> bool {
        self != Repair::None
    }
    fn errors(self) -> bool {
        self == Repair::All
    }
}

/// The result of one pass, with QEMU's `BdrvCheckResult` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckResult {
    pub corruptions: u64,
    pub leaks: u64,
    pub check_errors: u64,
    pub corruptions_fixed: u64,
    pub leaks_fixed: u64,
    /// Byte offset just past the last cluster in use (0 if unknown).
    pub image_end_offset: u64,
    /// Clusters of the virtual disk, and how many of them the active L1 table maps.
    pub total_clusters: u64,
    pub allocated_clusters: u64,
    pub fragmented_clusters: u64,
    pub compressed_clusters: u64,
    /// One line per problem found (or repaired), worded as QEMU prints them on stderr.
    pub messages: Vec<String>,
    /// Why the check could not complete (QEMU's "Check failed: …"); no figures are meaningful then.
    pub failed: Option<String>,
}

/// Checks (and with `repair`, repairs) the image at `path`. Errors are problems that stop the check
/// altogether (unreadable file, unsupported feature, a header that does not parse).
pub fn check(path: &Path, repair: Repair) -> Result<CheckResult, BlockError> {
    let writable = repair != Repair::None;
    let mut file = ImageFile::open(path, !writable, CacheMode::Writeback)?;
    lock::lock_image(file.file(), path, writable)?;
    let hdr = super::read_header(&mut file, path)?;
    if hdr.has_bitmaps {
        return Err(BlockError::unsupported(
            path,
            "checking images with persistent dirty bitmaps",
        ));
    }
    let mut c = Checker::new(file, hdr)?;
    c.run(repair)?;
    if repair != Repair::None && c.res.check_errors == 0 && c.res.corruptions == 0 {
        // Consistent now: neither the dirty nor the corrupt flag is true any more.
        let bits = c.hdr.incompatible & !(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
        if bits != c.hdr.incompatible {
            c.file.write_at(&bits.to_be_bytes(), OFF_INCOMPATIBLE)?;
        }
    }
    if writable {
        c.file.sync()?;
    }
    Ok(c.res)
}

struct Checker {
    file: ImageFile,
    hdr: Header,
    cb: u32,
    cs: u64,
    order: u32,
    /// The refcount table as stored (entries, not offsets).
    reftable: Vec<u64>,
    blocks: HashMap<u64, Vec<u8>>,
    /// References counted so far, one per cluster of the file.
    counts: Vec<u64>,
    refcount_max: u64,
    res: CheckResult,
    rebuild: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unallocated,
    ZeroPlain,
    ZeroAlloc,
    Normal,
    Compressed,
}

/// QEMU's qcow2_get_cluster_type (no subclusters, no external data file).
fn kind(e: u64) -> Kind {
    if e & COMPRESSED != 0 {
        Kind::Compressed
    } else if e & ZERO != 0 {
        if e & OFFSET_MASK != 0 {
            Kind::ZeroAlloc
        } else {
            Kind::ZeroPlain
        }
    } else if e & OFFSET_MASK == 0 {
        Kind::Unallocated
    } else {
        Kind::Normal
    }
}

impl Checker {
    fn new(file: ImageFile, hdr: Header) -> Result<Checker, BlockError> {
        let cs = hdr.cluster_size();
        let nb = file.len().div_ceil(cs);
        if nb > MAX_CLUSTERS {
            return Err(BlockError::unsupported(
                file.path(),
                format!("checking an image of {nb} clusters (at most {MAX_CLUSTERS})"),
            ));
        }
        let order = hdr.refcount_order;
        let mut c = Checker {
            cb: hdr.cluster_bits,
            cs,
            order,
            reftable: Vec::new(),
            blocks: HashMap::new(),
            counts: vec![0; nb as usize],
            refcount_max: if order == 6 {
                u64::MAX
            } else {
                (1u64 << (1u32 << order)) - 1
            },
            res: CheckResult::default(),
            rebuild: false,
            file,
            hdr,
        };
        c.load_reftable()?;
        Ok(c)
    }

    fn load_reftable(&mut self) -> Result<(), BlockError> {
        let bytes = u64::from(self.hdr.refcount_table_clusters) * self.cs;
        let mut raw = vec![0u8; bytes as usize];
        self.file
            .read_at(&mut raw, self.hdr.refcount_table_offset)?;
        self.reftable = read_be_u64s(&raw);
        self.blocks.clear();
        Ok(())
    }

    fn msg(&mut self, m: String) {
        self.res.messages.push(m);
    }

    /// The stored refcount of `cluster` (QEMU's qcow2_get_refcount).
    fn stored(&mut self, cluster: u64) -> Result<u64, String> {
        let per = (self.cs * 8) >> self.order;
        let Some(&e) = self.reftable.get((cluster / per) as usize) else {
            return Ok(0);
        };
        let off = e & REFT_OFFSET;
        if off == 0 {
            return Ok(0);
        }
        if !off.is_multiple_of(self.cs) {
            return Err("Input/output error".into());
        }
        if !self.blocks.contains_key(&off) {
            let mut b = vec![0u8; self.cs as usize];
            self.file.read_at(&mut b, off).map_err(|e| e.to_string())?;
            self.blocks.insert(off, b);
        }
        Ok(self
            .blocks
            .get(&off)
            .map_or(0, |b| entry_get(b, (cluster % per) as usize, self.order)))
    }

    /// One more reference to every cluster of `[offset, offset+size)` (qcow2_inc_refcounts_imrt).
    fn inc(&mut self, offset: u64, size: u64) {
        if size == 0 {
            return;
        }
        let end = u128::from(offset) + u128::from(size);
        // The last cluster may be partly past the end of the file; a whole cluster or more is not.
        if end >= u128::from(self.file.len()) + u128::from(self.cs) {
            self.msg(format!(
                "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset {offset:#x} size {size:#x}"
            ));
            self.res.corruptions += 1;
            return;
        }
        let first = offset >> self.cb;
        let last = (offset + size - 1) >> self.cb;
        for k in first..=last {
            if k as usize >= self.counts.len() {
                self.counts.resize(k as usize + 1, 0);
            }
            if self.counts[k as usize] == self.refcount_max {
                self.msg(format!(
                    "ERROR: overflow cluster offset={:#x}",
                    k << self.cb
                ));
                self.res.corruptions += 1;
                continue;
            }
            self.counts[k as usize] += 1;
        }
    }

    fn read_u64s(&mut self, offset: u64, n: u64) -> Result<Vec<u64>, BlockError> {
        let mut raw = vec![0u8; (n * 8) as usize];
        self.file.read_at(&mut raw, offset)?;
        Ok(read_be_u64s(&raw))
    }

    /// check_refcounts_l1: the L1 table, its L2 tables and what they map.
    fn l1(&mut self, offset: u64, size: u64, frag: bool) -> Result<(), BlockError> {
        if size == 0 {
            return Ok(());
        }
        self.inc(offset, size * 8);
        let l1 = self.read_u64s(offset, size)?;
        for e in l1 {
            if e == 0 {
                continue;
            }
            if e & L1E_RESERVED != 0 {
                self.msg(format!(
                    "ERROR found L1 entry with reserved bits set: {e:x}"
                ));
                self.res.corruptions += 1;
            }
            let l2 = e & OFFSET_MASK;
            self.inc(l2, self.cs);
            if !l2.is_multiple_of(self.cs) {
                self.msg(format!(
                    "ERROR l2_offset={l2:x}: Table is not cluster aligned; L1 entry corrupted"
                ));
                self.res.corruptions += 1;
            }
            self.l2(l2, frag)?;
        }
        Ok(())
    }

    /// check_refcounts_l2.
    fn l2(&mut self, offset: u64, frag: bool) -> Result<(), BlockError> {
        let entries = self.read_u64s(offset, self.cs / 8)?;
        let mut next_contiguous = 0u64;
        // Compressed entries: host offset below bit `shift`, sector count above it.
        let shift = 62 - (self.cb - 8);
        for mut e in entries {
            let k = kind(e);
            if k != Kind::Compressed && e & L2E_STD_RESERVED != 0 {
                self.msg(format!(
                    "ERROR found l2 entry with reserved bits set: {e:x}"
                ));
                self.res.corruptions += 1;
            }
            match k {
                Kind::Compressed => {
                    if e & COPIED != 0 {
                        self.msg(format!(
                            "ERROR: coffset=0x{:x}: copied flag must never be set for compressed clusters",
                            e & ((1u64 << shift) - 1)
                        ));
                        e &= !COPIED;
                        self.res.corruptions += 1;
                    }
                    let coffset = e & ((1u64 << shift) - 1);
                    let sectors = ((e >> shift) & ((1u64 << (self.cb - 8)) - 1)) + 1;
                    self.inc(coffset, sectors * 512 - (coffset & 511));
                    if frag {
                        self.res.allocated_clusters += 1;
                        self.res.compressed_clusters += 1;
                        // QEMU counts compressed clusters as fragmented by nature.
                        self.res.fragmented_clusters += 1;
                    }
                }
                Kind::ZeroAlloc | Kind::Normal => {
                    let off = e & OFFSET_MASK;
                    if !off.is_multiple_of(self.cs) {
                        self.msg(format!(
                            "ERROR offset={off:x}: {} cluster is not properly aligned; L2 entry corrupted.",
                            if k == Kind::ZeroAlloc { "Preallocated" } else { "Data" }
                        ));
                        self.res.corruptions += 1;
                    }
                    if frag {
                        self.res.allocated_clusters += 1;
                        if next_contiguous != 0 && off != next_contiguous {
                            self.res.fragmented_clusters += 1;
                        }
                        next_contiguous = off.wrapping_add(self.cs);
                    }
                    self.inc(off, self.cs);
                }
                Kind::ZeroPlain | Kind::Unallocated => {}
            }
        }
        Ok(())
    }

    /// calculate_refcounts; returns the counts taken before the refcount structures were counted
    /// (what a rebuilt structure must record).
    fn calculate(&mut self) -> Result<Vec<u64>, BlockError> {
        self.counts = vec![0; self.file.len().div_ceil(self.cs) as usize];
        self.inc(0, self.cs);
        let (l1_off, l1_size) = (self.hdr.l1_table_offset, u64::from(self.hdr.l1_size));
        self.l1(l1_off, l1_size, true)?;
        let path = self.file.path().to_path_buf();
        let (snaps, table_len) = snapshot::read_table(
            &mut self.file,
            &path,
            self.hdr.snapshots_offset,
            self.hdr.nb_snapshots,
            self.cs,
        )?;
        for s in &snaps {
            if !s.l1_table_offset.is_multiple_of(self.cs) {
                self.msg(format!(
                    "ERROR snapshot {} ({}) l1_offset={:#x}: L1 table is not cluster aligned; snapshot table entry corrupted",
                    s.id, s.name, s.l1_table_offset
                ));
                self.res.corruptions += 1;
                continue;
            }
            if u64::from(s.l1_size) > MAX_L1_ENTRIES {
                self.msg(format!(
                    "ERROR snapshot {} ({}) l1_size={:#x}: L1 table is too large; snapshot table entry corrupted",
                    s.id, s.name, s.l1_size
                ));
                self.res.corruptions += 1;
                continue;
            }
            self.l1(s.l1_table_offset, u64::from(s.l1_size), false)?;
        }
        self.inc(self.hdr.snapshots_offset, table_len);
        let data_counts = self.counts.clone();
        self.inc(
            self.hdr.refcount_table_offset,
            u64::from(self.hdr.refcount_table_clusters) * self.cs,
        );
        self.refblocks();
        Ok(data_counts)
    }

    /// check_refblocks.
    fn refblocks(&mut self) {
        for i in 0..self.reftable.len() {
            let e = self.reftable[i];
            if e & REFT_RESERVED != 0 {
                self.msg(format!(
                    "ERROR refcount table entry {i} has reserved bits set"
                ));
                self.res.corruptions += 1;
                self.rebuild = true;
                continue;
            }
            let off = e & REFT_OFFSET;
            if !off.is_multiple_of(self.cs) {
                self.msg(format!(
                    "ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted"
                ));
                self.res.corruptions += 1;
                self.rebuild = true;
                continue;
            }
            let cluster = off >> self.cb;
            if cluster >= self.counts.len() as u64 {
                self.msg(format!("ERROR refcount block {i} is outside image"));
                self.res.corruptions += 1;
                self.rebuild = true;
                continue;
            }
            if off != 0 {
                self.inc(off, self.cs);
                let n = self.counts[cluster as usize];
                if n != 1 {
                    self.msg(format!("ERROR refcount block {i} refcount={n}"));
                    self.res.corruptions += 1;
                    self.rebuild = true;
                }
            }
        }
    }

    /// compare_refcounts; returns the highest cluster in use.
    fn compare(&mut self, fix: Repair, refs: &mut Option<Refcounts>) -> Result<u64, BlockError> {
        let mut highest = 0;
        for i in 0..self.counts.len() as u64 {
            let stored = match self.stored(i) {
                Ok(v) => v,
                Err(e) => {
                    self.msg(format!("Can't get refcount for cluster {i}: {e}"));
                    self.res.check_errors += 1;
                    continue;
                }
            };
            let counted = self.counts[i as usize];
            if stored > 0 || counted > 0 {
                highest = i;
            }
            if stored == counted {
                continue;
            }
            let fixable = if stored == 0 {
                self.rebuild = true;
                false
            } else if stored > counted {
                fix.leaks()
            } else {
                fix.errors()
            };
            let what = if fixable {
                "Repairing"
            } else if stored < counted {
                "ERROR"
            } else {
                "Leaked"
            };
            self.msg(format!(
                "{what} cluster {i} refcount={stored} reference={counted}"
            ));
            if fixable {
                if let Some(r) = refs.as_mut() {
                    r.update(&mut self.file, i, 1, Op::Set(counted))?;
                    self.blocks.clear();
                    if stored > counted {
                        self.res.leaks_fixed += 1;
                    } else {
                        self.res.corruptions_fixed += 1;
                    }
                    continue;
                }
            }
            if stored < counted {
                self.res.corruptions += 1;
            } else {
                self.res.leaks += 1;
            }
        }
        Ok(highest)
    }

    /// check_oflag_copied: the copied flag must be set exactly on L2 tables and clusters whose
    /// refcount is one (active L1 table only).
    fn oflag_copied(&mut self, fix: bool) -> Result<(), BlockError> {
        let l1_off = self.hdr.l1_table_offset;
        let l1 = self.read_u64s(l1_off, u64::from(self.hdr.l1_size))?;
        let word = if fix { "Repairing" } else { "ERROR" };
        for (i, &e) in l1.iter().enumerate() {
            let l2 = e & OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            let Ok(n) = self.stored(l2 >> self.cb) else {
                continue;
            };
            if (n == 1) != (e & COPIED != 0) {
                self.res.corruptions += 1;
                self.msg(format!(
                    "{word} OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={e:x} refcount={n}"
                ));
                if fix {
                    let fixed = if n == 1 { e | COPIED } else { e & !COPIED };
                    self.file
                        .write_at(&fixed.to_be_bytes(), l1_off + i as u64 * 8)?;
                    self.res.corruptions -= 1;
                    self.res.corruptions_fixed += 1;
                }
            }
            let entries = self.read_u64s(l2, self.cs / 8)?;
            for (j, &v) in entries.iter().enumerate() {
                if !matches!(kind(v), Kind::Normal | Kind::ZeroAlloc) {
                    continue;
                }
                let Ok(n) = self.stored((v & OFFSET_MASK) >> self.cb) else {
                    continue;
                };
                if (n == 1) != (v & COPIED != 0) {
                    self.res.corruptions += 1;
                    self.msg(format!(
                        "{word} OFLAG_COPIED data cluster: l2_entry={v:x} refcount={n}"
                    ));
                    if fix {
                        let fixed = if n == 1 { v | COPIED } else { v & !COPIED };
                        self.file
                            .write_at(&fixed.to_be_bytes(), l2 + j as u64 * 8)?;
                        self.res.corruptions -= 1;
                        self.res.corruptions_fixed += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// qcow2_check_refcounts.
    fn run(&mut self, fix: Repair) -> Result<(), BlockError> {
        self.res.total_clusters = self.hdr.size.div_ceil(self.cs);
        let data_counts = self.calculate()?;
        let pre_compare = self.res.clone();
        let mut none = None;
        let mut highest = self.compare(Repair::None, &mut none)?;
        if self.rebuild && fix.errors() {
            self.msg("Rebuilding refcount structure".into());
            let old = self.res.clone();
            let mut refs = Refcounts::blank(&self.file, &self.hdr);
            refs.rebuild(&mut self.file, data_counts)?;
            // The header now names the new table.
            self.hdr.refcount_table_offset = refs.table_offset();
            self.hdr.refcount_table_clusters = refs.table_clusters() as u32;
            self.load_reftable()?;
            self.rebuild = false;
            self.res = CheckResult {
                messages: std::mem::take(&mut self.res.messages),
                ..CheckResult::default()
            };
            self.res.total_clusters = old.total_clusters;
            self.calculate()?;
            highest = self.compare(Repair::None, &mut none)?;
            if self.rebuild {
                self.msg("ERROR rebuilt refcount structure is still broken".into());
            }
            self.res.corruptions_fixed = old.corruptions.saturating_sub(self.res.corruptions);
            self.res.leaks_fixed = old.leaks.saturating_sub(self.res.leaks);
        } else if fix != Repair::None {
            if self.rebuild {
                self.msg("ERROR need to rebuild refcount structures".into());
                self.res.check_errors += 1;
                // -r leaks cannot fix this; QEMU fails the whole check with EIO.
                self.res.failed = Some("Input/output error".into());
                return Ok(());
            }
            if self.res.leaks > 0 || self.res.corruptions > 0 {
                let messages = std::mem::take(&mut self.res.messages);
                self.res = CheckResult {
                    messages,
                    ..pre_compare
                };
                let mut refs = Some(Refcounts::load(&mut self.file, &self.hdr, 1 << 20)?);
                highest = self.compare(fix, &mut refs)?;
            }
        }
        self.oflag_copied(fix.errors())?;
        self.res.image_end_offset = (highest + 1) * self.cs;
        Ok(())
    }
}
