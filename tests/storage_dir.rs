//! The dir pool end to end through the `ironvirt` binary, as a new user would run it, with
//! qemu-img (the oracle, never used by ironvirt itself) checking every image we make.

mod cli;
mod oracle;
mod support;

use std::path::Path;
use std::process::Command;

use cli::*;
use oracle::vol_agrees;

#[test]
fn dir_pool_end_to_end() {
    let h = Host::new("storage-dir");
    let target = h.dir.join("pool");
    let t = target.to_str().unwrap();

    // The default pool exists on first use, active, autostarted, in the connection's images dir.
    let list = h.run(&["pool-list", "--all"]).ok().stdout;
    assert_eq!(
        list,
        " Name      State    Autostart\n-------------------------------\n default   active   yes\n\n"
    );

    assert_eq!(
        h.run(&["pool-define-as", "p", "dir", "--target", t])
            .ok()
            .stdout,
        "Pool p defined\n\n"
    );
    assert_eq!(h.run(&["pool-build", "p"]).ok().stdout, "Pool p built\n\n");
    assert!(target.is_dir());
    assert_eq!(
        h.run(&["pool-start", "p"]).ok().stdout,
        "Pool p started\n\n"
    );
    assert_eq!(
        h.run(&["pool-autostart", "p"]).ok().stdout,
        "Pool p marked as autostarted\n\n"
    );
    let info = h.run(&["pool-info", "p", "--bytes"]).ok().stdout;
    assert!(
        info.starts_with("Name:           p\nUUID:           "),
        "{info}"
    );
    assert!(
        info.contains(
            "State:          running\nPersistent:     yes\nAutostart:      yes\nCapacity:       "
        ),
        "{info}"
    );
    let cap: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Capacity:       "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(cap > 0, "{info}");
    let uuid = h.run(&["pool-uuid", "p"]).ok().stdout;
    assert_eq!(h.run(&["pool-name", uuid.trim()]).ok().stdout, "p\n\n");

    // Volumes: raw and qcow2, a backed qcow2, clone, resize.
    assert_eq!(
        h.run(&["vol-create-as", "p", "a.img", "64M"]).ok().stdout,
        "Vol a.img created\n\n"
    );
    h.run(&["vol-create-as", "p", "b.qcow2", "1G", "--format", "qcow2"])
        .ok();
    h.run(&[
        "vol-create-as",
        "p",
        "c.qcow2",
        "1G",
        "--format",
        "qcow2",
        "--backing-vol",
        "b.qcow2",
        "--backing-vol-format",
        "qcow2",
    ])
    .ok();
    h.run(&[
        "vol-create-as",
        "p",
        "d.qcow2",
        "100M",
        "--format",
        "qcow2",
        "--prealloc-metadata",
    ])
    .ok();
    vol_agrees(&h, "p", "a.img", "raw", 64 << 20);
    vol_agrees(&h, "p", "b.qcow2", "qcow2", 1 << 30);
    vol_agrees(&h, "p", "c.qcow2", "qcow2", 1 << 30);
    vol_agrees(&h, "p", "d.qcow2", "qcow2", 100 << 20);

    let vols = h.run(&["vol-list", "p"]).ok().stdout;
    assert!(vols.starts_with(" Name      Path"), "{vols}");
    assert!(
        vols.contains(&format!(" c.qcow2   {t}/c.qcow2\n")),
        "{vols}"
    );
    assert_eq!(
        h.run(&["vol-info", "b.qcow2", "--pool", "p"])
            .ok()
            .stdout
            .lines()
            .take(3)
            .collect::<Vec<_>>(),
        [
            "Name:           b.qcow2",
            "Type:           file",
            "Capacity:       1.00 GiB"
        ]
    );
    let xml = h.run(&["vol-dumpxml", "c.qcow2", "p"]).ok().stdout;
    assert!(
        xml.contains(&format!(
            "<backingStore>\n    <path>{t}/b.qcow2</path>\n    <format type='qcow2'/>"
        )),
        "{xml}"
    );
    let f = h.dir.join("vol.xml");
    std::fs::write(&f, &xml).unwrap();
    let v = Command::new("virt-xml-validate")
        .arg(&f)
        .arg("storagevol")
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let pxml = h.run(&["pool-dumpxml", "p"]).ok().stdout;
    std::fs::write(&f, &pxml).unwrap();
    let v = Command::new("virt-xml-validate")
        .arg(&f)
        .arg("storagepool")
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    assert_eq!(
        h.run(&["vol-path", "a.img", "--pool", "p"]).ok().stdout,
        format!("{t}/a.img\n\n")
    );
    let path = format!("{t}/a.img");
    assert_eq!(h.run(&["vol-name", &path]).ok().stdout, "a.img\n\n");
    assert_eq!(h.run(&["vol-pool", &path]).ok().stdout, "p\n\n");
    assert_eq!(
        h.run(&["vol-key", "a.img", "p"]).ok().stdout,
        format!("{path}\n\n")
    );

    // Upload and download round-trip a file byte for byte, also at an offset and sparsely.
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mut with_hole = data.clone();
    with_hole[1 << 20..2 << 20].fill(0);
    let src = h.dir.join("src.bin");
    std::fs::write(&src, &with_hole).unwrap();
    let src = src.to_str().unwrap();
    h.run(&[
        "vol-upload",
        "a.img",
        src,
        "--pool",
        "p",
        "--offset",
        "4096",
        "--sparse",
    ])
    .ok();
    let dst = h.dir.join("dst.bin");
    let dst_s = dst.to_str().unwrap();
    h.run(&[
        "vol-download",
        "a.img",
        dst_s,
        "--pool",
        "p",
        "--offset",
        "4096",
        "--length",
        &with_hole.len().to_string(),
        "--sparse",
    ])
    .ok();
    assert!(
        std::fs::read(&dst).unwrap() == with_hole,
        "download differs from upload"
    );
    // The volume keeps its size (upload writes into it, it does not truncate).
    assert_eq!(
        std::fs::metadata(target.join("a.img")).unwrap().len(),
        64 << 20
    );

    // Clone keeps the contents; resize grows raw and qcow2 and qemu-img agrees.
    assert_eq!(
        h.run(&["vol-clone", "a.img", "a2.img", "--pool", "p"])
            .ok()
            .stdout,
        "Vol a2.img cloned from a.img\n\n"
    );
    assert!(
        std::fs::read(target.join("a2.img")).unwrap()
            == std::fs::read(target.join("a.img")).unwrap()
    );
    h.run(&["vol-clone", "c.qcow2", "c2.qcow2", "--pool", "p"])
        .ok();
    vol_agrees(&h, "p", "c2.qcow2", "qcow2", 1 << 30);
    assert_eq!(
        h.run(&["vol-resize", "a.img", "128M", "--pool", "p"])
            .ok()
            .stdout,
        "Size of volume 'a.img' successfully changed to 128M\n\n"
    );
    vol_agrees(&h, "p", "a.img", "raw", 128 << 20);
    h.run(&["vol-resize", "b.qcow2", "2G", "--pool", "p"]).ok();
    vol_agrees(&h, "p", "b.qcow2", "qcow2", 2 << 30);
    h.run(&["vol-resize", "d.qcow2", "50M", "--pool", "p", "--delta"])
        .ok();
    vol_agrees(&h, "p", "d.qcow2", "qcow2", 150 << 20);
    let e = h
        .run(&["vol-resize", "a.img", "1M", "--pool", "p"])
        .fails()
        .stderr;
    assert!(
        e.contains(
            "Can't shrink capacity below current capacity unless shrink flag explicitly specified"
        ),
        "{e}"
    );

    // A file copied in by hand shows up with its probed format after a refresh.
    std::fs::copy(target.join("b.qcow2"), target.join("hand-made")).unwrap();
    h.run(&["pool-refresh", "p"]).ok();
    let xml = h.run(&["vol-dumpxml", "hand-made", "p"]).ok().stdout;
    assert!(xml.contains("<format type='qcow2'/>"), "{xml}");

    // Errors as virsh words them.
    let e = h.run(&["vol-info", "nope", "--pool", "p"]).fails().stderr;
    assert_eq!(e, "error: failed to get vol 'nope'\nerror: Storage volume not found: no storage vol with matching name 'nope'\n");
    let e = h.run(&["vol-create-as", "p", "a.img", "1M"]).fails().stderr;
    assert!(
        e.contains("storage volume name 'a.img' already in use."),
        "{e}"
    );
    let e = h.run(&["vol-create-as", "p", "x", "1Q"]).fails().stderr;
    assert_eq!(e, "error: Malformed size 1Q\n");

    // Delete, stop, undefine, delete the directory.
    for v in [
        "a.img",
        "a2.img",
        "b.qcow2",
        "c.qcow2",
        "c2.qcow2",
        "d.qcow2",
        "hand-made",
    ] {
        assert_eq!(
            h.run(&["vol-delete", v, "--pool", "p"]).ok().stdout,
            format!("Vol {v} deleted\n\n")
        );
    }
    assert_eq!(
        h.run(&["pool-destroy", "p"]).ok().stdout,
        "Pool p destroyed\n\n"
    );
    let e = h.run(&["vol-list", "p"]).fails().stderr;
    assert!(e.contains("storage pool 'p' is not active"), "{e}");
    let details = h.run(&["pool-list", "--all", "--details"]).ok().stdout;
    assert!(
        details.contains(" p         inactive   yes         yes          -"),
        "{details}"
    );
    assert_eq!(
        h.run(&["pool-delete", "p"]).ok().stdout,
        "Pool p deleted\n\n"
    );
    assert!(!target.exists());
    assert_eq!(
        h.run(&["pool-undefine", "p"]).ok().stdout,
        "Pool p has been undefined\n\n"
    );
    assert_eq!(
        h.run(&["pool-list", "--all", "--name"]).ok().stdout,
        "default\n\n"
    );
    let e = h.run(&["pool-info", "p"]).fails().stderr;
    assert_eq!(e, "error: failed to get pool 'p'\nerror: Storage pool not found: no storage pool with matching name 'p'\n");
}

