//! The internal snapshot table: read for `info` and for refcount repair, never rewritten.

use std::path::Path;

use crate::block::file::ImageFile;
use crate::block::BlockError;

/// QEMU's limits: at most 65536 snapshots, a table of at most 64 MiB.
const MAX_SNAPSHOTS: u32 = 65536;
const MAX_TABLE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub l1_table_offset: u64,
    pub l1_size: u32,
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
    pub vm_state_size: u64,
    /// Virtual disk size when the snapshot was taken (from the extra data, if present).
    pub disk_size: Option<u64>,
}

/// Parses `count` snapshot headers at `offset`; returns them and the table's length in bytes.
pub fn read_table(
    file: &mut ImageFile,
    path: &Path,
    offset: u64,
    count: u32,
    cluster_size: u64,
) -> Result<(Vec<Snapshot>, u64), BlockError> {
    let corrupt = |d: String| BlockError::corrupt(path, d);
    if count == 0 {
        return Ok((Vec::new(), 0));
    }
    if count > MAX_SNAPSHOTS {
        return Err(corrupt(format!(
            "{count} snapshots (at most {MAX_SNAPSHOTS})"
        )));
    }
    if offset == 0 || !offset.is_multiple_of(cluster_size) || offset >= file.len() {
        return Err(corrupt(format!(
            "snapshot table offset {offset:#x} is invalid or past the end of the file"
        )));
    }
    let avail = (file.len() - offset).min(MAX_TABLE_BYTES);
    let mut buf = vec![0u8; avail as usize];
    file.read_at(&mut buf, offset)?;
    let mut pos = 0usize;
    let mut out = Vec::with_capacity(count.min(1024) as usize);
    let need = |pos: usize, n: usize| -> Result<(), BlockError> {
        if pos.checked_add(n).is_none_or(|e| e > buf.len()) {
            Err(corrupt(
                "snapshot table runs past the end of the file".to_string(),
            ))
        } else {
            Ok(())
        }
    };
    for i in 0..count {
        need(pos, 40)?;
        let b = &buf[pos..];
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let be64 = |o: usize| (u64::from(be32(o)) << 32) | u64::from(be32(o + 4));
        let be16 = |o: usize| usize::from(u16::from_be_bytes([b[o], b[o + 1]]));
        let l1_table_offset = be64(0);
        let l1_size = be32(8);
        let id_len = be16(12);
        let name_len = be16(14);
        let extra = be32(36) as usize;
        if extra > 1024 {
            return Err(corrupt(format!(
                "snapshot {i} has {extra} bytes of extra data"
            )));
        }
        need(pos, 40 + extra + id_len + name_len)?;
        let b = &buf[pos..];
        let mut vm_state_size = u64::from(be32(32));
        let mut disk_size = None;
        if extra >= 8 {
            vm_state_size = be64(40);
        }
        if extra >= 16 {
            disk_size = Some(be64(48));
        }
        let s = 40 + extra;
        let id = String::from_utf8_lossy(&b[s..s + id_len]).into_owned();
        let name = String::from_utf8_lossy(&b[s + id_len..s + id_len + name_len]).into_owned();
        if l1_table_offset % cluster_size != 0 {
            return Err(corrupt(format!(
                "snapshot '{name}' L1 table offset {l1_table_offset:#x} is misaligned"
            )));
        }
        out.push(Snapshot {
            id,
            name,
            l1_table_offset,
            l1_size,
            date_sec: be32(16),
            date_nsec: be32(20),
            vm_clock_nsec: be64(24),
            vm_state_size,
            disk_size,
        });
        pos = (pos + 40 + extra + id_len + name_len).next_multiple_of(8);
    }
    Ok((out, pos as u64))
}
