//! qemu-img as the oracle for every image ironvirt makes (never used by ironvirt itself):
//! [`agrees`] checks one image with `qemu-img check` and compares `qemu-img info --output json`
//! with ours (`ironvirt img info --output json`) and, for a volume, with `vol-info --bytes` and
//! `vol-dumpxml` (capacity, allocation, format, backing file, cluster size, compat).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cli::Host;

/// What qemu-img says about an image, for the caller's own extra assertions.
#[derive(Debug, Clone)]
pub struct QemuInfo {
    pub json: Value,
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: u64,
    pub backing: Option<String>,
    pub cluster_size: Option<u64>,
    pub compat: Option<String>,
}

fn qemu_img(args: &[&str], path: &Path) -> (i32, String, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .arg(path)
        .output()
        .expect("qemu-img (qemu-utils) is needed as the test oracle");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `qemu-img info -U --output json` of `path`.
pub fn qemu_info(path: &Path) -> QemuInfo {
    let (code, out, err) = qemu_img(&["info", "-U", "--output", "json"], path);
    assert_eq!(code, 0, "qemu-img info {}: {err}", path.display());
    let json: Value = serde_json::from_str(&out).expect("qemu-img info JSON");
    let s = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    let n = |k: &str| json.get(k).and_then(Value::as_u64);
    QemuInfo {
        format: s("format").unwrap_or_default(),
        virtual_size: n("virtual-size").unwrap_or(0),
        actual_size: n("actual-size").unwrap_or(0),
        backing: s("full-backing-filename"),
        cluster_size: n("cluster-size"),
        compat: json
            .pointer("/format-specific/data/compat")
            .and_then(Value::as_str)
            .map(str::to_string),
        json,
    }
}

/// `qemu-img check` is clean (exit 0; raw: 63, "does not support checks") and ours agrees.
#[track_caller]
pub fn check_clean(h: &Host, path: &Path, format: &str) {
    let (code, out, err) = qemu_img(&["check", "-U"], path);
    let want = if format == "qcow2" { 0 } else { 63 };
    assert_eq!(code, want, "qemu-img check {}: {out}{err}", path.display());
    let ours = h
        .command()
        .args(["img", "check"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(
        ours.status.code(),
        Some(want),
        "ironvirt img check {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&ours.stderr)
    );
}

/// The image at `path` is a clean `format` image (of `virtual_size` bytes, when given) in
/// qemu-img's eyes, and `ironvirt img info --output json` says exactly what
/// `qemu-img info --output json` says.
#[track_caller]
pub fn agrees(h: &Host, path: &Path, format: &str, virtual_size: Option<u64>) -> QemuInfo {
    check_clean(h, path, format);
    let q = qemu_info(path);
    assert_eq!(q.format, format, "{}: {}", path.display(), q.json);
    if let Some(size) = virtual_size {
        assert_eq!(q.virtual_size, size, "{}: {}", path.display(), q.json);
    }
    let out = h
        .command()
        .args(["img", "info", "--output", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ironvirt img info {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Value = serde_json::from_slice(&out.stdout).expect("ironvirt img info JSON");
    assert_eq!(ours, q.json, "img info --output json of {}", path.display());
    q
}

/// [`agrees`], and the volume `name` in `pool` shows the same figures in `vol-info --bytes`
/// (capacity = virtual size, allocation = actual size) and `vol-dumpxml` (format, backing
/// path, cluster size, compat).
#[track_caller]
pub fn vol_agrees(h: &Host, pool: &str, name: &str, format: &str, virtual_size: u64) -> QemuInfo {
    let path = h.run(&["vol-path", name, "--pool", pool]).ok().stdout;
    let path = Path::new(path.trim());
    let q = agrees(h, path, format, Some(virtual_size));
    let info = h
        .run(&["vol-info", name, "--pool", pool, "--bytes"])
        .ok()
        .stdout;
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().trim_end_matches(" bytes").to_string())
            .unwrap_or_else(|| panic!("no {k} in vol-info:\n{info}"))
    };
    assert_eq!(
        field("Capacity:"),
        q.virtual_size.to_string(),
        "{name}: {info}"
    );
    assert_eq!(
        field("Allocation:"),
        q.actual_size.to_string(),
        "{name}: {info}"
    );
    let xml = h.run(&["vol-dumpxml", name, "--pool", pool]).ok().stdout;
    let target = xml
        .split("<backingStore>")
        .next()
        .expect("split yields at least one piece");
    assert!(
        target.contains(&format!("<format type='{format}'/>")),
        "{name}: {xml}"
    );
    match &q.backing {
        Some(b) => {
            let bpath = xml
                .split("<backingStore>")
                .nth(1)
                .and_then(|s| s.split("<path>").nth(1))
                .and_then(|s| s.split("</path>").next())
                .unwrap_or_else(|| panic!("{name}: no backing store in\n{xml}"));
            let want = if b.starts_with('/') {
                b.clone()
            } else {
                path.parent().unwrap().join(b).display().to_string()
            };
            assert_eq!(bpath, want, "{name}: {xml}");
        }
        None => assert!(!xml.contains("<backingStore>"), "{name}: {xml}"),
    }
    match q.cluster_size.filter(|_| format == "qcow2") {
        Some(cs) => assert!(
            xml.contains(&format!("<clusterSize unit='B'>{cs}</clusterSize>")),
            "{name}: {xml}"
        ),
        None => assert!(!xml.contains("<clusterSize"), "{name}: {xml}"),
    }
    if let Some(c) = &q.compat {
        assert!(
            xml.contains(&format!("<compat>{c}</compat>")),
            "{name}: {xml}"
        );
    }
    q
}