/// `qemu-img compare` of two images says they hold the same disk contents.
#[track_caller]
fn same_contents(a: &Path, b: &Path) {
    let cmp = Command::new("qemu-img")
        .args(["compare", "-U"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{} vs {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&cmp.stdout),
        String::from_utf8_lossy(&cmp.stderr)
    );
}

fn allocation(h: &Host, pool: &str, vol: &str) -> u64 {
    let info = h
        .run(&["vol-info", vol, "--pool", pool, "--bytes"])
        .ok()
        .stdout;
    info.lines()
        .find_map(|l| l.strip_prefix("Allocation:"))
        .and_then(|v| v.trim().trim_end_matches(" bytes").parse().ok())
        .unwrap_or_else(|| panic!("{info}"))
}

/// Every way of making a volume, checked against qemu-img: libvirt's allocation rules
/// (an omitted allocation means fully allocated; qcow2 is preallocated only with
/// --prealloc-metadata: metadata below the capacity, falloc at it), compat 0.10 by default,
/// backing files, resize.
#[test]
fn every_created_volume_agrees_with_qemu_img() {
    let h = Host::new("storage-agree");
    let target = h.dir.join("pool");
    let t = target.to_str().unwrap();
    for args in [
        &["pool-define-as", "q", "dir", "--target", t][..],
        &["pool-build", "q"],
        &["pool-start", "q"],
    ] {
        h.run(args).ok();
    }
    let mib = 1u64 << 20;
    // raw: no --allocation = fully allocated; --allocation N reserves N.
    h.run(&["vol-create-as", "q", "full.img", "8M"]).ok();
    let q = vol_agrees(&h, "q", "full.img", "raw", 8 * mib);
    assert!(q.actual_size >= 8 * mib, "{}", q.json);
    h.run(&[
        "vol-create-as",
        "q",
        "sparse.img",
        "8M",
        "--allocation",
        "0",
    ])
    .ok();
    let q = vol_agrees(&h, "q", "sparse.img", "raw", 8 * mib);
    assert_eq!(q.actual_size, 0, "{}", q.json);
    h.run(&["vol-create-as", "q", "part.img", "8M", "--allocation", "2M"])
        .ok();
    let q = vol_agrees(&h, "q", "part.img", "raw", 8 * mib);
    assert!((2 * mib..8 * mib).contains(&q.actual_size), "{}", q.json);
    let e = h
        .run(&["vol-create-as", "q", "x.img", "1M", "--prealloc-metadata"])
        .fails()
        .stderr;
    assert!(
        e.contains("metadata preallocation is not supported for raw volumes"),
        "{e}"
    );

    // qcow2: compat 0.10 unless asked; no preallocation without the flag, whatever the
    // allocation says.
    h.run(&[
        "vol-create-as",
        "q",
        "plain.qcow2",
        "64M",
        "--format",
        "qcow2",
    ])
    .ok();
    let q = vol_agrees(&h, "q", "plain.qcow2", "qcow2", 64 * mib);
    assert_eq!(q.compat.as_deref(), Some("0.10"));
    assert!(q.actual_size < mib, "{}", q.json);
    h.run(&[
        "vol-create-as",
        "q",
        "alloc.qcow2",
        "64M",
        "--format",
        "qcow2",
        "--allocation",
        "64M",
    ])
    .ok();
    let q = vol_agrees(&h, "q", "alloc.qcow2", "qcow2", 64 * mib);
    assert!(q.actual_size < mib, "{}", q.json);
    h.run(&[
        "vol-create-as",
        "q",
        "meta.qcow2",
        "64M",
        "--format",
        "qcow2",
        "--allocation",
        "0",
        "--prealloc-metadata",
    ])
    .ok();
    let q = vol_agrees(&h, "q", "meta.qcow2", "qcow2", 64 * mib);
    assert!(q.actual_size < 8 * mib, "metadata only: {}", q.json);
    h.run(&[
        "vol-create-as",
        "q",
        "falloc.qcow2",
        "64M",
        "--format",
        "qcow2",
        "--prealloc-metadata",
    ])
    .ok();
    let q = vol_agrees(&h, "q", "falloc.qcow2", "qcow2", 64 * mib);
    assert!(q.actual_size >= 64 * mib, "falloc: {}", q.json);
    h.run(&[
        "vol-create-as",
        "q",
        "top.qcow2",
        "64M",
        "--format",
        "qcow2",
        "--backing-vol",
        "plain.qcow2",
        "--backing-vol-format",
        "qcow2",
    ])
    .ok();
    let q = vol_agrees(&h, "q", "top.qcow2", "qcow2", 64 * mib);
    assert_eq!(
        q.backing.as_deref(),
        Some(format!("{t}/plain.qcow2").as_str())
    );
    let e = h
        .run(&[
            "vol-create-as",
            "q",
            "x.qcow2",
            "64M",
            "--format",
            "qcow2",
            "--backing-vol",
            "plain.qcow2",
            "--prealloc-metadata",
        ])
        .fails()
        .stderr;
    assert!(
        e.contains("metadata preallocation conflicts with backing store"),
        "{e}"
    );
    // From XML: compat 1.1 with lazy refcounts and 4 KiB clusters.
    let xml = h.dir.join("v3.xml");
    std::fs::write(
        &xml,
        "<volume><name>v3.qcow2</name><capacity unit='M'>16</capacity><target><format type='qcow2'/>\
         <clusterSize unit='KiB'>4</clusterSize><features><lazy_refcounts/></features></target></volume>",
    )
    .unwrap();
    h.run(&["vol-create", "q", xml.to_str().unwrap()]).ok();
    let q = vol_agrees(&h, "q", "v3.qcow2", "qcow2", 16 * mib);
    assert_eq!(
        q.compat.as_deref(),
        Some("1.1"),
        "features imply compat 1.1"
    );
    assert_eq!(q.cluster_size, Some(4096));

    // Resize: raw grows sparse or allocated and shrinks with --shrink; qcow2 grows.
    h.run(&["vol-resize", "sparse.img", "16M", "--pool", "q"])
        .ok();
    let q = vol_agrees(&h, "q", "sparse.img", "raw", 16 * mib);
    assert_eq!(q.actual_size, 0, "{}", q.json);
    h.run(&["vol-resize", "part.img", "16M", "--pool", "q", "--allocate"])
        .ok();
    let q = vol_agrees(&h, "q", "part.img", "raw", 16 * mib);
    assert!(q.actual_size >= 10 * mib, "{}", q.json);
    h.run(&["vol-resize", "full.img", "4M", "--pool", "q", "--shrink"])
        .ok();
    vol_agrees(&h, "q", "full.img", "raw", 4 * mib);
    for v in ["plain.qcow2", "meta.qcow2", "top.qcow2", "v3.qcow2"] {
        h.run(&["vol-resize", v, "8M", "--pool", "q", "--delta"])
            .ok();
    }
    vol_agrees(&h, "q", "plain.qcow2", "qcow2", 72 * mib);
    vol_agrees(&h, "q", "meta.qcow2", "qcow2", 72 * mib);
    vol_agrees(&h, "q", "top.qcow2", "qcow2", 72 * mib);
    vol_agrees(&h, "q", "v3.qcow2", "qcow2", 24 * mib);
}

/// vol-clone and vol-create-from as libvirt 10.7 does them: conversions flatten (no backing
/// file), take the input's virtual size and compat 0.10 unless the XML says otherwise; raw to raw
/// honours capacity and allocation; the new volume holds the input's disk contents.
#[test]
fn clones_and_copies_agree_with_qemu_img() {
    let h = Host::new("storage-clone");
    let target = h.dir.join("pool");
    let t = target.to_str().unwrap();
    for args in [
        &["pool-define-as", "c", "dir", "--target", t][..],
        &["pool-build", "c"],
        &["pool-start", "c"],
        &["vol-create-as", "c", "base.img", "8M", "--allocation", "0"],
        &[
            "vol-create-as",
            "c",
            "top.qcow2",
            "8M",
            "--format",
            "qcow2",
            "--backing-vol",
            "base.img",
            "--backing-vol-format",
            "raw",
        ],
    ] {
        h.run(args).ok();
    }
    let mib = 1u64 << 20;
    // Data in the base (seen through the overlay) and in the overlay itself.
    let data: Vec<u8> = (0..mib as u32).map(|i| (i % 251) as u8 + 1).collect();
    let f = h.dir.join("data");
    std::fs::write(&f, &data).unwrap();
    h.run(&["vol-upload", "base.img", f.to_str().unwrap(), "--pool", "c"])
        .ok();
    let out = Command::new("qemu-io")
        .args(["-c", "write -P 0x77 4M 64k"])
        .arg(target.join("top.qcow2"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Clone of a backed qcow2: flattened, same contents, the input's compat and cluster size.
    assert_eq!(
        h.run(&["vol-clone", "top.qcow2", "flat.qcow2", "--pool", "c"])
            .ok()
            .stdout,
        "Vol flat.qcow2 cloned from top.qcow2\n\n"
    );
    let q = vol_agrees(&h, "c", "flat.qcow2", "qcow2", 8 * mib);
    assert_eq!(q.backing, None, "a clone is flattened: {}", q.json);
    assert_eq!(q.compat.as_deref(), Some("0.10"));
    same_contents(&target.join("top.qcow2"), &target.join("flat.qcow2"));
    // Only the clusters holding data are allocated (1 MiB + 64 KiB and the metadata).
    assert!(q.actual_size < 2 * mib, "{}", q.json);
    let e = h
        .run(&[
            "vol-clone",
            "top.qcow2",
            "x.qcow2",
            "--pool",
            "c",
            "--prealloc-metadata",
        ])
        .fails()
        .stderr;
    assert!(
        e.contains("metadata preallocation conflicts with backing store"),
        "{e}"
    );
    // --prealloc-metadata on an unbacked qcow2 whose allocation is below its capacity.
    h.run(&[
        "vol-clone",
        "flat.qcow2",
        "meta.qcow2",
        "--pool",
        "c",
        "--prealloc-metadata",
    ])
    .ok();
    let q = vol_agrees(&h, "c", "meta.qcow2", "qcow2", 8 * mib);
    assert!(q.actual_size < 4 * mib, "{}", q.json);
    same_contents(&target.join("flat.qcow2"), &target.join("meta.qcow2"));

    // Raw clone of a sparse raw volume stays sparse; --reflink needs a filesystem that shares
    // extents (the test directory's ext4 does not).
    h.run(&["vol-clone", "base.img", "base2.img", "--pool", "c"])
        .ok();
    let q = vol_agrees(&h, "c", "base2.img", "raw", 8 * mib);
    assert!(q.actual_size <= 2 * mib, "{}", q.json);
    assert!(
        std::fs::read(target.join("base2.img")).unwrap()
            == std::fs::read(target.join("base.img")).unwrap()
    );
    let r = h.run(&[
        "vol-clone",
        "base.img",
        "base3.img",
        "--pool",
        "c",
        "--reflink",
    ]);
    if r.status == 0 {
        assert!(
            std::fs::read(target.join("base3.img")).unwrap()
                == std::fs::read(target.join("base.img")).unwrap()
        );
    } else {
        assert!(
            r.stderr.contains("failed to clone files from"),
            "{}",
            r.stderr
        );
        assert!(
            !target.join("base3.img").exists(),
            "a failed clone leaves nothing"
        );
    }
    let e = h
        .run(&[
            "vol-clone",
            "top.qcow2",
            "x2.qcow2",
            "--pool",
            "c",
            "--reflink",
        ])
        .fails()
        .stderr;
    assert!(e.contains("--reflink copies only a raw volume"), "{e}");

    // vol-create-from: qcow2 (backed) into raw, with a larger capacity: the conversion keeps
    // the input's size, the bytes are the overlay's view.
    let xml = |name: &str, body: &str| {
        let p = h.dir.join(format!("{name}.xml"));
        std::fs::write(&p, format!("<volume><name>{name}</name>{body}</volume>")).unwrap();
        p
    };
    let x = xml(
        "out.img",
        "<capacity unit='M'>16</capacity><allocation>0</allocation><target><format type='raw'/></target>",
    );
    assert_eq!(
        h.run(&[
            "vol-create-from",
            "c",
            x.to_str().unwrap(),
            "top.qcow2",
            "--inputpool",
            "c"
        ])
        .ok()
        .stdout,
        format!("Vol out.img created from input vol top.qcow2\n\n")
    );
    vol_agrees(&h, "c", "out.img", "raw", 8 * mib);
    same_contents(&target.join("top.qcow2"), &target.join("out.img"));
    // raw into qcow2 with compat 1.1 from the XML, no capacity given.
    let x = xml(
        "v3.qcow2",
        "<target><format type='qcow2'/><compat>1.1</compat></target>",
    );
    h.run(&[
        "vol-create-from",
        "c",
        x.to_str().unwrap(),
        "out.img",
        "--inputpool",
        "c",
    ])
    .ok();
    let q = vol_agrees(&h, "c", "v3.qcow2", "qcow2", 8 * mib);
    assert_eq!(q.compat.as_deref(), Some("1.1"));
    same_contents(&target.join("out.img"), &target.join("v3.qcow2"));
    // raw into raw: the larger capacity and the (omitted = full) allocation are honoured.
    let x = xml("big.img", "<capacity unit='M'>12</capacity>");
    h.run(&[
        "vol-create-from",
        "c",
        x.to_str().unwrap(),
        "base.img",
        "--inputpool",
        "c",
    ])
    .ok();
    let q = vol_agrees(&h, "c", "big.img", "raw", 12 * mib);
    assert!(q.actual_size >= 12 * mib, "{}", q.json);
    let big = std::fs::read(target.join("big.img")).unwrap();
    assert!(big[..8 << 20] == std::fs::read(target.join("base.img")).unwrap()[..]);
    assert!(big[8 << 20..].iter().all(|b| *b == 0));
    // A backing store other than the input's is refused; the input's own is accepted and
    // dropped (the copy is flattened).
    let x = xml(
        "b1.qcow2",
        "<target><format type='qcow2'/></target><backingStore><path>base2.img</path><format type='raw'/></backingStore>",
    );
    let e = h
        .run(&[
            "vol-create-from",
            "c",
            x.to_str().unwrap(),
            "top.qcow2",
            "--inputpool",
            "c",
        ])
        .fails()
        .stderr;
    assert!(
        e.contains("a different backing store cannot be specified"),
        "{e}"
    );
    let x = xml(
        "b2.qcow2",
        &format!("<target><format type='qcow2'/></target><backingStore><path>{t}/base.img</path><format type='raw'/></backingStore>"),
    );
    h.run(&[
        "vol-create-from",
        "c",
        x.to_str().unwrap(),
        "top.qcow2",
        "--inputpool",
        "c",
    ])
    .ok();
    let q = vol_agrees(&h, "c", "b2.qcow2", "qcow2", 8 * mib);
    assert_eq!(q.backing, None);
    same_contents(&target.join("top.qcow2"), &target.join("b2.qcow2"));
}

/// vol-wipe (zero) as libvirt 10.7 does it: a sparse file is truncated and re-extended, any
/// other file is overwritten with zeroes and stays allocated; a qcow2 image is zeroed like any
/// file, header included, and is a raw volume of the file's length afterwards.
#[test]
fn wipe_and_create_from() {
    let h = Host::new("storage-wipe");
    h.run(&["vol-create-as", "default", "src.img", "4M"]).ok();
    let path = h.run(&["vol-path", "src.img", "default"]).ok().stdout;
    let path = Path::new(path.trim()).to_path_buf();
    std::fs::write(h.dir.join("data"), vec![0xa5u8; 1 << 20]).unwrap();
    h.run(&[
        "vol-upload",
        "src.img",
        h.dir.join("data").to_str().unwrap(),
        "default",
    ])
    .ok();

    // A qcow2 copy of a raw volume, from XML.
    let xml = h.dir.join("copy.xml");
    std::fs::write(
        &xml,
        "<volume><name>copy.qcow2</name><capacity unit='M'>4</capacity><target><format type='qcow2'/></target></volume>",
    )
    .unwrap();
    assert_eq!(
        h.run(&[
            "vol-create-from",
            "default",
            xml.to_str().unwrap(),
            "src.img",
            "--inputpool",
            "default"
        ])
        .ok()
        .stdout,
        "Vol copy.qcow2 created from input vol src.img\n\n"
    );
    let copy = path.with_file_name("copy.qcow2");
    vol_agrees(&h, "default", "copy.qcow2", "qcow2", 4 << 20);
    same_contents(&path, &copy);

    // A fully allocated raw volume: zeroes written over it, still allocated.
    let before = allocation(&h, "default", "src.img");
    assert!(before >= 4 << 20);
    assert_eq!(
        h.run(&["vol-wipe", "src.img", "default"]).ok().stdout,
        "Vol src.img wiped\n\n"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4 << 20);
    assert!(bytes.iter().all(|b| *b == 0));
    assert_eq!(allocation(&h, "default", "src.img"), before);
    vol_agrees(&h, "default", "src.img", "raw", 4 << 20);
    // A sparse raw volume: truncated and re-extended, nothing allocated.
    h.run(&[
        "vol-create-as",
        "default",
        "sp.img",
        "4M",
        "--allocation",
        "0",
    ])
    .ok();
    let sp = path.with_file_name("sp.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sp)
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &[9u8; 4096], 1 << 20))
        .unwrap();
    h.run(&["vol-wipe", "sp.img", "default"]).ok();
    assert!(std::fs::read(&sp).unwrap().iter().all(|b| *b == 0));
    let q = vol_agrees(&h, "default", "sp.img", "raw", 4 << 20);
    assert_eq!(q.actual_size, 0);
    // qcow2: the whole file is zeroed, header included: a raw volume of the file's length.
    let len = std::fs::metadata(&copy).unwrap().len();
    h.run(&["vol-wipe", "copy.qcow2", "--pool", "default"]).ok();
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), len);
    assert!(std::fs::read(&copy).unwrap().iter().all(|b| *b == 0));
    vol_agrees(&h, "default", "copy.qcow2", "raw", len);
}

