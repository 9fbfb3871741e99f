//! Oracle tests against qemu-img: images QEMU made are read and written through our backend, and
//! qemu-img then finds them clean and equal to a raw mirror. Images we create are checked by qemu-img.
//!
//! Matrix: version {2, 3} × cluster size {512, 4K, 64K, 2M} × {plain (+zero clusters), compressed
//! zlib, compressed zstd (v3), qcow2 backing, raw backing, preallocation metadata/falloc/full}, plus
//! internal snapshots, lazy refcounts and other refcount widths.

mod common;

use std::path::Path;

use common::*;
use ironvirt_devices::block::qcow2::{self, CreateOptions};
use ironvirt_devices::block::{self, BackingSpec, BlockBackend, ImageFormat, Preallocation};

const SIZE: usize = 8 << 20;
const CLUSTERS: [u64; 4] = [512, 4096, 65536, 2 << 20];

fn compat(version: u32) -> &'static str {
    if version == 2 {
        "compat=0.10"
    } else {
        "compat=1.1"
    }
}

/// Applies `write -P`-style edits with qemu-io and to the expected content.
fn qemu_edits(img: &Path, expected: &mut [u8], rng: &mut Rng, zero_ok: bool) {
    for k in 0..6u64 {
        let len = (rng.below(96) + 1) * 1024;
        let off = (rng.below(expected.len() as u64 - len) / 512) * 512;
        if zero_ok && k % 2 == 1 {
            qemu_io("qcow2", img, &format!("write -z {off} {len}"));
            expected[off as usize..(off + len) as usize].fill(0);
        } else {
            let byte = 0x40 + k as u8;
            qemu_io("qcow2", img, &format!("write -P {byte} {off} {len}"));
            expected[off as usize..(off + len) as usize].fill(byte);
        }
    }
}

/// Reads the image through our backend, runs random ops against a mirror, closes it, and has
/// qemu-img check and compare the result.
fn exercise(img: &Path, expected: Vec<u8>, rng: &mut Rng, ops: usize, what: &str) {
    let dir = img.parent().unwrap();
    let mut d = open_rw(img, ImageFormat::Qcow2);
    assert_same(
        &format!("{what}: initial read"),
        &read_all(d.as_mut()),
        &expected,
    );
    let mut mirror = expected;
    let max = 300_000;
    for _ in 0..ops {
        random_op(rng, d.as_mut(), &mut mirror, max);
    }
    assert_same(
        &format!("{what}: after ops"),
        &read_all(d.as_mut()),
        &mirror,
    );
    drop(d);
    let raw = dir.join("mirror.raw");
    write_file(&raw, &mirror);
    check(img, false);
    compare(img, &raw);
    // And once more through a fresh open.
    let mut d = open_ro(img, ImageFormat::Qcow2);
    assert_same(&format!("{what}: reopened"), &read_all(d.as_mut()), &mirror);
}

fn for_each(variant: &str, versions: &[u32], f: impl Fn(&Path, u32, u64, &mut Rng)) {
    let seed = seed(variant);
    for &v in versions {
        for &cs in &CLUSTERS {
            let dir = tempdir();
            let mut rng = Rng::new(seed ^ (u64::from(v) << 32) ^ cs);
            eprintln!("{variant}: v{v} cluster {cs}");
            f(dir.path(), v, cs, &mut rng);
        }
    }
}

#[test]
fn plain_and_zero_clusters() {
    for_each("plain", &[2, 3], |dir, v, cs, rng| {
        let raw = dir.join("src.raw");
        let img = dir.join("img.qcow2");
        let mut data = pattern(rng, SIZE);
        write_file(&raw, &data);
        let o = format!("{},cluster_size={cs}", compat(v));
        qemu_img_ok(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            &o,
            s(&raw),
            s(&img),
        ]);
        qemu_edits(&img, &mut data, rng, true);
        exercise(&img, data, rng, 60, &format!("plain v{v} cs{cs}"));
    });
}

