//! Malformed qcow2 images: truncated files, huge sizes, L1 size bombs, table loops, offsets past the
//! end of the file or misaligned, refcount structures overlapping the header, unsupported features.
//! All give errors (naming the file and what is wrong), never panics; a mutation loop feeds
//! thousands of damaged images through the same entry point the cargo-fuzz target uses.

mod common;

use std::path::Path;

use common::*;
use ironvirt_devices::block::fuzz::qcow2_open_and_io;
use ironvirt_devices::block::qcow2::{self, CreateOptions};
use ironvirt_devices::block::{self, BlockError, CacheMode, ImageFormat, OpenOptions};

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn o(read_only: bool) -> OpenOptions {
    OpenOptions {
        format: ImageFormat::Qcow2,
        read_only,
        cache: CacheMode::Unsafe,
        discard_unmap: true,
        backing: None,
        lock: false,
    }
}

/// A small valid image with data, zero clusters and a compressed cluster; 512-byte clusters.
fn base_image(dir: &Path) -> Vec<u8> {
    let img = dir.join("base.qcow2");
    qcow2::create(
        &img,
        &CreateOptions {
            size: 256 << 10,
            cluster_bits: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut q = qcow2::Qcow2::open(&img, &o(false)).unwrap();
    let mut rng = Rng::new(5);
    let data = pattern(&mut rng, 64 << 10);
    block::BlockBackend::write_at(&mut q, &data, 4096).unwrap();
    q.write_compressed(300, &[7u8; 512]).unwrap();
    block::BlockBackend::write_zeroes(&mut q, 8192, 1024, false).unwrap();
    drop(q);
    std::fs::read(&img).unwrap()
}

struct Case<'a> {
    dir: &'a Path,
    n: usize,
}

impl Case<'_> {
    /// Writes `bytes` and opens read-only and read-write; returns both results' errors as text.
    fn open(&mut self, bytes: &[u8]) -> (Result<(), String>, Result<(), String>) {
        self.n += 1;
        let p = self.dir.join(format!("m{}.qcow2", self.n));
        std::fs::write(&p, bytes).unwrap();
        let mut res = Vec::new();
        for ro in [true, false] {
            let r = block::open(&p, &o(ro)).map(|mut d| {
                // Reads over the whole disk must not panic either (they may fail).
                let size = d.size();
                let mut buf = vec![0u8; 4096];
                let mut off = 0;
                while off < size.min(1 << 20) {
                    let n = (size - off).min(4096) as usize;
                    let _ = d.read_at(&mut buf[..n], off);
                    off += 4096;
                }
            });
            res.push(r.map_err(|e| {
                let msg = e.to_string();
                assert!(
                    msg.contains(p.to_str().unwrap()),
                    "error names the file: {msg}"
                );
                msg
            }));
        }
        let rw = res.pop().unwrap();
        (res.pop().unwrap(), rw)
    }

    fn expect_err(&mut self, what: &str, bytes: &[u8], needle: &str) {
        let (ro, rw) = self.open(bytes);
        let e = ro
            .err()
            .unwrap_or_else(|| panic!("{what}: read-only open must fail"));
        assert!(
            e.contains(needle),
            "{what}: '{e}' should mention '{needle}'"
        );
        assert!(rw.is_err(), "{what}: read-write open must fail");
    }
}

