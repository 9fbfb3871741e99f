//! libvirt's own pool and volume test documents: every one parses, survives a round trip and,
//! as we write it back, validates with `virt-xml-validate` against libvirt's schemas.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironvirt_mgmt::storage::{PoolDef, VolDef};

fn conformance(sub: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/conformance/libvirt-10.7.0")
        .join(sub);
    assert!(
        dir.is_dir(),
        "libvirt conformance data not found at {}",
        dir.display()
    );
    dir
}

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    out.sort();
    out
}

/// `virt-xml-validate FILE KIND` on `xml`; the error text when it fails.
fn validate(xml: &str, kind: &str, scratch: &Path) -> Result<(), String> {
    let f = scratch.join(format!("doc-{kind}.xml"));
    std::fs::write(&f, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&f)
        .arg(kind)
        .output()
        .map_err(|e| format!("cannot run virt-xml-validate (libvirt-clients): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironvirt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn libvirt_pool_and_volume_documents_round_trip_and_validate() {
    let tmp = scratch("storage-xml");
    let mut failures = Vec::new();
    let mut count = 0;
    for (kind, dirs) in [
        ("storagepool", vec![conformance("pool")]),
        (
            "storagevol",
            vec![conformance("vol"), conformance("vol/examples")],
        ),
    ] {
        for dir in dirs {
            for path in xml_files(&dir) {
                count += 1;
                let name = path.display().to_string();
                let bytes = std::fs::read(&path).unwrap();
                let (xml, same) = if kind == "storagepool" {
                    match PoolDef::parse_bytes(&bytes) {
                        Ok(p) => {
                            let xml = p.to_xml();
                            let again = PoolDef::parse(&xml)
                                .map(|a| a.document().root.same_content(&p.document().root));
                            (xml, again)
                        }
                        Err(e) => {
                            failures.push(format!("{name}: parse: {e}"));
                            continue;
                        }
                    }
                } else {
                    match VolDef::parse_bytes(&bytes) {
                        Ok(v) => {
                            let xml = v.to_xml();
                            let again = VolDef::parse(&xml)
                                .map(|a| a.document().root.same_content(&v.document().root));
                            (xml, again)
                        }
                        Err(e) => {
                            failures.push(format!("{name}: parse: {e}"));
                            continue;
                        }
                    }
                };
                match same {
                    Ok(true) => {}
                    Ok(false) => failures.push(format!("{name}: changed in round trip:\n{xml}")),
                    Err(e) => failures.push(format!("{name}: reparse: {e}")),
                }
                if let Err(e) = validate(&xml, kind, &tmp) {
                    failures.push(format!("{name}: our output does not validate: {e}"));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(count > 60, "expected libvirt's pool and vol test files");
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What define stores (normalized) is still a valid pool document.
#[test]
fn normalized_pools_validate() {
    let tmp = scratch("storage-norm");
    for path in xml_files(&conformance("pool")) {
        let mut p = PoolDef::parse_bytes(&std::fs::read(&path).unwrap()).unwrap();
        p.normalize();
        if let Err(e) = validate(&p.to_xml(), "storagepool", &tmp) {
            panic!(
                "{}: normalized form invalid: {e}\n{}",
                path.display(),
                p.to_xml()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
