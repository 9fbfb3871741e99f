//! `ironvirt img create|info` against qemu-img (the oracle) on the same images: the same
//! "Formatting …" line, the same info text and JSON, and `qemu-img check` is happy.

mod cli;
mod support;

use std::path::Path;
use std::process::Command;

use cli::*;

fn run_in(dir: &Path, cmd: &mut Command) -> (bool, String) {
    let out = cmd.current_dir(dir).output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn img_create_and_info_agree_with_qemu_img() {
    let h = Host::new("storage-img");
    let ours = h.dir.join("ours");
    let qemu = h.dir.join("qemu");
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&qemu).unwrap();
    let abs_base = ours.join("a.qcow2");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-f", "qcow2", "a.qcow2", "1G"], "a.qcow2"),
        (vec!["-f", "raw", "r.img", "10M"], "r.img"),
        (
            vec!["-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2"],
            "b.qcow2",
        ),
        (
            vec!["-f", "qcow2", "-o", "compat=0.10", "c.qcow2", "5M"],
            "c.qcow2",
        ),
        (
            vec![
                "-f",
                "qcow2",
                "-o",
                "cluster_size=4096,lazy_refcounts=on",
                "d.qcow2",
                "3G",
            ],
            "d.qcow2",
        ),
        (
            vec!["-f", "raw", "-o", "preallocation=falloc", "e.img", "1M"],
            "e.img",
        ),
        (
            vec![
                "-f",
                "qcow2",
                "-o",
                "preallocation=metadata",
                "f.qcow2",
                "64M",
            ],
            "f.qcow2",
        ),
    ]
    .into_iter()
    .map(|(a, f)| (a.into_iter().map(String::from).collect(), f))
    .collect();
    for (args, file) in &cases {
        let mut ic = h.command();
        ic.arg("img").arg("create").arg("--").args(args);
        let (ok, a) = run_in(&ours, &mut ic);
        assert!(ok, "ironvirt img create {args:?}: {a}");
        let (ok, b) = run_in(&qemu, Command::new("qemu-img").arg("create").args(args));
        assert!(ok, "qemu-img create {args:?}: {b}");
        assert_eq!(a, b, "create {args:?}");
        for dir in [&ours, &qemu] {
            for json in [false, true] {
                let mut ic = h.command();
                ic.args(["img", "info"]);
                let mut qc = Command::new("qemu-img");
                qc.args(["info", "-U"]);
                if json {
                    ic.args(["--output", "json"]);
                    qc.args(["--output", "json"]);
                }
                let (ok, a) = run_in(dir, ic.arg(file));
                assert!(ok, "ironvirt img info {file}: {a}");
                let (_, b) = run_in(dir, qc.arg(file));
                assert_eq!(a, b, "info {file} (json {json}) in {}", dir.display());
            }
        }
        if file.ends_with("qcow2") {
            let (ok, out) = run_in(&ours, Command::new("qemu-img").args(["check", file]));
            assert!(ok, "qemu-img check {file}: {out}");
        }
    }
    // A raw file of an odd length reads as whole sectors.
    std::fs::write(ours.join("odd.img"), vec![7u8; 1000]).unwrap();
    let mut ic = h.command();
    let (_, a) = run_in(&ours, ic.args(["img", "info", "odd.img"]));
    let (_, b) = run_in(
        &ours,
        Command::new("qemu-img").args(["info", "-U", "odd.img"]),
    );
    assert_eq!(a, b);
    // An absolute path shows its backing file's actual path, like qemu-img.
    let mut ic = h.command();
    ic.args([
        "img",
        "info",
        abs_base.parent().unwrap().join("b.qcow2").to_str().unwrap(),
    ]);
    let (_, a) = run_in(&ours, &mut ic);
    let (_, b) = run_in(
        &ours,
        Command::new("qemu-img").args(["info", "-U", ours.join("b.qcow2").to_str().unwrap()]),
    );
    assert_eq!(a, b);
    assert!(a.contains("(actual path: "), "{a}");
}

#[test]
fn img_convert_and_resize_agree_with_qemu_img() {
    let h = Host::new("storage-img-convert");
    let d = &h.dir;
    // A raw disk with data, holes and a compressible run.
    let mut data = vec![0u8; 8 << 20];
    for (i, b) in data[..1 << 20].iter_mut().enumerate() {
        *b = (i * 31 % 253) as u8;
    }
    data[5 << 20..6 << 20].fill(0x5a);
    std::fs::write(d.join("src.img"), &data).unwrap();
    let img = |args: &[&str]| {
        let mut c = h.command();
        let (ok, out) = run_in(d, c.arg("img").arg("--").args(args));
        assert!(ok, "ironvirt img {args:?}: {out}");
        out
    };
    let qemu = |args: &[&str]| {
        let (ok, out) = run_in(d, Command::new("qemu-img").args(args));
        assert!(ok, "qemu-img {args:?}: {out}");
        out
    };
    img(&["convert", "-f", "raw", "-O", "qcow2", "src.img", "a.qcow2"]);
    img(&["convert", "-O", "qcow2", "-c", "src.img", "c.qcow2"]);
    img(&["convert", "-f", "qcow2", "-O", "raw", "c.qcow2", "back.img"]);
    for f in ["a.qcow2", "c.qcow2"] {
        qemu(&["check", f]);
        qemu(&["compare", "src.img", f]);
    }
    assert!(std::fs::read(d.join("back.img")).unwrap() == data);
    // Compression made the compressible image smaller than the plain one.
    let len = |f: &str| std::fs::metadata(d.join(f)).unwrap().len();
    assert!(
        len("c.qcow2") < len("a.qcow2"),
        "{} >= {}",
        len("c.qcow2"),
        len("a.qcow2")
    );

    assert_eq!(img(&["resize", "a.qcow2", "+56M"]), "Image resized.\n");
    assert_eq!(img(&["resize", "src.img", "16M"]), "Image resized.\n");
    qemu(&["check", "a.qcow2"]);
    for (f, size) in [("a.qcow2", 64u64 << 20), ("src.img", 16 << 20)] {
        let info = qemu(&["info", "--output", "json", f]);
        assert!(
            info.contains(&format!("\"virtual-size\": {size},")),
            "{f}: {info}"
        );
    }
    qemu(&["compare", "a.qcow2", "src.img"]);

    // Internal snapshots (made by qemu-img) are listed the way qemu-img lists them.
    qemu(&["snapshot", "-c", "first", "a.qcow2"]);
    qemu(&["snapshot", "-c", "a-much-longer-snapshot-name", "a.qcow2"]);
    for args in [
        &["snapshot", "-l", "a.qcow2"][..],
        &["info", "a.qcow2"][..],
        &["info", "--output", "json", "a.qcow2"][..],
    ] {
        let ours = img(args);
        let mut q = vec![args[0], "-U"];
        q.extend(&args[1..]);
        assert_eq!(ours, qemu(&q), "{args:?}");
    }
    assert!(img(&["snapshot", "-l", "a.qcow2"]).contains("a-much-longer-snapshot-name"));

    let mut c = h.command();
    let (ok, out) = run_in(d, c.args(["img", "resize", "src.img", "1M"]));
    assert!(!ok && out.contains("Use the --shrink option"), "{out}");
}
