//! XML fidelity through the management layer: every domain document of libvirt's test suite
//! defines, and what `dumpxml --inactive` gives back keeps everything the input had and validates
//! against libvirt's schema; every invalid one is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironvirt_mgmt::driver::{Connection, UndefineFlags};
use ironvirt_mgmt::store::Env;
use ironvirt_mgmt::uri::ConnectUri;
use ironvirt_mgmt::xml::tree;

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/libvirt-10.7.0/domain")
}

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "invalid") {
                xml_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
    out.sort();
}

/// Whether `out` has everything `inp` has: the same name, every attribute with the same value
/// (`id` on the root excepted: it is runtime state), and `inp`'s elements and non-blank text as an
/// ordered subsequence of `out`'s.
fn covers(out: &tree::Element, inp: &tree::Element, root: bool) -> bool {
    if out.name != inp.name {
        return false;
    }
    for (k, v) in &inp.attributes {
        if root && k == "id" {
            continue;
        }
        if out.attr(k) != Some(v.as_str()) {
            return false;
        }
    }
    let significant = |e: &tree::Element| -> Vec<tree::Node> {
        e.children
            .iter()
            .filter(|n| match n {
                tree::Node::Text(t) => !t.trim().is_empty(),
                tree::Node::Element(_) | tree::Node::CData(_) => true,
                _ => false,
            })
            .cloned()
            .collect()
    };
    let outs = significant(out);
    let mut i = 0;
    for n in significant(inp) {
        loop {
            let Some(o) = outs.get(i) else { return false };
            i += 1;
            let matched = match (&n, o) {
                (tree::Node::Element(a), tree::Node::Element(b)) => covers(b, a, false),
                (tree::Node::Text(a), tree::Node::Text(b)) => a.trim() == b.trim(),
                (tree::Node::CData(a), tree::Node::CData(b)) => a == b,
                _ => false,
            };
            if matched {
                break;
            }
        }
    }
    true
}

fn connection(test: &str) -> (Connection, PathBuf) {
    let root =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let env = Env {
        root: Some(root.clone()),
        is_root: true,
        ..Env::default()
    };
    let conn = Connection::open(ConnectUri::parse("ironvirt:///system").unwrap(), &env).unwrap();
    (conn, root)
}

#[test]
fn every_libvirt_domain_defines_and_dumps_back_valid_and_complete() {
    let dir = conformance();
    if !dir.exists() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let (conn, root) = connection("fidelity");
    let mut files = Vec::new();
    xml_files(&dir, &mut files);
    assert!(files.len() > 150, "{} files", files.len());
    let out_dir = root.join("dumped");
    std::fs::create_dir_all(&out_dir).unwrap();
    let validator = Command::new("virt-xml-validate")
        .arg("--help")
        .output()
        .is_ok();
    for (i, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        let r = conn
            .define(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let dumped = ironvirt_mgmt::driver::inactive_xml(r.inactive_def());
        // Everything the input had is still there, in order; the output may add what libvirt adds
        // at define time (a generated <uuid>, <mac> addresses, …).
        let input = tree::parse(&text).unwrap();
        let output = tree::parse(&dumped).unwrap();
        assert!(
            covers(&output.root, &input.root, true),
            "{}: dumpxml lost or changed content:\n{dumped}",
            path.display()
        );
        std::fs::write(out_dir.join(format!("{i:03}.xml")), &dumped).unwrap();
        conn.undefine(&r.name, UndefineFlags::default()).unwrap();
    }
    if !validator {
        eprintln!("virt-xml-validate missing: schema validation skipped");
        return;
    }
    for (i, path) in files.iter().enumerate() {
        let dumped = out_dir.join(format!("{i:03}.xml"));
        let o = Command::new("virt-xml-validate")
            .arg(&dumped)
            .arg("domain")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: dumpxml output does not validate: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn every_invalid_libvirt_domain_is_refused() {
    let dir = conformance().join("invalid");
    if !dir.exists() {
        return;
    }
    let (conn, _root) = connection("fidelity-invalid");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "xml") {
            continue;
        }
        n += 1;
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        let err = conn.define(&text).expect_err(&p.display().to_string());
        let expected =
            std::fs::read_to_string(p.with_extension("").with_extension("x86_64-latest.err"))
                .unwrap_or_default();
        if !p.ends_with("broken-xml-invalid.xml") {
            assert_eq!(err.to_string(), expected.trim(), "{}", p.display());
        }
    }
    assert_eq!(n, 10);
    assert!(conn.list().unwrap().is_empty());
}
