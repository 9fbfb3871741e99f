//! Randomized differential test: read/write/discard/write-zeroes/flush on a qcow2 image and on a
//! plain byte mirror must agree at every step, across reopenings; qemu-img agrees at the end.
//!
//! Seeded (IRONVIRT_SEED, printed); IRONVIRT_DIFF_OPS raises the number of operations per
//! configuration (default 300).

mod common;

use common::*;
use ironvirt_devices::block::qcow2::{self, CreateOptions};
use ironvirt_devices::block::{BlockBackend, ImageFormat};

fn ops() -> usize {
    std::env::var("IRONVIRT_DIFF_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn check_random_read(rng: &mut Rng, d: &mut dyn BlockBackend, mirror: &[u8], ctx: &str) {
    let size = mirror.len() as u64;
    let off = rng.below(size);
    let len = (rng.below(200_000) + 1).min(size - off) as usize;
    let mut buf = vec![0u8; len];
    d.read_at(&mut buf, off).unwrap();
    assert_same(
        &format!("{ctx}: read {off}+{len}"),
        &buf,
        &mirror[off as usize..off as usize + len],
    );
}

#[derive(Clone, Copy, Debug)]
enum Extra {
    None,
    Backing,
    Snapshot,
    Lazy,
}

fn run(version: u32, bits: u32, extra: Extra, seed: u64) {
    let ctx = format!("v{version} cluster {} {extra:?}", 1u64 << bits);
    let dir = tempdir();
    let dir = dir.path();
    let mut rng =
        Rng::new(seed ^ (u64::from(version) << 40) ^ (u64::from(bits) << 32) ^ extra as u64);
    let size: u64 = 6 << 20;
    let img = dir.join("d.qcow2");
    let mut mirror = vec![0u8; size as usize];
    let mut backing = None;
    if let Extra::Backing = extra {
        let base = dir.join("base.qcow2");
        let raw = dir.join("base.raw");
        let data = pattern(&mut rng, (size / 2) as usize);
        write_file(&raw, &data);
        let o = format!(
            "compat={},cluster_size={}",
            if version == 2 { "0.10" } else { "1.1" },
            1u64 << bits
        );
        qemu_img_ok(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            &o,
            s(&raw),
            s(&base),
        ]);
        mirror[..data.len()].copy_from_slice(&data);
        backing = Some((base, ImageFormat::Qcow2));
    }
    qcow2::create(
        &img,
        &CreateOptions {
            size,
            version,
            cluster_bits: bits,
            backing,
            lazy_refcounts: matches!(extra, Extra::Lazy),
            ..Default::default()
        },
    )
    .unwrap();
    if let Extra::Snapshot = extra {
        let mut d = open_rw(&img, ImageFormat::Qcow2);
        let data = pattern(&mut rng, size as usize);
        d.write_at(&data, 0).unwrap();
        mirror.copy_from_slice(&data);
        drop(d);
        qemu_img_ok(&["snapshot", "-c", "s1", s(&img)]);
    }
    let snapshot_data = mirror.clone();
    let n = ops();
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    let mut log = Vec::new();
    for i in 0..n {
        let max = if rng.below(8) == 0 {
            1 << 20
        } else {
            3 << bits
        };
        log.push(random_op(&mut rng, d.as_mut(), &mut mirror, max));
        if log.len() > 8 {
            log.remove(0);
        }
        if i % 7 == 0 {
            check_random_read(
                &mut rng,
                d.as_mut(),
                &mirror,
                &format!("{ctx} op {i} after {log:?}"),
            );
        }
        if i % 97 == 96 {
            drop(d);
            check(&img, false);
            d = open_rw(&img, ImageFormat::Qcow2);
        }
    }
    assert_same(&format!("{ctx}: final"), &read_all(d.as_mut()), &mirror);
    drop(d);
    check(&img, false);
    let m = dir.join("m.raw");
    write_file(&m, &mirror);
    compare(&img, &m);
    if let Extra::Snapshot = extra {
        let out = dir.join("snap.raw");
        qemu_img_ok(&[
            "convert",
            "-l",
            "snapshot.name=s1",
            "-f",
            "qcow2",
            "-O",
            "raw",
            s(&img),
            s(&out),
        ]);
        assert_same(
            &format!("{ctx}: snapshot"),
            &std::fs::read(&out).unwrap(),
            &snapshot_data,
        );
    }
}

#[test]
fn differential_v3() {
    let seed = seed("differential_v3");
    for bits in [9, 12, 16] {
        for extra in [Extra::None, Extra::Backing, Extra::Snapshot, Extra::Lazy] {
            run(3, bits, extra, seed);
        }
    }
}

#[test]
fn differential_v2() {
    let seed = seed("differential_v2");
    for bits in [9, 12, 16] {
        for extra in [Extra::None, Extra::Backing, Extra::Snapshot] {
            run(2, bits, extra, seed);
        }
    }
}

#[test]
fn differential_2m_clusters() {
    let seed = seed("differential_2m");
    run(3, 21, Extra::Backing, seed);
    run(2, 21, Extra::None, seed);
}
