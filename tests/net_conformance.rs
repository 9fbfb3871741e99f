//! Every network document from libvirt 10.7.0's test suite defines in a fresh store, and what
//! `net-dumpxml` then prints validates against libvirt's network schema (virt-xml-validate).

use std::path::{Path, PathBuf};
use std::process::Command;

use ironvirt_mgmt::network::Networks;
use ironvirt_mgmt::store::Env;
use ironvirt_mgmt::uri::Scope;

fn network_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/libvirt-10.7.0/network");
    assert!(
        dir.is_dir(),
        "libvirt conformance data not found at {}",
        dir.display()
    );
    dir
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_conformance_network_defines_and_dumps_valid_xml() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(network_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "expected libvirt's network test files");
    let scratch =
        Scratch(std::env::temp_dir().join(format!("ironvirt-netconf-{}", std::process::id())));
    let have_validator = Command::new("virt-xml-validate")
        .arg("--help")
        .output()
        .is_ok();
    let mut failures = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // A fresh store per document: many of them are called "default" or use virbr0.
        let env = Env {
            root: Some(scratch.0.join(i.to_string())),
            is_root: true,
            ..Env::default()
        };
        let nets = Networks::open(&env.paths(Scope::System)).unwrap();
        nets.undefine("default").unwrap();
        let xml = std::fs::read_to_string(path).unwrap();
        let r = match nets.define(&xml) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: define: {e}"));
                continue;
            }
        };
        let dumped = nets.lookup(&r.name).unwrap().def.to_xml();
        // Everything the document had is still there (the driver only adds).
        let original = ironvirt_mgmt::xml::tree::parse(&xml).unwrap();
        for child in original.root.elements() {
            if child.name != "uuid" && !dumped.contains(&format!("<{}", child.name)) {
                failures.push(format!("{name}: <{}> lost in net-dumpxml", child.name));
            }
        }
        if have_validator {
            let out_path = scratch.0.join(format!("{i}.xml"));
            std::fs::write(&out_path, &dumped).unwrap();
            let out = Command::new("virt-xml-validate")
                .arg(&out_path)
                .arg("network")
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{name}: net-dumpxml does not validate: {}\n{dumped}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
