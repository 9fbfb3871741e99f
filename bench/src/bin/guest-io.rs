//! `guest-io`: the disk benchmark that runs inside benchmark guests (built as a static binary and put in the
//! guest's initramfs). fio is too heavy for an initramfs booted under nested emulation (LAB.md), so this does
//! the three measurements the benchmark reports, with O_DIRECT so the guest page cache is out of the way:
//!
//! `guest-io randread|randwrite DEVICE SECONDS THREADS` — 4 KiB random I/O, prints IOPS;
//! `guest-io seqread DEVICE SECONDS` — 1 MiB sequential reads, prints MiB/s.
//!
//! Output: one line `GUEST-IO: <mode> <value>`.

use std::alloc::{alloc, dealloc, Layout};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALIGN: usize = 4096;

struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len, ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: `ptr` points at `len` freshly allocated bytes.
        unsafe { std::ptr::write_bytes(ptr, 0x5a, len) };
        Some(AlignedBuf { ptr, layout })
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is valid for `layout.size()` bytes for the buffer's lifetime, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

fn device_size(path: &str) -> Result<u64, String> {
    let f = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes a u64 through the pointer.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), 0x8008_1272, &mut size) };
    if r == 0 {
        Ok(size)
    } else {
        f.metadata()
            .map(|m| m.len())
            .map_err(|e| format!("{path}: {e}"))
    }
}

fn random_io(path: &str, write: bool, seconds: u64, threads: usize) -> Result<f64, String> {
    let size = device_size(path)?;
    let blocks = size / ALIGN as u64;
    if blocks == 0 {
        return Err(format!("{path} is empty"));
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for t in 0..threads {
        let path = path.to_string();
        let done = done.clone();
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let f = OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .map_err(|e| format!("{path}: {e}"))?;
            let mut buf = AlignedBuf::new(ALIGN).ok_or("out of memory")?;
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
            while Instant::now() < deadline {
                for _ in 0..16 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = (x % blocks) * ALIGN as u64;
                    let r = if write {
                        f.write_at(buf.slice(), off)
                    } else {
                        f.read_at(buf.slice(), off)
                    };
                    r.map_err(|e| format!("{path} at {off}: {e}"))?;
                }
                done.fetch_add(16, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let start = Instant::now();
    for h in handles {
        h.join().map_err(|_| "a worker panicked".to_string())??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

fn seq_read(path: &str, seconds: u64) -> Result<f64, String> {
    const BS: usize = 1 << 20;
    let size = device_size(path)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let mut buf = AlignedBuf::new(BS).ok_or("out of memory")?;
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut off = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        if off + BS as u64 > size {
            off = 0;
        }
        f.read_at(buf.slice(), off)
            .map_err(|e| format!("{path} at {off}: {e}"))?;
        off += BS as u64;
        bytes += BS as u64;
    }
    Ok(bytes as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let result = match (args.first().map(String::as_str), args.get(1)) {
        (Some("randread"), Some(dev)) => random_io(dev, false, num(2, 5), num(3, 4) as usize),
        (Some("randwrite"), Some(dev)) => random_io(dev, true, num(2, 5), num(3, 4) as usize),
        (Some("seqread"), Some(dev)) => seq_read(dev, num(2, 5)),
        _ => Err("usage: guest-io randread|randwrite DEVICE [SECONDS] [THREADS] | seqread DEVICE [SECONDS]".into()),
    };
    match result {
        Ok(v) => {
            println!("GUEST-IO: {} {v:.1}", args[0]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guest-io: {e}");
            ExitCode::FAILURE
        }
    }
}