fn compressed(kind: &str, versions: &[u32]) {
    for_each(
        &format!("compressed-{kind}"),
        versions,
        |dir, v, cs, rng| {
            let raw = dir.join("src.raw");
            let img = dir.join("img.qcow2");
            let data = pattern(rng, SIZE);
            write_file(&raw, &data);
            let mut o = format!("{},cluster_size={cs}", compat(v));
            if kind == "zstd" {
                o.push_str(",compression_type=zstd");
            }
            qemu_img_ok(&[
                "convert",
                "-c",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                &o,
                s(&raw),
                s(&img),
            ]);
            let info = qcow2::info(&img).unwrap();
            assert_eq!(info.compression_type.as_str(), kind);
            exercise(
                &img,
                data,
                rng,
                60,
                &format!("compressed {kind} v{v} cs{cs}"),
            );
        },
    );
}

#[test]
fn compressed_zlib() {
    compressed("zlib", &[2, 3]);
}

#[test]
fn compressed_zstd() {
    compressed("zstd", &[3]);
}

fn backing(fmt: ImageFormat) {
    for_each(&format!("backing-{fmt}"), &[2, 3], |dir, v, cs, rng| {
        let base_size = SIZE * 3 / 4;
        let base_data = pattern(rng, base_size);
        let src = dir.join("base.raw");
        write_file(&src, &base_data);
        let base = match fmt {
            ImageFormat::Raw => src.clone(),
            ImageFormat::Qcow2 => {
                let b = dir.join("base.qcow2");
                let o = format!("{},cluster_size={cs}", compat(v));
                qemu_img_ok(&[
                    "convert",
                    "-f",
                    "raw",
                    "-O",
                    "qcow2",
                    "-o",
                    &o,
                    s(&src),
                    s(&b),
                ]);
                b
            }
        };
        let img = dir.join("img.qcow2");
        let o = format!("{},cluster_size={cs}", compat(v));
        // A relative backing name: resolved against the overlay's directory.
        let name = base.file_name().unwrap().to_str().unwrap();
        qemu_img_ok(&[
            "create",
            "-f",
            "qcow2",
            "-o",
            &o,
            "-b",
            name,
            "-F",
            fmt.as_str(),
            s(&img),
            &SIZE.to_string(),
        ]);
        let mut data = base_data.clone();
        data.resize(SIZE, 0);
        qemu_edits(&img, &mut data, rng, v == 3);
        exercise(
            &img,
            data.clone(),
            rng,
            60,
            &format!("backing {fmt} v{v} cs{cs}"),
        );
        // The backing file is never written.
        let mut b = open_ro(&base, fmt);
        assert_same("backing untouched", &read_all(b.as_mut()), &base_data);
    });
}

#[test]
fn backing_qcow2() {
    backing(ImageFormat::Qcow2);
}

#[test]
fn backing_raw() {
    backing(ImageFormat::Raw);
}

fn prealloc(mode: &str) {
    for_each(&format!("prealloc-{mode}"), &[2, 3], |dir, v, cs, rng| {
        let img = dir.join("img.qcow2");
        let o = format!("{},cluster_size={cs},preallocation={mode}", compat(v));
        qemu_img_ok(&[
            "create",
            "-f",
            "qcow2",
            "-o",
            &o,
            s(&img),
            &SIZE.to_string(),
        ]);
        let mut data = vec![0u8; SIZE];
        qemu_edits(&img, &mut data, rng, v == 3);
        exercise(&img, data, rng, 40, &format!("prealloc {mode} v{v} cs{cs}"));
    });
}

#[test]
fn prealloc_metadata() {
    prealloc("metadata");
}

#[test]
fn prealloc_falloc() {
    prealloc("falloc");
}

#[test]
fn prealloc_full() {
    prealloc("full");
}