#[test]
fn malformed_headers_and_tables_are_errors() {
    let dir = tempdir();
    let dir = dir.path();
    let base = base_image(dir);
    let mut c = Case { dir, n: 0 };
    assert_eq!(c.open(&base), (Ok(()), Ok(())), "base image is fine");
    let l1_off = be64(&base, 40) as usize;
    let rt_off = be64(&base, 48) as usize;
    let eof = base.len() as u64;

    // Truncation anywhere: errors or (past the metadata) zero reads, never a panic.
    for len in [
        0,
        3,
        4,
        50,
        71,
        72,
        100,
        104,
        111,
        200,
        511,
        512,
        1000,
        1536,
        2048,
        base.len() / 2,
        base.len() - 1,
    ] {
        let (ro, _) = c.open(&base[..len]);
        if len < 104 {
            assert!(ro.is_err(), "truncated to {len}");
        }
    }

    let mut b = base.clone();
    put64(&mut b, 24, 1 << 62);
    c.expect_err("huge size", &b, "too small");
    put64(&mut b, 24, u64::MAX);
    c.expect_err("size 2^64-1", &b, "too large");

    let mut b = base.clone();
    put32(&mut b, 36, 0x7fff_ffff);
    c.expect_err("L1 size bomb", &b, "L1 table");
    put32(&mut b, 36, 4 << 20);
    c.expect_err("L1 larger than the file", &b, "L1 table");

    for (what, off) in [
        ("L1 past EOF", eof + 512),
        ("L1 misaligned", l1_off as u64 + 8),
        ("L1 in header", 0),
    ] {
        let mut b = base.clone();
        put64(&mut b, 40, off);
        c.expect_err(what, &b, "L1 table");
    }

    for bits in [0u32, 8, 22, 63, 200] {
        let mut b = base.clone();
        put32(&mut b, 20, bits);
        c.expect_err("cluster bits", &b, "cluster_bits");
    }
    for v in [0u32, 1, 4] {
        let mut b = base.clone();
        put32(&mut b, 4, v);
        c.expect_err("version", &b, "version");
    }
    let mut b = base.clone();
    put32(&mut b, 32, 1);
    c.expect_err("encryption", &b, "encryption");
    for (bit, needle) in [
        (2, "external data file"),
        (4, "extended L2"),
        (20, "bit 20"),
    ] {
        let mut b = base.clone();
        put64(&mut b, 72, 1 << bit);
        c.expect_err("incompatible feature", &b, needle);
    }
    for hl in [7u32, 1_000_000, 96] {
        let mut b = base.clone();
        put32(&mut b, 100, hl);
        c.expect_err("header length", &b, "header_length");
    }
    let mut b = base.clone();
    put32(&mut b, 96, 7);
    c.expect_err("refcount order", &b, "refcount_order");
    let mut b = base.clone();
    put64(&mut b, 8, 100_000);
    put32(&mut b, 16, 10);
    c.expect_err("backing name outside header", &b, "backing file name");
    let mut b = base.clone();
    put32(&mut b, 60, 1_000_000);
    put64(&mut b, 64, 512);
    c.expect_err("snapshot count", &b, "snapshots");
    put32(&mut b, 60, 3);
    put64(&mut b, 64, eof + 4096);
    c.expect_err("snapshot table past EOF", &b, "snapshot table");

    // Marked corrupt: readable, not writable.
    let mut b = base.clone();
    put64(&mut b, 72, 2);
    let (ro, rw) = c.open(&b);
    assert!(ro.is_ok());
    assert!(rw.unwrap_err().contains("marked corrupt"));

    // Refcount structures: only needed (and so only checked) for writing.
    for (what, off, clusters) in [
        ("refcount table in header", 0u64, 1u32),
        ("refcount table past EOF", eof + 512, 1),
        ("refcount table misaligned", rt_off as u64 + 8, 1),
        ("refcount table too large", rt_off as u64, 0x00ff_ffff),
    ] {
        let mut b = base.clone();
        put64(&mut b, 48, off);
        put32(&mut b, 56, clusters);
        let (ro, rw) = c.open(&b);
        assert!(ro.is_ok(), "{what}: reads don't need refcounts");
        assert!(rw.unwrap_err().contains("refcount table"), "{what}");
    }
    for (what, entry) in [
        ("refcount block in header", 0x1000_0000_0000_0000u64 >> 60),
        ("refcount block past EOF", eof + 512),
        ("refcount block overlapping the table", rt_off as u64),
        ("refcount block misaligned", 512 + 3),
    ] {
        let mut b = base.clone();
        put64(&mut b, rt_off, entry);
        let (_, rw) = c.open(&b);
        assert!(rw.unwrap_err().contains("refcount"), "{what}");
    }

    // L1/L2 entries.
    let l2_off = (be64(&base, l1_off) & 0x00ff_ffff_ffff_fe00) as usize;
    assert!(l2_off != 0);
    let mut b = base.clone();
    put64(&mut b, l1_off, eof + 512);
    c.expect_err("L2 table past EOF", &b, "L2 table");
    let mut b = base.clone();
    put64(&mut b, l1_off, be64(&base, l1_off) | 2);
    c.expect_err("L1 reserved bits", &b, "reserved");
    // A loop: the L1 entry names the L1 table as its L2 table.
    let mut b = base.clone();
    put64(&mut b, l1_off, l1_off as u64 | (1 << 63));
    let p = dir.join("loop.qcow2");
    std::fs::write(&p, &b).unwrap();
    let mut d = block::open(&p, &o(false)).unwrap();
    let err = d.read_at(&mut [0u8; 512], 0).unwrap_err();
    assert!(
        matches!(err, BlockError::Corrupt { .. }) && err.to_string().contains("overlaps"),
        "{err}"
    );
    assert!(d.write_at(&[1u8; 512], 0).is_err());
    drop(d);

    // Data cluster past EOF, into the header, into the L1 table; garbage compressed data.
    let guest_c = 4096 / 512;
    for (what, entry) in [
        ("data past EOF", (eof + 1024) | (1 << 63)),
        ("data on the L1 table", l1_off as u64 | (1 << 63)),
        ("compressed garbage", (1 << 62) | (512 * 3 + 17)),
        ("reserved bits", (l1_off as u64) | 0x10),
    ] {
        let mut b = base.clone();
        put64(&mut b, l2_off + guest_c * 8, entry);
        let p = dir.join("entry.qcow2");
        std::fs::write(&p, &b).unwrap();
        let mut d = block::open(&p, &o(false)).unwrap();
        let mut buf = [0u8; 512];
        let r = d.read_at(&mut buf, 4096);
        let w = d.write_at(&[9u8; 512], 4096);
        assert!(
            r.is_err() || w.is_err(),
            "{what}: must not be used silently"
        );
        if let Err(e) = &w {
            assert!(e.to_string().contains("corrupt"), "{what}: {e}");
        }
    }
    // Zero flag in a v2 image.
    let mut b = base.clone();
    put32(&mut b, 4, 2);
    put64(
        &mut b,
        l2_off + guest_c * 8,
        be64(&base, l2_off + guest_c * 8) | 1,
    );
    let p = dir.join("v2zero.qcow2");
    std::fs::write(&p, &b).unwrap();
    let mut d = block::open(&p, &o(true)).unwrap();
    assert!(d
        .read_at(&mut [0u8; 512], 4096)
        .unwrap_err()
        .to_string()
        .contains("zero flag"));
    drop(d);

    // Dirty image whose tables are broken: the repair fails cleanly.
    let mut b = base.clone();
    put64(&mut b, 72, 1);
    put64(&mut b, l2_off + guest_c * 8, ((eof + 1) << 20) | (1 << 63));
    let (_, rw) = c.open(&b);
    assert!(rw.unwrap_err().contains("past the end"));
}

