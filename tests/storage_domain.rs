//! Volumes as disks of running domains: `<disk type='volume'>` resolves at start, and a volume (or
//! pool) in use is not deleted (or stopped) under the guest.

mod cli;
mod support;

use std::time::Duration;

use cli::*;

#[test]
fn volume_disk_resolves_at_start_and_is_protected_while_running() {
    let h = Host::new("storage-domain");
    let kernel = service_guest(&h.dir, "READY\n");
    h.run(&[
        "vol-create-as",
        "default",
        "root.qcow2",
        "16M",
        "--format",
        "qcow2",
    ])
    .ok();
    let path = h
        .run(&["vol-path", "root.qcow2", "--pool", "default"])
        .ok()
        .stdout;
    let path = path.trim().to_string();
    let xml = domain_xml("withvol", &kernel, 1).replace(
        "  </devices>",
        "    <disk type='volume' device='disk'>\n      <source pool='default' volume='root.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>",
    );
    let f = h.dir.join("withvol.xml");
    std::fs::write(&f, xml).unwrap();
    h.run(&["define", f.to_str().unwrap()]).ok();

    // An inactive pool cannot serve the disk.
    h.run(&["pool-destroy", "default"]).ok();
    let e = h.run(&["start", "withvol"]).fails().stderr;
    assert!(
        e.contains("storage pool 'default' containing volume 'root.qcow2' is not active"),
        "{e}"
    );
    h.run(&["pool-start", "default"]).ok();

    h.run(&["start", "withvol"]).ok();
    h.wait_state("withvol", "running (booted)", Duration::from_secs(10));
    let blk = h.run(&["domblklist", "withvol"]).ok().stdout;
    assert!(blk.contains(&path), "{blk}");

    let e = h
        .run(&["vol-delete", "root.qcow2", "--pool", "default"])
        .fails()
        .stderr;
    assert!(e.contains("is in use by a running domain"), "{e}");
    let e = h.run(&["pool-destroy", "default"]).fails().stderr;
    assert!(e.contains("has volumes in use by running domains"), "{e}");

    h.run(&["destroy", "withvol"]).ok();
    // The persistent definition still names the volume, not the file.
    let x = h.run(&["dumpxml", "withvol", "--inactive"]).ok().stdout;
    assert!(
        x.contains("<source pool='default' volume='root.qcow2'/>"),
        "{x}"
    );
    h.run(&["vol-delete", "root.qcow2", "--pool", "default"])
        .ok();
    assert!(!std::path::Path::new(&path).exists());
}

#[test]
fn undefine_remove_all_storage_deletes_exactly_the_pool_volumes() {
    let h = Host::new("storage-undefine");
    let kernel = service_guest(&h.dir, "READY\n");
    for v in ["a.qcow2", "b.raw", "other.raw"] {
        h.run(&["vol-create-as", "default", v, "8M"]).ok();
    }
    let b_path = h
        .run(&["vol-path", "b.raw", "--pool", "default"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let other_path = h
        .run(&["vol-path", "other.raw", "--pool", "default"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let outside = h.dir.join("outside.raw");
    std::fs::write(&outside, vec![0u8; 4096]).unwrap();
    let disks = format!(
        "    <disk type='volume' device='disk'><source pool='default' volume='a.qcow2'/><target dev='vda' bus='virtio'/></disk>\n\
         \x20   <disk type='file' device='disk'><source file='{b_path}'/><target dev='vdb' bus='virtio'/></disk>\n\
         \x20   <disk type='file' device='disk'><source file='{}'/><target dev='vdc' bus='virtio'/></disk>\n  </devices>",
        outside.display()
    );
    let xml = domain_xml("gone", &kernel, 1).replace("  </devices>", &disks);
    let f = h.dir.join("gone.xml");
    std::fs::write(&f, xml).unwrap();
    h.run(&["define", f.to_str().unwrap()]).ok();
    let out = h
        .run(&["undefine", "gone", "--remove-all-storage"])
        .ok()
        .stdout;
    assert!(out.contains("Domain 'gone' has been undefined\n"), "{out}");
    assert!(
        out.contains("Volume 'vda'(") && out.contains("a.qcow2) removed.\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Volume 'vdb'({b_path}) removed.\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Storage volume 'vdc'({}) is not managed by ironvirt. Remove it manually.\n",
            outside.display()
        )),
        "{out}"
    );
    let vols = h.run(&["vol-list", "default"]).ok().stdout;
    assert!(
        !vols.contains("a.qcow2") && !vols.contains("b.raw") && vols.contains("other.raw"),
        "{vols}"
    );
    assert!(std::path::Path::new(&other_path).exists() && outside.exists());
}
