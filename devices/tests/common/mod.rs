//! Helpers shared by the block backend integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ironvirt_devices::block::{
    self, BackingSpec, BlockBackend, CacheMode, ImageFormat, OpenOptions,
};

/// xorshift64*: small, seedable, good enough for test data and op sequences.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Seed from IRONVIRT_SEED or the clock; printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("IRONVIRT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: seed {s} (rerun with IRONVIRT_SEED={s})");
    s
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ironvirt-block-")
        .tempdir_in(std::env::var("IRONVIRT_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into()))
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

pub fn qemu_img(args: &[&str]) -> Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs")
}

/// Like `qemu_img`, but retries lock failures for a while. Another test thread that forks a child
/// while we close an image keeps the image's open file description (and so its OFD locks) alive
/// until that child execs, so a lock can outlive our close by a moment.
pub fn qemu_img_retry(args: &[&str]) -> Output {
    for _ in 0..50 {
        let o = qemu_img(args);
        if o.status.success() || !String::from_utf8_lossy(&o.stderr).contains("lock") {
            return o;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    qemu_img(args)
}

/// Runs qemu-img and panics with its output if it fails.
pub fn qemu_img_ok(args: &[&str]) -> Output {
    let o = qemu_img_retry(args);
    assert!(
        o.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

pub fn qemu_io(fmt: &str, path: &Path, cmd: &str) {
    let o = Command::new("qemu-io")
        .args(["-f", fmt, "-c", cmd])
        .arg(path)
        .output()
        .expect("qemu-io runs");
    assert!(
        o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("failed"),
        "qemu-io {cmd} on {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `qemu-img check` must find no corruption and no leaks (exit 0); with `leaks_ok` exit 3 is fine too.
pub fn check(path: &Path, leaks_ok: bool) {
    let o = qemu_img_retry(&["check", "-f", "qcow2", path.to_str().unwrap()]);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code == 0 || (leaks_ok && code == 3),
        "qemu-img check {} exit {code}: {}{}",
        path.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `qemu-img compare` of a qcow2 image against a raw mirror.
pub fn compare(img: &Path, mirror: &Path) {
    let o = qemu_img(&[
        "compare",
        "-f",
        "qcow2",
        "-F",
        "raw",
        img.to_str().unwrap(),
        mirror.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "qemu-img compare {} {}: {}{}",
        img.display(),
        mirror.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn opts(format: ImageFormat) -> OpenOptions {
    OpenOptions {
        format,
        read_only: false,
        cache: CacheMode::Writeback,
        discard_unmap: true,
        backing: None,
        lock: true,
    }
}

/// Opens, retrying lock conflicts for a moment (see `qemu_img_retry` for why they happen in tests).
pub fn open_retry(path: &Path, o: &OpenOptions) -> Box<dyn BlockBackend> {
    let mut tries = 0;
    loop {
        match block::open(path, o) {
            Ok(d) => return d,
            Err(block::BlockError::Locked { .. }) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

pub fn open_rw(path: &Path, format: ImageFormat) -> Box<dyn BlockBackend> {
    open_retry(path, &opts(format))
}

pub fn open_ro(path: &Path, format: ImageFormat) -> Box<dyn BlockBackend> {
    let mut o = opts(format);
    o.read_only = true;
    open_retry(path, &o)
}

pub fn read_all(d: &mut dyn BlockBackend) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    // Odd-sized pieces exercise unaligned mapping.
    let mut off = 0usize;
    let mut step = 65536 + 4096 + 512;
    while off < v.len() {
        let n = step.min(v.len() - off);
        d.read_at(&mut v[off..off + n], off as u64).expect("read");
        off += n;
        step = step * 3 / 2;
    }
    v
}

/// Index of the first differing byte, for readable assertions.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i:#x} (cluster-ish {:#x}): got {:#04x} want {:#04x}",
            i & !0xfff,
            got[i],
            want[i]
        );
    }
}

/// Test data: random, all-zero and highly compressible regions mixed.
pub fn pattern(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut off = 0;
    while off < len {
        let n = ((rng.below(48) + 1) * 4096).min((len - off) as u64) as usize;
        match rng.below(3) {
            0 => rng.fill(&mut v[off..off + n]),
            1 => {}
            _ => {
                let b = rng.next() as u8;
                v[off..off + n]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, x)| *x = b.wrapping_add((i / 64) as u8));
            }
        }
        off += n;
    }
    v
}

/// One random guest operation, applied to a backend and to a byte-vector mirror.
pub fn random_op(
    rng: &mut Rng,
    d: &mut dyn BlockBackend,
    mirror: &mut [u8],
    max_len: u64,
) -> String {
    let size = mirror.len() as u64;
    let align = if rng.below(2) == 0 { 512 } else { 1 };
    let off = (rng.below(size) / align) * align;
    let len = (rng.below(max_len) + 1).min(size - off);
    let len = if align == 512 {
        len.div_ceil(512) * 512
    } else {
        len
    }
    .min(size - off);
    let (o, l) = (off as usize, len as usize);
    match rng.below(10) {
        0..=5 => {
            let mut buf = vec![0u8; l];
            if rng.below(4) == 0 {
                // All-zero data written as data.
            } else {
                rng.fill(&mut buf);
            }
            d.write_at(&buf, off)
                .unwrap_or_else(|e| panic!("write {off}+{len}: {e}"));
            mirror[o..o + l].copy_from_slice(&buf);
            format!("write {off}+{len}")
        }
        6 => {
            d.discard(off, len)
                .unwrap_or_else(|e| panic!("discard {off}+{len}: {e}"));
            mirror[o..o + l].fill(0);
            format!("discard {off}+{len}")
        }
        7 | 8 => {
            let unmap = rng.below(2) == 0;
            d.write_zeroes(off, len, unmap)
                .unwrap_or_else(|e| panic!("write_zeroes {off}+{len}: {e}"));
            mirror[o..o + l].fill(0);
            format!("write_zeroes {off}+{len} unmap={unmap}")
        }
        _ => {
            d.flush().expect("flush");
            "flush".into()
        }
    }
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn backing_spec(path: &Path, format: ImageFormat) -> BackingSpec {
    BackingSpec {
        path: path.to_path_buf(),
        format,
        backing: None,
    }
}