#[test]
fn backing_loops_are_errors() {
    let dir = tempdir();
    let dir = dir.path();
    let a = dir.join("a.qcow2");
    let b = dir.join("b.qcow2");
    // a -> b -> a
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        s(&a),
        "1M",
    ]);
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "a.qcow2",
        "-F",
        "qcow2",
        s(&b),
        "1M",
    ]);
    for ro in [true, false] {
        let e = block::open(&a, &o(ro)).err().expect("a backing loop");
        assert!(
            e.to_string().contains("loop") || e.to_string().contains("locked"),
            "{e}"
        );
    }
    // Itself as backing file, with locking (as a VM would open it): the lock catches it at once.
    let c = dir.join("c.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "c.qcow2",
        "-F",
        "qcow2",
        s(&c),
        "1M",
    ]);
    let mut lo = o(false);
    lo.lock = true;
    assert!(block::open(&c, &lo).is_err());
    // A missing backing file names both files.
    let m = dir.join("m.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "gone.raw",
        "-F",
        "raw",
        s(&m),
        "1M",
    ]);
    let e = block::open(&m, &o(true)).err().unwrap().to_string();
    assert!(e.contains("gone.raw") && e.contains("m.qcow2"), "{e}");
}

/// Random damage to the metadata of a valid image, through the fuzz target's entry point.
#[test]
fn mutation_fuzz_corpus() {
    let iters: u64 = std::env::var("IRONVIRT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    let seed = seed("mutation_fuzz");
    let dir = tempdir();
    let base = base_image(dir.path());
    let mut rng = Rng::new(seed);
    let interesting = [
        0u64,
        1,
        511,
        512,
        513,
        4096,
        base.len() as u64,
        u64::MAX,
        1 << 62,
        1 << 63,
    ];
    let mut opened = 0;
    for i in 0..iters {
        let mut b = base.clone();
        for _ in 0..=rng.below(4) {
            let pos = match rng.below(3) {
                0 => rng.below(112),
                1 => rng.below(8192.min(b.len() as u64)),
                _ => rng.below(b.len() as u64),
            } as usize;
            match rng.below(3) {
                0 => b[pos] ^= 1 << rng.below(8),
                1 => b[pos] = rng.next() as u8,
                _ => {
                    let pos = pos & !7;
                    if pos + 8 <= b.len() {
                        let v = interesting[rng.below(interesting.len() as u64) as usize];
                        b[pos..pos + 8].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
        }
        if rng.below(10) == 0 {
            b.truncate(rng.below(b.len() as u64) as usize);
        }
        if qcow2_open_and_io(&b) {
            opened += 1;
        }
        if i % 500 == 0 {
            eprintln!("mutation {i}: {opened} opened so far");
        }
    }
    eprintln!("{iters} mutated images, {opened} opened");
}
