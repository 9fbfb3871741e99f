//! Refcount repair for images left dirty (lazy refcounts): count every reference from scratch.
//!
//! References: the header cluster, the active L1 table and everything below it, the snapshot table and
//! every snapshot's L1 table and everything below those. Refcount structures get fresh clusters at the
//! end of the file; the old ones simply become free.

use super::table::{decode_l1, read_be_u64s, L2Entry};
use super::Qcow2;
use crate::block::BlockError;

/// Largest image (in clusters) we repair in memory: 256 MiB of counters.
const MAX_CLUSTERS: u64 = 32 << 20;

struct Counter {
    counts: Vec<u64>,
    cluster_bits: u32,
}

impl Counter {
    /// One more reference to every cluster overlapping `[off, off+len)`.
    fn add(&mut self, q: &Qcow2, off: u64, len: u64, what: &str) -> Result<(), BlockError> {
        if len == 0 {
            return Ok(());
        }
        let first = off >> self.cluster_bits;
        let last = (off + len - 1) >> self.cluster_bits;
        for c in first..=last {
            let slot = self.counts.get_mut(c as usize).ok_or_else(|| {
                q.corrupt(format!("{what} at {off:#x} lies past the end of the file"))
            })?;
            *slot += 1;
        }
        Ok(())
    }
}

pub(super) fn rebuild_refcounts(q: &mut Qcow2) -> Result<(), BlockError> {
    let cb = q.cluster_bits;
    let n = q.file.len().div_ceil(q.cs);
    if n > MAX_CLUSTERS {
        return Err(q.corrupt(format!(
            "image is marked dirty and too large ({n} clusters) to repair here; run 'qemu-img check -r all'"
        )));
    }
    let mut cnt = Counter {
        counts: vec![0; n as usize],
        cluster_bits: cb,
    };
    cnt.add(q, 0, q.cs, "header")?;
    let active = q.l1.clone();
    cnt.add(
        q,
        q.hdr.l1_table_offset,
        active.len() as u64 * 8,
        "L1 table",
    )?;
    count_tree(q, &mut cnt, &active)?;
    if q.hdr.nb_snapshots > 0 {
        cnt.add(
            q,
            q.hdr.snapshots_offset,
            q.snapshot_table_len,
            "snapshot table",
        )?;
        for s in q.snapshots.clone() {
            let len = u64::from(s.l1_size) * 8;
            if s.l1_table_offset
                .checked_add(len)
                .is_none_or(|e| e > q.file.len())
            {
                return Err(q.corrupt(format!(
                    "snapshot '{}' L1 table lies past the end of the file",
                    s.name
                )));
            }
            let mut raw = vec![0u8; len as usize];
            q.file.read_at(&mut raw, s.l1_table_offset)?;
            cnt.add(q, s.l1_table_offset, len, "snapshot L1 table")?;
            count_tree(q, &mut cnt, &read_be_u64s(&raw))?;
        }
    }
    let counts = cnt.counts;
    q.pool.clear();
    q.free_hint = 0;
    let (file, refs) = (
        &mut q.file,
        q.refs.as_mut().expect("refcounts are loaded for writes"),
    );
    refs.rebuild(file, counts)
}

fn count_tree(q: &mut Qcow2, cnt: &mut Counter, l1: &[u64]) -> Result<(), BlockError> {
    let mut raw = vec![0u8; q.cs as usize];
    for (i, &e) in l1.iter().enumerate() {
        let (l2, _) = decode_l1(e).map_err(|d| q.corrupt(format!("L1 index {i}: {d}")))?;
        if l2 == 0 {
            continue;
        }
        cnt.add(q, l2, q.cs, "L2 table")?;
        q.file.read_at(&mut raw, l2)?;
        for v in read_be_u64s(&raw) {
            match q.decode(v)? {
                L2Entry::Normal { host, .. } | L2Entry::Zero { host, .. } if host != 0 => {
                    cnt.add(q, host, q.cs, "data cluster")?
                }
                L2Entry::Compressed { host, sectors } => {
                    // Compressed data may run past the end of the file by padding; count what exists.
                    let start = host & !511;
                    let end = (start + sectors * 512).min(q.file.len());
                    if end > start {
                        cnt.add(q, start, end - start, "compressed cluster")?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
