//! Logical pools for real: this machine's kernel has no device-mapper, the lab's L1 (Debian's
//! cloud kernel) loads dm-mod. Inside L1 the `ironvirt` CLI drives lvm2 (the host's `lvm`
//! binary, shipped with its libraries) on a virtio disk that L0's QEMU gives L1: pool-define-as
//! logical, pool-build, pool-start, two volumes (one sparse), figures against `lvs`, upload and
//! download, clone and create-from (a qcow2 input) into the group, resize, wipe, delete, a
//! Debian guest booting from a logical volume (`<disk type='volume'>`), pool-destroy and
//! pool-delete. One L1 boot; each step reports `IRONVIRT-LAB: lv.<step> ok|<what went wrong>`.
//!
//! lvm in an initramfs has no udev: the lab's lvm.conf (LVM_SYSTEM_DIR) tells it to make its
//! device nodes itself. A real host has udev and needs none of it, so ironvirt sets nothing.

use std::path::PathBuf;
use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::run::Echo;
use ironvirt_lab::{ext4, Lab};

const MARKER: &str = "lv-marker-7c9e6679f4f2";

const GUEST_INIT: &str = r#"
mkdir -p /mnt
if mount -t ext4 /dev/vda /mnt; then
    echo "L2-GUEST: marker $(cat /mnt/marker.txt)"
    umount /mnt
else
    echo "L2-GUEST: mount failed"
fi
poweroff -f
"#;

/// No udev in L1: lvm creates /dev/VG/LV itself and waits for nobody.
const LVM_CONF: &str = r#"
devices {
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 1
    monitoring = 0
}
global {
    locking_dir = "/run/lock/lvm"
}
backup {
    backup = 0
    archive = 0
}
"#;

const PAYLOAD: &str = r#"
cd /tmp
for c in pvcreate pvremove pvs vgcreate vgchange vgremove vgs lvs lvcreate lvremove lvresize lvchange; do
    ln -sf /sbin/lvm /sbin/$c
done
mkdir -p /run/lock/lvm
export LVM_SYSTEM_DIR=/etc/lvm
step() {
    _n=$1
    shift
    "$@" > "/tmp/$_n.out" 2>&1
    _rc=$?
    if [ "$_rc" != 0 ]; then
        lab_marker "lv.$_n" "exit $_rc: $(tr '\n' '|' < "/tmp/$_n.out" | tail -c 600)"
        return 1
    fi
    return 0
}
expect() {
    if grep -qF -- "$2" "/tmp/$1.out"; then
        lab_marker "lv.$1" ok
    else
        lab_marker "lv.$1" "missing '$2' in: $(tr '\n' '|' < "/tmp/$1.out" | tail -c 600)"
    fi
}
# same NAME A B: files A and B are byte for byte equal.
same() {
    if cmp "$2" "$3" > /tmp/$1.cmp 2>&1; then lab_marker "lv.$1" ok
    else lab_marker "lv.$1" "differ: $(cat /tmp/$1.cmp)"; fi
}
# figures NAME VOL: vol-info --bytes capacity/allocation equal lvs's size.
figures() {
    _lvs=$(lvs --noheadings --units b --nosuffix -o lv_size "labvg/$2" 2>&1 | tr -d ' ')
    _cap=$(ironvirt vol-info "$2" --pool vg --bytes | sed -n 's/^Capacity: *\([0-9]*\) bytes/\1/p')
    _alloc=$(ironvirt vol-info "$2" --pool vg --bytes | sed -n 's/^Allocation: *\([0-9]*\) bytes/\1/p')
    if [ -n "$_lvs" ] && [ "$_cap" = "$_lvs" ] && [ "$_alloc" = "$_lvs" ] && [ "$_cap" = "$3" ]; then
        lab_marker "lv.$1" ok
    else
        lab_marker "lv.$1" "lvs '$_lvs', vol-info capacity '$_cap' allocation '$_alloc', want $3"
    fi
}