/// Clusters shared with an internal snapshot are copied on write; the snapshot keeps its data.
#[test]
fn internal_snapshots_preserved() {
    let seed = seed("snapshots");
    for v in [2, 3] {
        for cs in [512u64, 65536] {
            let dir = tempdir();
            let dir = dir.path();
            let mut rng = Rng::new(seed ^ cs ^ u64::from(v));
            let raw = dir.join("src.raw");
            let img = dir.join("img.qcow2");
            let data = pattern(&mut rng, SIZE);
            write_file(&raw, &data);
            let o = format!("{},cluster_size={cs}", compat(v));
            qemu_img_ok(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                &o,
                s(&raw),
                s(&img),
            ]);
            qemu_img_ok(&["snapshot", "-c", "snap1", s(&img)]);
            let info = qcow2::info(&img).unwrap();
            assert_eq!(info.snapshots.len(), 1);
            assert_eq!(info.snapshots[0].name, "snap1");
            exercise(
                &img,
                data.clone(),
                &mut rng,
                80,
                &format!("snapshot v{v} cs{cs}"),
            );
            // The snapshot still holds the original data.
            let out = dir.join("snap.raw");
            qemu_img_ok(&[
                "convert",
                "-l",
                "snapshot.name=snap1",
                "-f",
                "qcow2",
                "-O",
                "raw",
                s(&img),
                s(&out),
            ]);
            assert_same("snapshot content", &std::fs::read(&out).unwrap(), &data);
            assert_eq!(qcow2::info(&img).unwrap().snapshots, info.snapshots);
            // Deleting the snapshot with qemu-img leaves a clean image.
            qemu_img_ok(&["snapshot", "-d", "snap1", s(&img)]);
            check(&img, false);
        }
    }
}

#[test]
fn lazy_refcounts_and_refcount_widths() {
    let seed = seed("refcount-widths");
    for opt in [
        "lazy_refcounts=on",
        "refcount_bits=1",
        "refcount_bits=2",
        "refcount_bits=8",
        "refcount_bits=64",
    ] {
        let dir = tempdir();
        let dir = dir.path();
        let mut rng = Rng::new(seed);
        let raw = dir.join("src.raw");
        let img = dir.join("img.qcow2");
        let data = pattern(&mut rng, SIZE);
        write_file(&raw, &data);
        let o = format!("compat=1.1,cluster_size=4096,{opt}");
        qemu_img_ok(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            &o,
            s(&raw),
            s(&img),
        ]);
        exercise(&img, data, &mut rng, 80, opt);
        assert!(
            !qcow2::info(&img).unwrap().dirty,
            "{opt}: clean after close"
        );
    }
}

