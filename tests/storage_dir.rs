//! The dir pool end to end through the `ironvirt` binary, as a new user would run it, with
//! qemu-img (the oracle, never used by ironvirt itself) checking every image we make.

mod cli;
mod support;

use std::path::Path;
use std::process::Command;

use cli::*;

/// `qemu-img check` passes and `qemu-img info` reports `virtual` bytes and `format`.
#[track_caller]
fn qemu_agrees(path: &Path, format: &str, virtual_size: u64) {
    if format == "qcow2" {
        let out = Command::new("qemu-img")
            .args(["check", "-U"])
            .arg(path)
            .output()
            .expect("qemu-img (qemu-utils) is needed as the test oracle");
        assert!(
            out.status.success(),
            "qemu-img check {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output", "json"])
        .arg(path)
        .output()
        .expect("qemu-img");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains(&format!("\"virtual-size\": {virtual_size},")),
        "{}: {info}",
        path.display()
    );
    assert!(
        info.contains(&format!("\"format\": \"{format}\"")),
        "{}: {info}",
        path.display()
    );
}

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
    qemu_agrees(&target.join("a.img"), "raw", 64 << 20);
    qemu_agrees(&target.join("b.qcow2"), "qcow2", 1 << 30);
    qemu_agrees(&target.join("c.qcow2"), "qcow2", 1 << 30);
    qemu_agrees(&target.join("d.qcow2"), "qcow2", 100 << 20);

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
    qemu_agrees(&target.join("c2.qcow2"), "qcow2", 1 << 30);
    assert_eq!(
        h.run(&["vol-resize", "a.img", "128M", "--pool", "p"])
            .ok()
            .stdout,
        "Size of volume 'a.img' successfully changed to 128M\n\n"
    );
    qemu_agrees(&target.join("a.img"), "raw", 128 << 20);
    h.run(&["vol-resize", "b.qcow2", "2G", "--pool", "p"]).ok();
    qemu_agrees(&target.join("b.qcow2"), "qcow2", 2 << 30);
    h.run(&["vol-resize", "d.qcow2", "50M", "--pool", "p", "--delta"])
        .ok();
    qemu_agrees(&target.join("d.qcow2"), "qcow2", 150 << 20);
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

#[test]
fn wipe_and_create_from() {
    let h = Host::new("storage-wipe");
    h.run(&["vol-create-as", "default", "src.img", "4M"]).ok();
    let path = h.run(&["vol-path", "src.img", "default"]).ok().stdout;
    let path = path.trim();
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
    let copy = Path::new(path).with_file_name("copy.qcow2");
    qemu_agrees(&copy, "qcow2", 4 << 20);
    let cmp = Command::new("qemu-img")
        .args(["compare", "-U", path])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );

    // Wiping leaves zeroes (raw) or an empty image (qcow2), both keeping their size.
    assert_eq!(
        h.run(&["vol-wipe", "src.img", "default"]).ok().stdout,
        "Vol src.img wiped\n\n"
    );
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len(), 4 << 20);
    assert!(bytes.iter().all(|b| *b == 0));
    h.run(&["vol-wipe", "copy.qcow2", "--pool", "default"]).ok();
    qemu_agrees(&copy, "qcow2", 4 << 20);
    let cmp = Command::new("qemu-img")
        .args(["compare", "-U", path])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    let e = h
        .run(&["vol-wipe", "src.img", "default", "--algorithm", "nnsa"])
        .fails()
        .stderr;
    assert!(e.contains("not supported"), "{e}");
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