step define ironvirt pool-define-as vg logical --source-dev /dev/vda --source-name labvg --target /dev/labvg && expect define "Pool vg defined"
step build ironvirt pool-build vg && expect build "Pool vg built"
step start ironvirt pool-start vg && expect start "Pool vg started"
step create ironvirt vol-create-as vg boot 32M && expect create "Vol boot created"
step sparse ironvirt vol-create-as vg sp 64M --allocation 8M && expect sparse "Vol sp created"
step list ironvirt vol-list vg --details && expect list "/dev/labvg/boot"
figures figures boot 33554432
step upload ironvirt vol-upload boot /lab/fs.img --pool vg && lab_marker lv.upload ok
step download ironvirt vol-download boot /tmp/dl.img --pool vg --length 16777216 && same download /lab/fs.img /tmp/dl.img
step clone ironvirt vol-clone boot boot2 --pool vg && expect clone "Vol boot2 cloned from boot"
figures clone-figures boot2 33554432
ironvirt vol-download boot /tmp/full.img --pool vg > /dev/null 2>&1
step clone-data ironvirt vol-download boot2 /tmp/c.img --pool vg && same clone-data /tmp/full.img /tmp/c.img
mkdir -p /tmp/files
step files ironvirt pool-create-as files dir --target /tmp/files && lab_marker lv.files ok
step convert ironvirt img convert -f raw -O qcow2 /lab/fs.img /tmp/files/fs.qcow2 && lab_marker lv.convert ok
ironvirt pool-refresh files > /dev/null 2>&1
step from-qcow2 ironvirt vol-create-from vg /lab/fromq.xml fs.qcow2 --inputpool files && expect from-qcow2 "Vol fromq created from input vol fs.qcow2"
step from-data ironvirt vol-download fromq /tmp/q.img --pool vg --length 16777216 && same from-data /lab/fs.img /tmp/q.img
figures from-figures fromq 16777216
step resize ironvirt vol-resize boot2 48M --pool vg && expect resize "successfully changed to 48M"
figures resize-figures boot2 50331648
step wipe ironvirt vol-wipe boot2 --pool vg && expect wipe "Vol boot2 wiped"
ironvirt vol-download boot2 /tmp/w.img --pool vg > /dev/null 2>&1
_nz=$(tr -d '\000' < /tmp/w.img | wc -c)
_sz=$(wc -c < /tmp/w.img)
if [ "$_nz" = 0 ] && [ "$_sz" = 50331648 ]; then lab_marker lv.wiped ok; else lab_marker lv.wiped "size $_sz, $_nz non-zero bytes"; fi
step delete ironvirt vol-delete boot2 --pool vg && expect delete "Vol boot2 deleted"
ironvirt vol-delete sp --pool vg > /dev/null 2>&1
ironvirt vol-delete fromq --pool vg > /dev/null 2>&1
step guest-define ironvirt define /lab/guest.xml && expect guest-define "Domain 'guest' defined"
step guest-start ironvirt start guest && expect guest-start "Domain 'guest' started"
end=$(($(lab_secs) + 240))
while [ "$(lab_secs)" -lt "$end" ] && [ "$(ironvirt domstate guest 2>/dev/null | head -1)" != "shut off" ]; do sleep 1; done
tr -d '\r' < /tmp/guest-console.log > /tmp/console.out 2>/dev/null
expect console "L2-GUEST: marker __MARKER__"
ironvirt undefine guest > /dev/null 2>&1
step vols ironvirt vol-list vg && lab_marker lv.vols-before "$(tr '\n' '|' < /tmp/vols.out)"
step delete-boot ironvirt vol-delete boot --pool vg && expect delete-boot "Vol boot deleted"
step destroy ironvirt pool-destroy vg && expect destroy "Pool vg destroyed"
step pool-delete ironvirt pool-delete vg && expect pool-delete "Pool vg deleted"
if pvs 2>/dev/null | grep -q labvg; then lab_marker lv.gone "labvg still there"; else lab_marker lv.gone ok; fi
lab_marker lv.log "$(tr '\n' '|' < /var/log/ironvirt/qemu/guest.log 2>/dev/null | tail -c 400)"
lab_marker lv.done 1
"#;

const STEPS: &[&str] = &[
    "define",
    "build",
    "start",
    "create",
    "sparse",
    "list",
    "figures",
    "upload",
    "download",
    "clone",
    "clone-figures",
    "clone-data",
    "files",
    "convert",
    "from-qcow2",
    "from-data",
    "from-figures",
    "resize",
    "resize-figures",
    "wipe",
    "wiped",
    "delete",
    "guest-define",
    "guest-start",
    "console",
    "delete-boot",
    "destroy",
    "pool-delete",
    "gone",
];

