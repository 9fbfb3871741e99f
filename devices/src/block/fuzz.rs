//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the in-tree mutation tests: feed
//! arbitrary bytes to the qcow2 parsers and I/O paths; anything but a panic is fine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::qcow2::header::Header;
use super::{open, BlockBackend, CacheMode, ImageFormat, OpenOptions};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the file when dropped.
struct TempImage(PathBuf);

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Treats `data` as a qcow2 file: parses it, opens it read-only and reads, then opens it read-write
/// and writes, discards and flushes. Returns whether the read-only open succeeded.
pub fn qcow2_open_and_io(data: &[u8]) -> bool {
    let _ = Header::parse(std::path::Path::new("fuzz-input"), data);
    let mut bytes = data.to_vec();
    // A fuzzed backing file name could name a FIFO or a device; keep the test hermetic.
    if bytes.len() >= 20 {
        bytes[8..20].fill(0);
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ironvirt-fuzz-{}-{n}.qcow2", std::process::id()));
    if std::fs::write(&path, &bytes).is_err() {
        return false;
    }
    let _guard = TempImage(path.clone());
    let _ = super::qcow2::info(&path);
    let mut opts = OpenOptions {
        format: ImageFormat::Qcow2,
        read_only: true,
        cache: CacheMode::Unsafe,
        discard_unmap: true,
        backing: None,
        lock: false,
    };
    let ok = match open(&path, &opts) {
        Ok(mut d) => {
            exercise_reads(d.as_mut());
            true
        }
        Err(_) => false,
    };
    opts.read_only = false;
    if let Ok(mut d) = open(&path, &opts) {
        let size = d.size();
        let buf = vec![0x5a; 4096];
        for off in probe_offsets(size) {
            let len = (size - off).min(4096) as usize;
            let _ = d.write_at(&buf[..len], off);
            let _ = d.discard(off, len as u64 / 2);
            let _ = d.write_zeroes(off, len as u64, false);
        }
        let _ = d.flush();
        exercise_reads(d.as_mut());
    }
    ok
}

fn probe_offsets(size: u64) -> Vec<u64> {
    if size == 0 {
        return Vec::new();
    }
    let mut v = vec![0, size / 3, size / 2, size.saturating_sub(4096), size - 1];
    v.iter_mut().for_each(|o| *o &= !511);
    v.sort_unstable();
    v.dedup();
    v
}

fn exercise_reads(d: &mut dyn BlockBackend) {
    let size = d.size();
    let mut buf = vec![0u8; 8192];
    for off in probe_offsets(size) {
        let len = (size - off).min(8192) as usize;
        let _ = d.read_at(&mut buf[..len], off);
    }
}