#[test]
fn print_xml_and_pool_edit() {
    let h = Host::new("storage-edit");
    h.run(&["vol-create-as", "default", "b.img", "1M"]).ok();
    let images = h.run(&["pool-dumpxml", "default"]).ok().stdout;
    let dir = images
        .lines()
        .find_map(|l| l.trim().strip_prefix("<path>"))
        .and_then(|l| l.strip_suffix("</path>"))
        .unwrap()
        .to_string();
    let xml = h
        .run(&[
            "vol-create-as",
            "default",
            "x.qcow2",
            "1G",
            "--format",
            "qcow2",
            "--allocation",
            "10M",
            "--backing-vol",
            "b.img",
            "--backing-vol-format",
            "raw",
            "--print-xml",
        ])
        .ok()
        .stdout;
    assert_eq!(
        xml,
        format!(
            "<volume>\n  <name>x.qcow2</name>\n  <capacity>1073741824</capacity>\n  <allocation>10485760</allocation>\n  <target>\n    <format type='qcow2'/>\n  </target>\n  <backingStore>\n    <path>{dir}/b.img</path>\n    <format type='raw'/>\n  </backingStore>\n</volume>\n\n"
        )
    );
    // Nothing was created.
    assert!(h.run(&["vol-info", "x.qcow2", "default"]).fails().status == 1);

    let out = h
        .command()
        .env("EDITOR", "true")
        .args(["pool-edit", "default"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Pool default XML configuration not changed.\n\n"
    );
    let out = h
        .command()
        .env("EDITOR", "sed -i s/images/images2/")
        .args(["pool-edit", "default"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Pool default XML configuration edited.\n\n"
    );
    let inactive = h
        .run(&["pool-dumpxml", "--inactive", "default"])
        .ok()
        .stdout;
    assert!(inactive.contains("images2</path>"), "{inactive}");
    // The running pool keeps its live definition until restarted.
    let live = h.run(&["pool-dumpxml", "default"]).ok().stdout;
    assert!(live.contains(&format!("<path>{dir}</path>")), "{live}");
}

/// pool-refresh recognises the formats libvirt probes (images made by qemu-img, the oracle).
#[test]
fn refresh_probes_foreign_formats() {
    let h = Host::new("storage-probe");
    let xml = h.run(&["pool-dumpxml", "default"]).ok().stdout;
    let dir = xml
        .lines()
        .find_map(|l| l.trim().strip_prefix("<path>"))
        .and_then(|l| l.strip_suffix("</path>"))
        .unwrap()
        .to_string();
    for (fmt, file) in [("vmdk", "d.vmdk"), ("vdi", "d.vdi"), ("vpc", "d.vhd")] {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", fmt])
            .arg(Path::new(&dir).join(file))
            .arg("32M")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // An ISO 9660 image: the CD001 signature at 32769.
    let mut iso = vec![0u8; 64 << 10];
    iso[32769..32774].copy_from_slice(b"CD001");
    std::fs::write(Path::new(&dir).join("cd.iso"), &iso).unwrap();
    h.run(&["pool-refresh", "default"]).ok();
    for (file, fmt) in [
        ("d.vmdk", "vmdk"),
        ("d.vdi", "vdi"),
        ("d.vhd", "vpc"),
        ("cd.iso", "iso"),
    ] {
        let x = h.run(&["vol-dumpxml", file, "default"]).ok().stdout;
        assert!(
            x.contains(&format!("<format type='{fmt}'/>")),
            "{file}: {x}"
        );
    }
    for file in ["d.vmdk", "d.vdi"] {
        let info = h.run(&["vol-info", file, "default", "--bytes"]).ok().stdout;
        assert!(
            info.contains("Capacity:       33554432 bytes"),
            "{file}: {info}"
        );
    }
}
