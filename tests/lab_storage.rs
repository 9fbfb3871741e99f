//! Storage pools in the lab, as a virsh user would use them: inside L1 the `ironvirt` CLI defines,
//! builds and starts a `dir` pool, creates a raw volume and uploads an ext4 image (made on the host,
//! holding a marker file) into it, creates a qcow2 volume backed by it, and boots a Debian guest whose
//! disk is `<disk type='volume'>` naming that qcow2 volume. The guest mounts /dev/vda, prints the
//! marker, writes a file of its own and powers off; `ironvirt img check` finds the overlay clean and
//! `undefine --remove-all-storage` deletes exactly the guest's volume. One L1 boot runs it all; each
//! step reports `IRONVIRT-LAB: st.<step> ok|<what went wrong>` and the test lists every failure.

use std::path::PathBuf;
use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::run::Echo;
use ironvirt_lab::{ext4, Lab};

const MARKER: &str = "volume-marker-5d41402abc4b2a76";

const GUEST_INIT: &str = r#"
mkdir -p /mnt
if mount -t ext4 /dev/vda /mnt; then
    echo "L2-GUEST: marker $(cat /mnt/marker.txt)"
    echo written-by-guest > /mnt/guest.txt
    sync
    umount /mnt && echo "L2-GUEST: umount ok"
else
    echo "L2-GUEST: mount failed"
fi
poweroff -f
"#;

const PAYLOAD: &str = r#"
cd /tmp
# step NAME CMD...: run an ironvirt command, keep its output in /tmp/NAME.out.
step() {
    _n=$1
    shift
    "$@" > "/tmp/$_n.out" 2>&1
    _rc=$?
    if [ "$_rc" != 0 ]; then
        lab_marker "st.$_n" "exit $_rc: $(tr '\n' '|' < "/tmp/$_n.out")"
        return 1
    fi
    return 0
}
# expect NAME TEXT: the output of step NAME contains TEXT.
expect() {
    if grep -qF -- "$2" "/tmp/$1.out"; then
        lab_marker "st.$1" ok
    else
        lab_marker "st.$1" "missing '$2' in: $(tr '\n' '|' < "/tmp/$1.out")"
    fi
}

step define-pool ironvirt pool-define-as lab dir --target /tmp/pool && expect define-pool "Pool lab defined"
step build-pool ironvirt pool-build lab && expect build-pool "Pool lab built"
step start-pool ironvirt pool-start lab && expect start-pool "Pool lab started"
step create-base ironvirt vol-create-as lab base.img 16M --format raw && expect create-base "Vol base.img created"
step upload ironvirt vol-upload base.img /lab/fs.img --pool lab && lab_marker st.upload ok
step create-disk ironvirt vol-create-as lab disk.qcow2 16M --format qcow2 --backing-vol base.img --backing-vol-format raw && expect create-disk "Vol disk.qcow2 created"
step define ironvirt define /lab/guest.xml && expect define "Domain 'guest' defined from /lab/guest.xml"
step start ironvirt start guest && expect start "Domain 'guest' started"
end=$(($(lab_secs) + 240))
while [ "$(lab_secs)" -lt "$end" ] && [ "$(ironvirt domstate guest 2>/dev/null | head -1)" != "shut off" ]; do sleep 1; done
tr -d '\r' < /tmp/guest-console.log > /tmp/console.out 2>/dev/null
expect console "L2-GUEST: marker __MARKER__"
cp /tmp/console.out /tmp/umount.out
expect umount "L2-GUEST: umount ok"
step state ironvirt domstate guest && expect state "shut off"
step check ironvirt img check /tmp/pool/disk.qcow2 && expect check "No errors were found on the image."
step undefine ironvirt undefine guest --remove-all-storage && expect undefine "Domain 'guest' has been undefined"
step vols ironvirt vol-list lab
if grep -q disk.qcow2 /tmp/vols.out || [ -e /tmp/pool/disk.qcow2 ]; then
    lab_marker st.vols "disk.qcow2 still there: $(tr '\n' '|' < /tmp/vols.out)"
elif grep -q base.img /tmp/vols.out; then
    lab_marker st.vols ok
else
    lab_marker st.vols "base.img went too: $(tr '\n' '|' < /tmp/vols.out)"
fi
lab_marker st.log "$(tr '\n' '|' < /var/log/ironvirt/qemu/guest.log | tail -c 400)"
lab_marker st.done 1
"#;

const STEPS: &[&str] = &[
    "define-pool",
    "build-pool",
    "start-pool",
    "create-base",
    "upload",
    "create-disk",
    "define",
    "start",
    "console",
    "umount",
    "state",
    "check",
    "undefine",
    "vols",
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
      <driver name='qemu' type='qcow2'/>
      <source pool='lab' volume='disk.qcow2'/>
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
fn a_guest_boots_from_a_pool_volume_managed_with_ironvirt() {
    let lab = Lab::prepare().expect("preparing the lab (Debian kernel + busybox)");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab_storage");
    let _ = std::fs::remove_dir_all(&dir);
    let stage = dir.join("fs");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("marker.txt"), format!("{MARKER}\n")).unwrap();
    let fs_img = dir.join("fs.img");
    ext4::make_image(&stage, 16, &fs_img).expect("building the ext4 image to upload");

    let l2 = lab
        .build_l2("lab_storage", &L2Initramfs::with_prelude(GUEST_INIT))
        .expect("building the L2 initramfs");
    let mut l1 = L1Initramfs::new(PAYLOAD.replace("__MARKER__", MARKER));
    for bin in ["ironvirt", "ironvirt-vmm"] {
        let host = match bin {
            "ironvirt" => env!("CARGO_BIN_EXE_ironvirt"),
            _ => env!("CARGO_BIN_EXE_ironvirt-vmm"),
        };
        l1.binaries.push((host.into(), format!("/bin/{bin}")));
    }
    l1.l2_initramfs = Some(l2);
    l1.extra_files = vec![
        ExtraFile::text("/lab/guest.xml", 0o644, guest_xml()),
        ExtraFile::host("/lab/fs.img", 0o644, &fs_img),
    ];
    let echo = std::env::var_os("IRONVIRT_LAB_ECHO").is_some();
    let run = lab
        .run("lab_storage", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(600);
            cfg.echo = if echo { Echo::All } else { Echo::None };
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
        .filter_map(|s| match m.get(&format!("st.{s}")) {
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
            m.get("st.log").unwrap_or("-"),
            run.log.display()
        );
    }
}
