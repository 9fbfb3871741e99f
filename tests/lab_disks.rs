//! Disks in the lab: Debian's cloud kernel under ironvirt-vmm with two virtio-blk disks — a raw image with
//! cache='none' (O_DIRECT on a real ext4 in L1) and a qcow2 overlay on a raw backing file (chain given by
//! `<backingStore>`). The guest runs mkfs.ext4 on both, writes, syncs, remounts and reads back; afterwards the
//! host takes the images out of the lab and checks with qemu-img and debugfs that they are clean and hold
//! exactly what the guest wrote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::run::Echo;
use ironvirt_lab::{ext4, Lab};

const MIB: usize = 1 << 20;

const GUEST_INIT: &str = r#"
echo "L2-GUEST: init"
md5() { md5sum "$@" | cut -d' ' -f1; }
echo "L2-GUEST: vdb-base $(dd if=/dev/vdb bs=1M count=1 iflag=direct 2>/dev/null | md5)"
mkdir -p /mnt
for d in vda vdb; do
    mkfs.ext4 -q -F /dev/$d && echo "L2-GUEST: mkfs-$d ok"
    mount -t ext4 /dev/$d /mnt || echo "L2-GUEST: mount-$d failed"
    head -c 4194304 /dev/urandom > /mnt/data.bin
    sync
    echo "L2-GUEST: $d-file $(md5 /mnt/data.bin)"
    umount /mnt
    echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 /dev/$d /mnt && echo "L2-GUEST: $d-reread $(md5 /mnt/data.bin)"
    umount /mnt
done
echo "L2-GUEST: done"
poweroff -f
"#;

const PAYLOAD: &str = r#"
mkdir -p /data
if ! mount -t ext4 /dev/vda /data; then
    lab_marker error "cannot mount the lab disk"
    exit 1
fi
# A retried L1 starts again from the pristine images.
rm -rf /data/work && mkdir /data/work && cp /data/in/* /data/work/
lab_vm_start disks ironvirt-vmm --domain /lab/disks.xml
lab_vm_wait_for disks '^L2-GUEST: done' 300
lab_vm_wait_exit disks 60
lab_marker disks.exit "$LAB_VM_RC"
for k in vdb-base mkfs-vda mkfs-vdb vda-file vda-reread vdb-file vdb-reread; do
    lab_marker "$k" "$(tr -d '\r' < "$LAB_D/disks.out" | grep "^L2-GUEST: $k " | cut -d' ' -f3)"
done
[ "$LAB_VM_RC" = 0 ] || lab_vm_stderr disks
sync
umount /data
"#;

fn domain_xml() -> String {
    format!(
        "<domain type='kvm'>
  <name>disks</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='/data/work/disk.raw'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>
      <source file='/data/work/overlay.qcow2'/>
      <backingStore type='file'>
        <format type='raw'/>
        <source file='/data/work/base.raw'/>
        <backingStore/>
      </backingStore>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='stdio'/>
  </devices>
</domain>
",
        kernel = l1_paths::VMLINUX,
        initrd = l1_paths::L2_INITRD,
    )
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn md5(path: &Path) -> String {
    run(Command::new("md5sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A deterministic, incompressible-looking pattern for the backing file.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn guest_filesystems_on_raw_and_qcow2_with_backing() {
    let lab = Lab::prepare().expect("preparing the lab");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab_disks");
    let _ = std::fs::remove_dir_all(&dir);
    let stage = dir.join("stage");
    let inbox = stage.join("in");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("disk.raw"), vec![0u8; 64 * MIB]).unwrap();
    let base = pattern(32 * MIB);
    std::fs::write(inbox.join("base.raw"), &base).unwrap();
    run(Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=65536",
            "-b",
            "base.raw",
            "-F",
            "raw",
        ])
        .arg(inbox.join("overlay.qcow2"))
        .arg("64M")
        .current_dir(&inbox));
    let transport = dir.join("transport.ext4");
    ext4::make_image(&stage, 512, &transport).expect("building the transport disk");

    let mut l2 = L2Initramfs::with_prelude(GUEST_INIT);
    l2.binaries
        .push(("/usr/sbin/mkfs.ext4".into(), "/sbin/mkfs.ext4".into()));
    let l2 = lab
        .build_l2("lab_disks", &l2)
        .expect("building the L2 initramfs");
    let mut l1 = L1Initramfs::new(PAYLOAD);
    l1.binaries.push((
        env!("CARGO_BIN_EXE_ironvirt-vmm").into(),
        "/bin/ironvirt-vmm".into(),
    ));
    l1.l2_initramfs = Some(l2);
    l1.storage_modules = true;
    l1.extra_files = vec![ExtraFile::text("/lab/disks.xml", 0o644, domain_xml())];
    let echo = std::env::var_os("IRONVIRT_LAB_ECHO").is_some();
    let result = lab
        .run("lab_disks", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(420);
            cfg.echo = if echo { Echo::All } else { Echo::None };
            cfg.drives = vec![transport.clone()];
        })
        .expect("running the lab");
    println!(
        "lab: L1 run {:.1} s, {} attempt(s); log {}",
        result.elapsed.as_secs_f64(),
        result.attempts,
        result.log.display()
    );
    if let Some(reason) = &result.dead {
        panic!("L1 died: {reason}\n{}", result.transcript);
    }
    let m = &result.markers;
    let get = |k: &str| m.get(k).map(str::to_string).unwrap_or_default();
    assert_eq!(
        get("disks.exit"),
        "0",
        "ironvirt-vmm exit status\n{}",
        result.transcript
    );
    assert_eq!(get("mkfs-vda"), "ok");
    assert_eq!(get("mkfs-vdb"), "ok");
    for d in ["vda", "vdb"] {
        assert!(!get(&format!("{d}-file")).is_empty(), "no checksum for {d}");
        assert_eq!(
            get(&format!("{d}-file")),
            get(&format!("{d}-reread")),
            "{d}: the file read back differs"
        );
    }
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("first-mib"), &base[..MIB]).unwrap();
    assert_eq!(
        get("vdb-base"),
        md5(&out.join("first-mib")),
        "the guest saw the backing file through the overlay"
    );

    // The images as the guest left them.
    for f in ["disk.raw", "overlay.qcow2", "base.raw"] {
        ext4::dump_file(&transport, &format!("/work/{f}"), &out.join(f))
            .expect("taking an image out of the lab");
    }
    let check = Command::new("qemu-img")
        .args(["check", "-q"])
        .arg(out.join("overlay.qcow2"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "qemu-img check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        md5(&out.join("base.raw")),
        md5(&inbox.join("base.raw")),
        "the backing file must stay untouched"
    );
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(out.join("overlay.qcow2"))
        .arg(out.join("vdb.raw")));
    for (d, image) in [("vda", out.join("disk.raw")), ("vdb", out.join("vdb.raw"))] {
        let file = out.join(format!("{d}-data.bin"));
        ext4::dump_file(&image, "/data.bin", &file).expect("reading the guest's file with debugfs");
        assert_eq!(
            md5(&file),
            get(&format!("{d}-file")),
            "{d}: the host sees what the guest wrote"
        );
        let fsck = Command::new("e2fsck")
            .args(["-fn"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{d}: e2fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
}
