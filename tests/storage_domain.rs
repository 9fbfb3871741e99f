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
