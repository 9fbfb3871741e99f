//! `ironvirt img create|info` against qemu-img (the oracle) on the same images: the same
//! "Formatting …" line, the same info text and JSON, and `qemu-img check` is happy.

mod cli;
mod oracle;
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
        let fmt = if file.ends_with("qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        oracle::agrees(&h, &ours.join(file), fmt, None);
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
        oracle::agrees(&h, &d.join(f), "qcow2", Some(8 << 20));
        qemu(&["compare", "src.img", f]);
    }
    oracle::agrees(&h, &d.join("back.img"), "raw", Some(8 << 20));
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
    oracle::agrees(&h, &d.join("a.qcow2"), "qcow2", Some(64 << 20));
    oracle::agrees(&h, &d.join("src.img"), "raw", Some(16 << 20));
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

/// Big-endian field `len` bytes wide at `off` of a file.
fn be_at(path: &Path, off: u64, len: usize) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b[8 - len..], off)
        .unwrap();
    u64::from_be_bytes(b)
}

fn poke(path: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, off)
        .unwrap();
}

/// Damages a fresh 64 MiB qcow2 image (3 MiB of data at 0, one cluster at 10 MiB) the way the
/// case names: a leaked cluster, a refcount bumped or cleared, an L2 entry past the end of the
/// file or misaligned.
fn damage(path: &Path, case: &str) {
    let l1 = be_at(path, 40, 8);
    let reftable = be_at(path, 48, 8);
    let refblock = be_at(path, reftable, 8) & !511;
    let l2 = be_at(path, l1, 8) & 0x00ff_ffff_ffff_fe00;
    let cs = 65536u64;
    match case {
        "clean" => {}
        "leak" => {
            let len = std::fs::metadata(path).unwrap().len();
            let c = len.div_ceil(cs);
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len((c + 1) * cs)
                .unwrap();
            poke(path, refblock + 2 * c, &1u16.to_be_bytes());
        }
        "bump" => {
            let v = be_at(path, refblock + 14, 2) as u16;
            poke(path, refblock + 14, &(v + 1).to_be_bytes());
        }
        "zero" => poke(path, refblock + 14, &0u16.to_be_bytes()),
        "eof" => poke(path, l2 + 7 * 8, &((1u64 << 63) | (1 << 40)).to_be_bytes()),
        "misalign" => {
            let e = be_at(path, l2, 8);
            poke(path, l2, &(e + 512).to_be_bytes());
        }
        other => panic!("unknown damage {other}"),
    }
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn img_check_agrees_with_qemu_img() {
    let h = Host::new("storage-img-check");
    let d = &h.dir;
    let qemu = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let ours = |args: &[&str]| {
        let mut c = h.command();
        c.current_dir(d).args(["img", "--"]).args(args);
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let theirs = |args: &[&str]| {
        let o = Command::new("qemu-img")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Problems go to stderr (qemu-img's lines verbatim); a final error line is prefixed by the
    // program's name, which differs.
    let problems = |s: &str| {
        sorted_lines(
            &s.lines()
                .filter(|l| !l.starts_with("qemu-img: ") && !l.starts_with("error: "))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
    };
    let expect = [
        ("clean", 0),
        ("leak", 3),
        ("bump", 2),
        ("zero", 2),
        ("eof", 2),
        ("misalign", 2),
    ];
    for (case, code) in expect {
        let f = format!("{case}.qcow2");
        qemu(&["qemu-img", "create", "-q", "-f", "qcow2", &f, "64M"]);
        qemu(&[
            "qemu-io",
            "-c",
            "write -P 0x55 0 3M",
            "-c",
            "write 10M 64k",
            &f,
        ]);
        damage(&d.join(&f), case);
        for output in ["human", "json"] {
            let a = ours(&["check", "--output", output, &f]);
            let b = theirs(&["check", "--output", output, &f]);
            assert_eq!(a.0, code, "{case} {output}: {a:?}");
            assert_eq!((a.0, &a.1), (b.0, &b.1), "{case} {output}");
            assert_eq!(problems(&a.2), problems(&b.2), "{case} {output}");
        }
        for repair in ["leaks", "all"] {
            let (mine, qemus) = (format!("ours-{repair}-{f}"), format!("qemu-{repair}-{f}"));
            std::fs::copy(d.join(&f), d.join(&mine)).unwrap();
            std::fs::copy(d.join(&f), d.join(&qemus)).unwrap();
            let a = ours(&["check", "-r", repair, &mine]);
            let b = theirs(&["check", "-r", repair, &qemus]);
            assert_eq!(a.0, b.0, "{case} -r {repair}: {a:?} vs {b:?}");
            if !(case == "zero" && repair == "all") {
                // Rebuilding the refcount structure moves it elsewhere than QEMU does.
                assert_eq!(a.1.replace(&mine, &qemus), b.1, "{case} -r {repair}");
                assert_eq!(problems(&a.2), problems(&b.2), "{case} -r {repair}");
            }
            // What our repair left is what QEMU's repair left, in qemu-img's own eyes.
            let after = theirs(&["check", &mine]);
            assert_eq!(after.0, theirs(&["check", &qemus]).0, "{case} -r {repair}");
            assert_eq!(after.0, ours(&["check", &mine]).0, "{case} -r {repair}");
        }
    }
    // Compressed clusters and internal snapshots are references too.
    qemu(&[
        "qemu-img",
        "convert",
        "-c",
        "-O",
        "qcow2",
        "clean.qcow2",
        "z.qcow2",
    ]);
    qemu(&["qemu-img", "snapshot", "-c", "s1", "z.qcow2"]);
    qemu(&["qemu-io", "-c", "write -P 0x11 1M 128k", "z.qcow2"]);
    for output in ["human", "json"] {
        let a = ours(&["check", "--output", output, "z.qcow2"]);
        assert_eq!(a, theirs(&["check", "--output", output, "z.qcow2"]));
        assert!(a.1.contains("compressed"), "{a:?}");
    }
    // raw has nothing to check: qemu-img's status 63.
    qemu(&["qemu-img", "create", "-q", "-f", "raw", "r.img", "1M"]);
    let a = ours(&["check", "r.img"]);
    assert_eq!(a.0, 63);
    assert_eq!(a.2, "error: This image format does not support checks\n");
    assert_eq!(theirs(&["check", "r.img"]).0, 63);
    let a = ours(&["check", "missing.qcow2"]);
    assert_eq!(a.0, 1, "{a:?}");
    assert!(a.2.contains("missing.qcow2"), "{a:?}");
}

/// `img convert -p` prints qemu-img's progress lines; `vol-upload`/`vol-download` draw virsh's job
/// bar on stderr only when it is a terminal (run under `script`, which gives the command a pty).
#[test]
fn progress_bars() {
    let h = Host::new("storage-img-progress");
    let d = &h.dir;
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("src.img"), &data).unwrap();
    let mut c = h.command();
    let (ok, out) = run_in(
        d,
        c.args([
            "img", "--", "convert", "-p", "-O", "qcow2", "src.img", "p.qcow2",
        ]),
    );
    assert!(ok, "{out}");
    assert!(out.starts_with("    (0.00/100%)\r"), "{out:?}");
    assert!(
        out.ends_with("    (100.00/100%)\r    (100.00/100%)\r\n"),
        "{out:?}"
    );
    assert!(out.contains("    (33.33/100%)\r"), "{out:?}");
    let pool = d.join("pool");
    for args in [
        &[
            "pool-define-as",
            "p",
            "dir",
            "--target",
            pool.to_str().unwrap(),
        ][..],
        &["pool-build", "p"],
        &["pool-start", "p"],
        &["vol-create-as", "p", "v.img", "3M", "--format", "raw"],
    ] {
        h.run(args).ok();
    }
    // Not a terminal: only what the command printed before bars existed (its blank line).
    let plain = h
        .run(&[
            "vol-upload",
            "v.img",
            d.join("src.img").to_str().unwrap(),
            "--pool",
            "p",
        ])
        .ok();
    assert_eq!((plain.stdout.as_str(), plain.stderr.as_str()), ("\n", ""));
    // On a terminal: the bar, ending at 100 % and a newline.
    let bin = env!("CARGO_BIN_EXE_ironvirt");
    let on_tty = |cmd: String| {
        let mut s = Command::new("script");
        s.args(["-qec", &cmd, "/dev/null"]).current_dir(d);
        for (k, v) in h.command().get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        let o = s.output().expect("running script(1)");
        assert!(o.status.success(), "{cmd}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let up = on_tty(format!("{bin} vol-upload v.img src.img --pool p"));
    assert!(
        up.starts_with("\rUpload: [ 0.00 %]\rUpload: [33.33 %]"),
        "{up:?}"
    );
    assert!(up.contains("\rUpload: [100.00 %]\r\n"), "{up:?}");
    let down = on_tty(format!("{bin} vol-download v.img back.img --pool p"));
    assert!(down.starts_with("\rDownload: [ 0.00 %]"), "{down:?}");
    assert!(down.contains("\rDownload: [100.00 %]\r\n"), "{down:?}");
    assert!(std::fs::read(d.join("back.img")).unwrap() == data);
    let plain = h
        .run(&[
            "vol-download",
            "v.img",
            d.join("back2.img").to_str().unwrap(),
            "--pool",
            "p",
        ])
        .ok();
    assert_eq!((plain.stdout.as_str(), plain.stderr.as_str()), ("\n", ""));
}

/// `vol-wipe --algorithm`: scrub's patterns written by us (the last fixed pass is what stays),
/// trim and unknown names refused as libvirt and virsh refuse them.
#[test]
fn vol_wipe_algorithms() {
    let h = Host::new("storage-img-wipe");
    let pool = h.dir.join("pool");
    for args in [
        &[
            "pool-define-as",
            "w",
            "dir",
            "--target",
            pool.to_str().unwrap(),
        ][..],
        &["pool-build", "w"],
        &["pool-start", "w"],
        &["vol-create-as", "w", "v.img", "2M", "--format", "raw"],
    ] {
        h.run(args).ok();
    }
    std::fs::write(pool.join("v.img"), vec![0x42u8; 2 << 20]).unwrap();
    for (alg, last) in [("dod", 0xffu8), ("bsi", 0x7f), ("schneier", 0x42)] {
        let r = h
            .run(&["vol-wipe", "v.img", "--pool", "w", "--algorithm", alg])
            .ok();
        assert_eq!(r.stdout, "Vol v.img wiped\n\n");
        let data = std::fs::read(pool.join("v.img")).unwrap();
        assert_eq!(data.len(), 2 << 20);
        if alg == "schneier" {
            // Ends with random passes: no trace of the earlier fixed pattern is left.
            assert!(data.iter().filter(|b| **b == 0x7f).count() < data.len() / 16);
        } else {
            assert!(data.iter().all(|b| *b == last), "{alg}");
        }
    }
    let r = h
        .run(&["vol-wipe", "v.img", "--pool", "w", "--algorithm", "trim"])
        .fails();
    assert_eq!(
        r.stderr,
        "error: Failed to wipe vol v.img\nerror: argument unsupported: 'trim' algorithm not supported\n"
    );
    let r = h
        .run(&["vol-wipe", "v.img", "--pool", "w", "--algorithm", "bogus"])
        .fails();
    assert_eq!(r.stderr, "error: Unsupported algorithm 'bogus'\n");
}