/// Images we create are accepted by qemu-img with the sizes and backing we asked for.
#[test]
fn created_images_pass_qemu_img() {
    let dir = tempdir();
    let dir = dir.path();
    let base = dir.join("base.raw");
    block::raw::create(&base, 3 << 20, Preallocation::Off).unwrap();
    for v in [2u32, 3] {
        for bits in [9u32, 12, 16, 21] {
            for pre in [
                Preallocation::Off,
                Preallocation::Metadata,
                Preallocation::Falloc,
                Preallocation::Full,
            ] {
                for with_backing in [false, true] {
                    if with_backing && pre != Preallocation::Off {
                        continue;
                    }
                    let img = dir.join(format!("c-{v}-{bits}-{pre:?}-{with_backing}.qcow2"));
                    let size = (5 << 20) + 512 * 3;
                    qcow2::create(
                        &img,
                        &CreateOptions {
                            size,
                            version: v,
                            cluster_bits: bits,
                            backing: with_backing
                                .then(|| (Path::new("base.raw").to_path_buf(), ImageFormat::Raw)),
                            preallocation: pre,
                            lazy_refcounts: v == 3 && bits == 16,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    check(&img, false);
                    let out = qemu_img_ok(&["info", "--output=json", s(&img)]);
                    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(j["virtual-size"], size, "{}", img.display());
                    assert_eq!(j["cluster-size"], 1u64 << bits);
                    assert_eq!(j["format"], "qcow2");
                    let compat = j["format-specific"]["data"]["compat"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(compat, if v == 2 { "0.10" } else { "1.1" });
                    if with_backing {
                        assert_eq!(j["backing-filename"], "base.raw");
                        assert_eq!(j["backing-filename-format"], "raw");
                    }
                    let info = qcow2::info(&img).unwrap();
                    assert_eq!(info.virtual_size, size);
                    assert_eq!(info.version, v);
                    assert_eq!(info.cluster_size, 1 << bits);
                    if pre == Preallocation::Full || pre == Preallocation::Falloc {
                        assert!(info.actual_size >= size, "{pre:?} allocates the data");
                    }
                    // Written through our backend, still clean and equal.
                    let mut rng = Rng::new(u64::from(bits) * 31 + u64::from(v));
                    let mut d = open_rw(&img, ImageFormat::Qcow2);
                    let mut mirror = read_all(d.as_mut());
                    for _ in 0..30 {
                        random_op(&mut rng, d.as_mut(), &mut mirror, 200_000);
                    }
                    drop(d);
                    let m = dir.join("m.raw");
                    write_file(&m, &mirror);
                    check(&img, false);
                    compare(&img, &m);
                }
            }
        }
    }
}

/// Compressed writes produce clusters QEMU reads back.
#[test]
fn compressed_writes_read_by_qemu() {
    for ct in [qcow2::CompressionType::Zlib, qcow2::CompressionType::Zstd] {
        for bits in [9u32, 16] {
            let dir = tempdir();
            let img = dir.path().join("c.qcow2");
            let size = 2 << 20;
            qcow2::create(
                &img,
                &CreateOptions {
                    size,
                    cluster_bits: bits,
                    compression_type: ct,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut rng = Rng::new(7);
            let data = pattern(&mut rng, size as usize);
            let mut q = qcow2::Qcow2::open(&img, &opts(ImageFormat::Qcow2)).unwrap();
            let cs = 1usize << bits;
            for (i, chunk) in data.chunks(cs).enumerate() {
                q.write_compressed(i as u64, chunk).unwrap();
            }
            // Overwrite part of a compressed cluster: it becomes a normal one.
            let mut mirror = data.clone();
            q.write_at(&[0xee; 100], 1000).unwrap();
            mirror[1000..1100].fill(0xee);
            assert_same("compressed readback", &read_all(&mut q), &mirror);
            drop(q);
            let m = dir.path().join("m.raw");
            write_file(&m, &mirror);
            check(&img, false);
            compare(&img, &m);
            let j: serde_json::Value =
                serde_json::from_slice(&qemu_img_ok(&["info", "--output=json", s(&img)]).stdout)
                    .unwrap();
            let actual = j["actual-size"].as_u64().unwrap();
            assert!(
                actual < size * 3 / 4,
                "{ct:?} {bits}: compressed image ({actual} bytes) is smaller than its data"
            );
        }
    }
}

/// `<backingStore>` overrides the header: the chain comes from the spec.
#[test]
fn backing_spec_overrides_header() {
    let dir = tempdir();
    let dir = dir.path();
    let a = dir.join("a.raw");
    let b = dir.join("b.raw");
    write_file(&a, &vec![0xaa; 1 << 20]);
    write_file(&b, &vec![0xbb; 1 << 20]);
    let img = dir.join("o.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&a),
        "-F",
        "raw",
        s(&img),
        "1M",
    ]);
    let mut o = opts(ImageFormat::Qcow2);
    o.read_only = true;
    let mut d = block::open(&img, &o).unwrap();
    let mut buf = [0u8; 4];
    d.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0xaa; 4]);
    o.backing = Some(BackingSpec {
        path: b.clone(),
        format: ImageFormat::Raw,
        backing: None,
    });
    let mut d = block::open(&img, &o).unwrap();
    d.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0xbb; 4]);
}

/// A three-level chain: qcow2 → qcow2 → raw, with each level's edits visible.
#[test]
fn backing_chain_three_levels() {
    let dir = tempdir();
    let dir = dir.path();
    let base = dir.join("base.raw");
    write_file(&base, &vec![1u8; 2 << 20]);
    let mid = dir.join("mid.qcow2");
    let top = dir.join("top.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&mid),
        "2M",
    ]);
    qemu_io("qcow2", &mid, "write -P 2 65536 65536");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        s(&top),
        "3M",
    ]);
    qemu_io("qcow2", &top, "write -P 3 100000 1000");
    let mut want = vec![1u8; 3 << 20];
    want[2 << 20..].fill(0);
    want[65536..131072].fill(2);
    want[100000..101000].fill(3);
    let mut d = open_rw(&top, ImageFormat::Qcow2);
    assert_same("chain", &read_all(d.as_mut()), &want);
    d.write_at(&[9; 70000], 60000).unwrap();
    want[60000..130000].fill(9);
    drop(d);
    let m = dir.join("m.raw");
    write_file(&m, &want);
    check(&top, false);
    check(&mid, false);
    compare(&top, &m);
}