fn guest_xml() -> String {
    format!(
        "<domain type='kvm'>
  <name>guest</name>
  <memory unit='MiB'>256</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='volume' device='disk'>
      <source pool='vg' volume='boot'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='/tmp/guest-console.log'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
",
        l1_paths::VMLINUX,
        l1_paths::L2_INITRD
    )
}

#[test]
fn logical_pool_on_a_real_device_mapper() {
    let lab = Lab::prepare().expect("preparing the lab (Debian kernel + busybox)");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab_lvm");
    let _ = std::fs::remove_dir_all(&dir);
    let stage = dir.join("fs");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("marker.txt"), format!("{MARKER}\n")).unwrap();
    let fs_img = dir.join("fs.img");
    ext4::make_image(&stage, 16, &fs_img).expect("building the ext4 image to upload");
    // The physical volume: a sparse 256 MiB disk for L1.
    let pv = dir.join("pv.img");
    std::fs::File::create(&pv)
        .and_then(|f| f.set_len(256 << 20))
        .unwrap();

    let lvm = ["/usr/sbin/lvm", "/sbin/lvm"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("lvm2's /sbin/lvm is needed on the host (apt-get install lvm2)");
    let l2 = lab
        .build_l2("lab_lvm", &L2Initramfs::with_prelude(GUEST_INIT))
        .expect("building the L2 initramfs");
    let mut l1 = L1Initramfs::new(PAYLOAD.replace("__MARKER__", MARKER));
    l1.binaries.push((lvm, "/sbin/lvm".into()));
    // util-linux's blkid (pool-build probes with `blkid -p -o export`, which busybox lacks),
    // replacing busybox's applet link.
    l1.binaries
        .push(("/sbin/blkid".into(), "/sbin/blkid".into()));
    l1.binaries.push((
        env!("CARGO_BIN_EXE_ironvirt").into(),
        "/bin/ironvirt".into(),
    ));
    l1.binaries.push((
        env!("CARGO_BIN_EXE_ironvirt-vmm").into(),
        "/bin/ironvirt-vmm".into(),
    ));
    l1.l2_initramfs = Some(l2);
    l1.storage_modules = true;
    l1.extra_modules = ["dm-mod", "dm-snapshot", "dm-zero"]
        .map(String::from)
        .to_vec();
    l1.extra_files = vec![
        ExtraFile::text("/lab/guest.xml", 0o644, guest_xml()),
        ExtraFile::text("/etc/lvm/lvm.conf", 0o644, LVM_CONF),
        ExtraFile::text(
            "/lab/fromq.xml",
            0o644,
            "<volume><name>fromq</name><capacity unit='M'>16</capacity></volume>\n",
        ),
        ExtraFile::host("/lab/fs.img", 0o644, &fs_img),
    ];
    let echo = std::env::var_os("IRONVIRT_LAB_ECHO").is_some();
    let run = lab
        .run("lab_lvm", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(600);
            cfg.echo = if echo { Echo::All } else { Echo::None };
            cfg.drives = vec![pv.clone()];
        })
        .expect("running the lab");
    println!(
        "lab: L1 run {:.1} s, {} attempt(s); console log {}",
        run.elapsed.as_secs_f64(),
        run.attempts,
        run.log.display()
    );
    if let Some(reason) = &run.dead {
        panic!("L1 died, last: {reason}; see {}", run.log.display());
    }
    let m = &run.markers;
    let failures: Vec<String> = STEPS
        .iter()
        .filter_map(|s| match m.get(&format!("lv.{s}")) {
            Some("ok") => None,
            Some(other) => Some(format!("{s}: {other}")),
            None => Some(format!("{s}: no result")),
        })
        .collect();
    if !failures.is_empty() {
        panic!(
            "{} step(s) failed:\n  {}\nVMM log: {}\nfull console log: {}",
            failures.len(),
            failures.join("\n  "),
            m.get("lv.log").unwrap_or("-"),
            run.log.display()
        );
    }
}
