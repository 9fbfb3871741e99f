//! libvirt's own domain test documents: every valid one must parse, survive a round trip unchanged
//! and still validate against libvirt's schema after we write it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironvirt_mgmt::xml::Domain;

fn conformance_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/libvirt-10.7.0");
    assert!(
        dir.is_dir(),
        "libvirt conformance data not found at {}: the repository expects a copy of shared/ \
         next to its checkout (shared/conformance/libvirt-10.7.0)",
        dir.display()
    );
    dir
}

/// All *.xml files under `dir`, recursively, skipping `invalid/`, sorted for stable output.
fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "invalid") {
                continue;
            }
            xml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
    out.sort();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn valid_domains_parse_and_round_trip() {
    let dir = conformance_dir().join("domain");
    let mut files = Vec::new();
    xml_files(&dir, &mut files);
    assert!(
        files.len() > 100,
        "expected libvirt's domain test files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let domain = match Domain::parse_bytes(&read(path)) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        let xml = domain.to_xml();
        match Domain::parse(&xml) {
            Ok(again) if again.document().root.same_content(&domain.document().root) => {}
            Ok(_) => failures.push(format!("{name}: tree changed in round trip:\n{xml}")),
            Err(e) => failures.push(format!("{name}: reparse of our output: {e}\n{xml}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn our_output_validates_against_libvirt_schema() {
    let validator = Path::new("/usr/bin/virt-xml-validate");
    if !validator.exists() {
        eprintln!("skipping: {} is not installed", validator.display());
        return;
    }
    let dir = conformance_dir().join("domain");
    let mut files = Vec::new();
    xml_files(&dir, &mut files);
    let out_dir = std::env::temp_dir().join(format!("ironvirt-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("create temp dir");
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let Ok(domain) = Domain::parse_bytes(&read(path)) else {
            failures.push(format!("{name}: does not parse (see the round-trip test)"));
            continue;
        };
        let out = out_dir.join(name.replace('/', "__"));
        std::fs::write(&out, domain.to_xml()).expect("write temp file");
        let result = Command::new(validator).arg(&out).arg("domain").output();
        match result {
            Ok(o) if o.status.success() => {}
            Ok(o) => failures.push(format!(
                "{name}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => failures.push(format!("{name}: cannot run virt-xml-validate: {e}")),
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(
        failures.is_empty(),
        "{} of {} files fail schema validation:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// libvirt's negative tests: every one is refused, with libvirt's own message where it comes from
/// semantic validation.
#[test]
fn invalid_domains() {
    let dir = conformance_dir().join("domain/invalid");
    let expect_rejected = [
        "boot-dev+order.xml",
        "broken-xml-invalid.xml",
        "cpuset-invalid.xml",
        "no-memory.xml",
        "serial-unix-missing-source.xml",
        "disk-address-conflict.xml",
        "disk-missing-target-invalid.xml",
        "disk-same-targets.xml",
        "pci-function-invalid.xml",
        "pci-slot-invalid.xml",
    ];
    let expect_accepted: [&str; 0] = [];
    for name in expect_rejected {
        let err = Domain::parse_bytes(&read(&dir.join(name)))
            .expect_err(&format!("{name} should be rejected"));
        let libvirt = std::fs::read_to_string(dir.join(name.replace(".xml", ".x86_64-latest.err")))
            .unwrap_or_default();
        // Where libvirt's message comes from semantic validation, ours is the same text.
        if name != "broken-xml-invalid.xml" {
            assert_eq!(err.to_string(), libvirt.trim(), "{name}");
        }
    }
    for name in expect_accepted {
        assert!(
            Domain::parse_bytes(&read(&dir.join(name))).is_ok(),
            "{name}: now rejected; move it to expect_rejected"
        );
    }
}

/// Starting any of libvirt's documents either works or is refused with a libvirt-style message;
/// never a panic or an unclassified error. Also pins how many of them we can run today.
#[test]
fn launch_accepts_or_refuses_cleanly() {
    let dir = conformance_dir().join("domain");
    let mut files = Vec::new();
    xml_files(&dir, &mut files);
    let mut runnable = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let Ok(domain) = Domain::parse_bytes(&read(path)) else {
            continue;
        };
        match ironvirt_mgmt::launch::vm_config(&domain) {
            Ok(_) => runnable.push(name),
            Err(e) => {
                let m = e.to_string();
                assert!(
                    m.starts_with("unsupported configuration: ")
                        || m.starts_with("invalid argument: "),
                    "{name}: {m}"
                );
            }
        }
    }
    eprintln!("runnable today: {runnable:?}");
}