/// The refcount table grows (512-byte clusters: one table cluster covers only 8 MiB).
#[test]
fn refcount_table_growth() {
    let dir = tempdir();
    let img = dir.path().join("g.qcow2");
    let size = 48u64 << 20;
    qcow2::create(
        &img,
        &CreateOptions {
            size,
            cluster_bits: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    let mut rng = Rng::new(3);
    let mut buf = vec![0u8; 1 << 20];
    let mut mirror = vec![0u8; size as usize];
    for i in 0..(size >> 20) {
        rng.fill(&mut buf);
        d.write_at(&buf, i << 20).unwrap();
        mirror[(i << 20) as usize..((i + 1) << 20) as usize].copy_from_slice(&buf);
    }
    assert_same("grown", &read_all(d.as_mut()), &mirror);
    drop(d);
    check(&img, false);
    let m = dir.path().join("m.raw");
    write_file(&m, &mirror);
    compare(&img, &m);
}

fn _assert_object_safe(_: &dyn BlockBackend) {}

/// Persistent bitmaps (an autoclear feature we don't maintain): reading keeps them; a writable open
/// clears the autoclear bit, as the spec requires, so QEMU knows they are stale. Nothing else changes.
#[test]
fn bitmaps_autoclear_cleared_on_write() {
    let dir = tempdir();
    let img = dir.path().join("bm.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", s(&img), "4M"]);
    qemu_img_ok(&["bitmap", "--add", s(&img), "b0"]);
    qemu_io("qcow2", &img, "write -P 1 0 64k");
    let autoclear =
        |p: &Path| u64::from_be_bytes(std::fs::read(p).unwrap()[88..96].try_into().unwrap());
    assert_eq!(autoclear(&img), 1);
    drop(open_ro(&img, ImageFormat::Qcow2));
    assert_eq!(autoclear(&img), 1, "read-only opens leave the image alone");
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    d.write_at(&[2; 4096], 65536).unwrap();
    drop(d);
    assert_eq!(autoclear(&img), 0);
    check(&img, true);
    let mut want = vec![0u8; 4 << 20];
    want[..65536].fill(1);
    want[65536..65536 + 4096].fill(2);
    let m = dir.path().join("m.raw");
    write_file(&m, &want);
    compare(&img, &m);
}

/// An image left dirty (lazy refcounts) with wrong refcounts is repaired on a writable open.
#[test]
fn dirty_image_refcounts_rebuilt() {
    let dir = tempdir();
    let img = dir.path().join("dirty.qcow2");
    let raw = dir.path().join("src.raw");
    let mut rng = Rng::new(11);
    let data = pattern(&mut rng, 4 << 20);
    write_file(&raw, &data);
    qemu_img_ok(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "lazy_refcounts=on,cluster_size=4096",
        s(&raw),
        s(&img),
    ]);
    qemu_img_ok(&["snapshot", "-c", "s", s(&img)]);
    // Wreck the refcounts: zero the first refcount block, and set the dirty bit.
    let mut b = std::fs::read(&img).unwrap();
    let rt = u64::from_be_bytes(b[48..56].try_into().unwrap()) as usize;
    let rb = u64::from_be_bytes(b[rt..rt + 8].try_into().unwrap()) as usize;
    b[rb..rb + 4096].fill(0);
    b[79] |= 1;
    std::fs::write(&img, &b).unwrap();
    assert!(qcow2::info(&img).unwrap().dirty);
    // Reading needs no repair.
    assert_same(
        "dirty read",
        &read_all(open_ro(&img, ImageFormat::Qcow2).as_mut()),
        &data,
    );
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    let mut mirror = data.clone();
    for _ in 0..50 {
        random_op(&mut rng, d.as_mut(), &mut mirror, 100_000);
    }
    drop(d);
    assert!(!qcow2::info(&img).unwrap().dirty);
    check(&img, false);
    let m = dir.path().join("m.raw");
    write_file(&m, &mirror);
    compare(&img, &m);
    let out = dir.path().join("snap.raw");
    qemu_img_ok(&[
        "convert",
        "-l",
        "snapshot.name=s",
        "-f",
        "qcow2",
        "-O",
        "raw",
        s(&img),
        s(&out),
    ]);
    assert_same(
        "snapshot after repair",
        &std::fs::read(&out).unwrap(),
        &data,
    );
}
