//! The fs, netfs and logical pool types end to end through the `ironvirt` binary, on loop
//! devices. They need root (loop devices, mount, lvm2); without it each test says so and
//! returns. Every loop device, mount and volume group a test makes is removed by a guard, even
//! when the test fails.

mod cli;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli::*;

/// Root and loop devices, or the reason they are missing.
fn need_root_and_loop(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{test}: SKIPPED — needs root (loop devices, mount, lvm2); CI runs it as root");
        return false;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("{test}: SKIPPED — this machine has no loop devices (/dev/loop-control)");
        return false;
    }
    true
}

fn sh(cmd: &[&str]) -> std::process::Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (see scripts/install-deps.sh)", cmd[0]))
}

#[track_caller]
fn sh_ok(cmd: &[&str]) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A loop device over a sparse file in the test's directory; detached on drop.
struct LoopDev {
    dev: String,
}

impl LoopDev {
    fn new(dir: &Path, name: &str, mib: u64) -> LoopDev {
        let img = dir.join(name);
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        let dev = sh_ok(&["losetup", "-f", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        LoopDev { dev }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = sh(&["losetup", "-d", &self.dev]);
    }
}

/// Undoes what a failed test may have left behind: mounts on `targets`, the volume group, PV
/// labels. Declared after the loop devices so it runs before they are detached.
struct Leftovers {
    targets: Vec<PathBuf>,
    vg: Option<String>,
    pvs: Vec<String>,
}

impl Leftovers {
    fn mounts(targets: Vec<PathBuf>) -> Leftovers {
        Leftovers {
            targets,
            vg: None,
            pvs: Vec::new(),
        }
    }

    fn lvm(vg: &str, pvs: Vec<String>) -> Leftovers {
        Leftovers {
            targets: Vec::new(),
            vg: Some(vg.to_string()),
            pvs,
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for t in &self.targets {
            while mounted_on(t).is_some() {
                if !sh(&["umount", "-l", t.to_str().unwrap_or_default()])
                    .status
                    .success()
                {
                    break;
                }
            }
        }
        if let Some(vg) = &self.vg {
            let _ = sh(&["vgremove", "-f", vg]);
        }
        for pv in &self.pvs {
            let _ = sh(&["pvremove", "-ff", "-y", pv]);
        }
    }
}

/// The source of what is mounted on `target` (from this process's mountinfo), if anything.
fn mounted_on(target: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = std::fs::canonicalize(target).ok()?;
    let t = target.to_str()?.replace(' ', "\\040");
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f[4] == t).then(|| (f[2].to_string(), f[sep + 2].to_string()))
    })
}

/// `major:minor` of a block device.
fn dev_numbers(dev: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(dev).unwrap().rdev();
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

/// `Key: value` of pool-info / vol-info.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
        .to_string()
}

fn statvfs(dir: &Path) -> (u64, u64, u64) {
    let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: statvfs fills the zeroed struct; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    let fr = st.f_frsize as u64;
    (
        st.f_blocks as u64 * fr,
        (st.f_blocks as u64 - st.f_bfree as u64) * fr,
        st.f_bavail as u64 * fr,
    )
}

fn blkid_type(dev: &str) -> Option<String> {
    let o = sh(&["blkid", "-p", "-o", "value", "-s", "TYPE", dev]);
    let t = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !t.is_empty()).then_some(t)
}

#[test]
fn fs_pool_on_a_loop_device() {
    if !need_root_and_loop("fs_pool_on_a_loop_device") {
        return;
    }
    let h = Host::new("storage-fs");
    let disk = LoopDev::new(&h.dir, "fs.img", 64);
    let target = h.dir.join("mnt");
    let other = h.dir.join("elsewhere");
    let _left = Leftovers::mounts(vec![target.clone(), other.clone()]);
    let t = target.to_str().unwrap();

    assert_eq!(
        h.run(&[
            "pool-define-as",
            "f",
            "fs",
            "--source-dev",
            &disk.dev,
            "--target",
            t
        ])
        .ok()
        .stdout,
        "Pool f defined\n\n"
    );
    let xml = h.run(&["pool-dumpxml", "f"]).ok().stdout;
    assert!(
        xml.contains(&format!(
            "<source>\n    <device path='{}'/>\n    <format type='auto'/>\n  </source>",
            disk.dev
        )),
        "{xml}"
    );
    let list = h
        .run(&["pool-list", "--all", "--type", "fs,logical", "--name"])
        .ok();
    assert_eq!(list.stdout, "f\n\n");

    // Plain build makes the mount point only; --no-overwrite formats an empty device;
    // --overwrite formats whatever is there; --no-overwrite on a formatted device is refused.
    h.run(&["pool-build", "f"]).ok();
    assert!(target.is_dir());
    assert_eq!(blkid_type(&disk.dev), None);
    assert_eq!(
        h.run(&["pool-build", "f", "--overwrite"]).ok().stdout,
        "Pool f built\n\n"
    );
    assert_eq!(blkid_type(&disk.dev).as_deref(), Some("ext4"));
    let refused = h.run(&["pool-build", "f", "--no-overwrite"]).fails();
    assert_eq!(
        refused.stderr,
        format!(
            "error: Failed to build pool f\nerror: Storage pool already built: Device '{}' already formatted using 'ext4'\n",
            disk.dev
        )
    );

    // Started = mounted on the target.
    assert_eq!(
        h.run(&["pool-start", "f"]).ok().stdout,
        "Pool f started\n\n"
    );
    let (numbers, _) = mounted_on(&target).expect("pool-start mounts the device");
    assert_eq!(numbers, dev_numbers(&disk.dev));

    h.run(&["vol-create-as", "f", "a.raw", "8M"]).ok();
    h.run(&["vol-create-as", "f", "b.qcow2", "16M", "--format", "qcow2"])
        .ok();
    let vols = h.run(&["vol-list", "f"]).ok().stdout;
    assert!(vols.contains(&format!(" a.raw     {t}/a.raw")), "{vols}");
    assert!(vols.contains(&format!(" b.qcow2   {t}/b.qcow2")), "{vols}");
    assert!(
        target.join("lost+found").is_dir(),
        "the ext4 root is what we see"
    );
    let info = h
        .run(&["vol-info", "b.qcow2", "--pool", "f", "--bytes"])
        .ok()
        .stdout;
    assert_eq!(field(&info, "Capacity"), "16777216 bytes");

    // Figures are the mounted filesystem's.
    h.run(&["pool-refresh", "f"]).ok();
    let info = h.run(&["pool-info", "f", "--bytes"]).ok().stdout;
    let (cap, alloc, avail) = statvfs(&target);
    assert_eq!(field(&info, "State"), "running");
    assert_eq!(field(&info, "Capacity"), cap.to_string());
    assert_eq!(field(&info, "Allocation"), alloc.to_string());
    assert_eq!(field(&info, "Available"), avail.to_string());
    assert!(cap > 50 << 20 && cap <= 64 << 20, "{cap}");

    // Destroy unmounts; the volumes are on the device, not in the bare directory.
    h.run(&["pool-destroy", "f"]).ok();
    assert_eq!(mounted_on(&target), None);
    assert!(!target.join("a.raw").exists());

    // A device mounted somewhere else is refused, and the failed start leaves the pool
    // inactive with nothing mounted on its target.
    std::fs::create_dir_all(&other).unwrap();
    sh_ok(&["mount", &disk.dev, other.to_str().unwrap()]);
    let r = h.run(&["pool-start", "f"]).fails();
    assert_eq!(
        r.stderr,
        format!(
            "error: Failed to start pool f\nerror: Requested operation is not valid: Source '{}' is already mounted on '{}'\n",
            disk.dev,
            std::fs::canonicalize(&other).unwrap().display()
        )
    );
    assert_eq!(
        field(&h.run(&["pool-info", "f"]).ok().stdout, "State"),
        "inactive"
    );
    assert_eq!(mounted_on(&target), None);
    sh_ok(&["umount", other.to_str().unwrap()]);

    // Restarted, the volumes are back; then stop and delete (the mount point goes).
    h.run(&["pool-start", "f"]).ok();
    assert!(target.join("a.raw").is_file());
    h.run(&["pool-destroy", "f"]).ok();
    assert_eq!(
        h.run(&["pool-delete", "f"]).ok().stdout,
        "Pool f deleted\n\n"
    );
    assert!(!target.exists());
    h.run(&["pool-undefine", "f"]).ok();
}

#[test]
fn fs_pool_mount_failure_is_reported() {
    if !need_root_and_loop("fs_pool_mount_failure_is_reported") {
        return;
    }
    // An unformatted device: mount fails, its message reaches the user, nothing is mounted.
    let h = Host::new("storage-fs-fail");
    let disk = LoopDev::new(&h.dir, "blank.img", 16);
    let target = h.dir.join("mnt");
    let _left = Leftovers::mounts(vec![target.clone()]);
    let t = target.to_str().unwrap();
    h.run(&[
        "pool-define-as",
        "b",
        "fs",
        "--source-dev",
        &disk.dev,
        "--source-format",
        "ext4",
        "--target",
        t,
    ])
    .ok();
    h.run(&["pool-build", "b"]).ok();
    let r = h.run(&["pool-start", "b"]).fails();
    assert!(
        r.stderr
            .starts_with("error: Failed to start pool b\nerror: internal error: Child process (")
            && r.stderr.contains(&format!(
                "mount -o nodev,nosuid,noexec -t ext4 {} {t}) unexpected exit status 32: ",
                disk.dev
            )),
        "{}",
        r.stderr
    );
    assert_eq!(
        field(&h.run(&["pool-info", "b"]).ok().stdout, "State"),
        "inactive"
    );
    assert_eq!(mounted_on(&target), None);
}

/// The kernel's device-mapper (lvm2 can leave a /dev/mapper/control node behind on a kernel
/// without it, so ask the kernel).
fn device_mapper_in_kernel() -> bool {
    ["/proc/misc", "/proc/devices"].iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|s| s.lines().any(|l| l.ends_with(" device-mapper")))
    })
}

/// Runs `vgs` for one field of one volume group, in bytes.
fn vgs(vg: &str, field: &str) -> u64 {
    sh_ok(&[
        "vgs",
        "--noheadings",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        field,
        vg,
    ])
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn logical_pool_on_loop_devices() {
    if !need_root_and_loop("logical_pool_on_loop_devices") {
        return;
    }
    if sh(&["vgs", "--version"]).status.code().is_none() {
        panic!("lvm2 is not installed (scripts/install-deps.sh installs it)");
    }
    let h = Host::new("storage-logical");
    let d1 = LoopDev::new(&h.dir, "pv1.img", 64);
    let d2 = LoopDev::new(&h.dir, "pv2.img", 64);
    // Unique per run: volume groups are host-wide.
    let vg = format!(
        "ivtest{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let _left = Leftovers::lvm(&vg, vec![d1.dev.clone(), d2.dev.clone()]);
    let xml = h.dir.join("lv.xml");
    std::fs::write(
        &xml,
        format!(
            "<pool type='logical'><name>lv</name><source><device path='{}'/><device path='{}'/><name>{vg}</name></source></pool>",
            d1.dev, d2.dev
        ),
    )
    .unwrap();
    h.run(&["pool-define", xml.to_str().unwrap()]).ok();
    let dump = h.run(&["pool-dumpxml", "lv"]).ok().stdout;
    assert!(
        dump.contains(&format!(
            "    <name>{vg}</name>\n    <format type='lvm2'/>\n  </source>\n  <target>\n    <path>/dev/{vg}</path>\n  </target>"
        )),
        "{dump}"
    );

    // A device that holds a filesystem is refused without --overwrite, and the device already
    // turned into a PV is given back (no half-built group).
    sh_ok(&["mkfs.ext4", "-q", "-F", &d2.dev]);
    let r = h.run(&["pool-build", "lv"]).fails();
    assert_eq!(
        r.stderr,
        format!(
            "error: Failed to build pool lv\nerror: Storage pool already built: Device '{}' formatted cannot overwrite using 'LVM2_member', requires build --overwrite (it holds 'ext4')\n",
            d2.dev
        )
    );
    assert_eq!(blkid_type(&d1.dev), None, "the first PV was removed again");

    assert_eq!(
        h.run(&["pool-build", "lv", "--overwrite"]).ok().stdout,
        "Pool lv built\n\n"
    );
    let pvs = sh_ok(&["pvs", "--noheadings", "-o", "pv_name,vg_name"]);
    for d in [&d1.dev, &d2.dev] {
        assert!(
            pvs.lines()
                .any(|l| l.split_whitespace().eq([d.as_str(), vg.as_str()])),
            "{d} in {vg}: {pvs}"
        );
    }

    assert_eq!(
        h.run(&["pool-start", "lv"]).ok().stdout,
        "Pool lv started\n\n"
    );
    let info = h.run(&["pool-info", "lv", "--bytes"]).ok().stdout;
    let (size, free) = (vgs(&vg, "vg_size"), vgs(&vg, "vg_free"));
    assert_eq!(field(&info, "Capacity"), size.to_string());
    assert_eq!(field(&info, "Available"), free.to_string());
    assert_eq!(field(&info, "Allocation"), (size - free).to_string());
    assert!(size > 100 << 20, "two 64 MiB PVs: {size}");
    h.run(&["pool-refresh", "lv"]).ok();
    assert_eq!(
        h.run(&["vol-list", "lv"]).ok().stdout,
        " Name   Path\n--------------\n\n"
    );

    // Logical volumes are device-mapper devices.
    if device_mapper_in_kernel() {
        h.run(&["vol-create-as", "lv", "v1", "8M"]).ok();
        let path = format!("/dev/{vg}/v1");
        let vols = h.run(&["vol-list", "lv"]).ok().stdout;
        assert!(vols.contains(&path), "{vols}");
        let uuid = sh_ok(&["lvs", "--noheadings", "-o", "lv_uuid", &format!("{vg}/v1")]);
        assert_eq!(
            h.run(&["vol-key", "v1", "--pool", "lv"]).ok().stdout.trim(),
            uuid.trim()
        );
        let info = h.run(&["vol-info", &path, "--bytes"]).ok().stdout;
        assert_eq!(field(&info, "Type"), "block");
        assert_eq!(field(&info, "Capacity"), "8388608 bytes");
        h.run(&["vol-delete", "v1", "--pool", "lv"]).ok();
    } else {
        let r = h.run(&["vol-create-as", "lv", "v1", "8M"]).fails();
        assert!(
            r.stderr.starts_with(
                "error: Failed to create vol v1
error: internal error: Child process ("
            ) && r.stderr.contains(&format!(
                "lvcreate --name v1 -L 8192K {vg} --yes) unexpected exit status"
            )) && r.stderr.contains("device-mapper"),
            "{}",
            r.stderr
        );
        eprintln!(
            "logical_pool_on_loop_devices: this machine's kernel has no device-mapper, \
             so logical volumes cannot be created or activated here; vol-create-as failed with \
             lvcreate's own message, as checked. Volume creation/deletion runs where device-mapper exists."
        );
    }

    assert_eq!(
        h.run(&["pool-destroy", "lv"]).ok().stdout,
        "Pool lv destroyed\n\n"
    );
    assert_eq!(
        field(&h.run(&["pool-info", "lv"]).ok().stdout, "State"),
        "inactive"
    );
    assert_eq!(
        h.run(&["pool-delete", "lv"]).ok().stdout,
        "Pool lv deleted\n\n"
    );
    assert!(
        !sh(&["vgs", &vg]).status.success(),
        "volume group {vg} removed"
    );
    assert_eq!(blkid_type(&d1.dev), None);
    assert_eq!(blkid_type(&d2.dev), None);

    // Starting a pool whose group does not exist says so.
    let r = h.run(&["pool-start", "lv"]).fails();
    assert_eq!(
        r.stderr,
        format!("error: Failed to start pool lv\nerror: unsupported configuration: cannot find logical volume group name '{vg}' (run pool-build to create it)\n")
    );
}

/// The first export `showmount` lists on this host, if the NFS client and a local server are
/// both there.
fn local_nfs_export() -> Option<String> {
    let o = Command::new("showmount")
        .args(["--no-headers", "-e", "127.0.0.1"])
        .output()
        .ok()?;
    let out = String::from_utf8_lossy(&o.stdout);
    let dir = out.lines().next()?.split_whitespace().next()?.to_string();
    (o.status.success() && dir.starts_with('/')).then_some(dir)
}

#[test]
fn netfs_pool() {
    if !need_root_and_loop("netfs_pool") {
        return;
    }
    let h = Host::new("storage-netfs");
    let target = h.dir.join("nfs");
    let _left = Leftovers::mounts(vec![target.clone()]);
    let t = target.to_str().unwrap();
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let has_nfs = fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("nfs"));
    if !has_nfs {
        eprintln!(
            "netfs_pool: this machine cannot mount NFS (no nfs in /proc/filesystems); only the unit \
             tests of the mount command lines cover NFS mounting. Checking that a failed mount \
             is reported and leaves the pool inactive."
        );
        h.run(&[
            "pool-define-as",
            "n",
            "netfs",
            "--source-host",
            "127.0.0.1",
            "--source-path",
            "/export",
            "--source-format",
            "nfs",
            "--source-protocol-ver",
            "4",
            "--target",
            t,
        ])
        .ok();
        h.run(&["pool-build", "n"]).ok();
        assert!(target.is_dir());
        let r = h.run(&["pool-start", "n"]).fails();
        assert!(
            r.stderr.contains(&format!(
                "mount -o nodev,nosuid,noexec,nfsvers=4 -t nfs 127.0.0.1:/export {t}) unexpected exit status"
            )),
            "{}",
            r.stderr
        );
        assert_eq!(
            field(&h.run(&["pool-info", "n"]).ok().stdout, "State"),
            "inactive"
        );
        assert_eq!(mounted_on(&target), None);
        h.run(&["pool-delete", "n"]).ok();
        assert!(!target.exists());
        return;
    }
    let Some(export) = local_nfs_export() else {
        eprintln!(
            "netfs_pool: the kernel has NFS but no local export is listed by `showmount -e 127.0.0.1`; \
             only the unit tests of the mount command lines cover NFS here"
        );
        return;
    };
    h.run(&[
        "pool-define-as",
        "n",
        "netfs",
        "--source-host",
        "127.0.0.1",
        "--source-path",
        &export,
        "--source-format",
        "nfs",
        "--target",
        t,
    ])
    .ok();
    h.run(&["pool-build", "n"]).ok();
    h.run(&["pool-start", "n"]).ok();
    let (_, source) = mounted_on(&target).expect("pool-start mounts the export");
    assert_eq!(
        source.trim_end_matches('/'),
        format!("127.0.0.1:{export}").trim_end_matches('/')
    );
    h.run(&["vol-create-as", "n", "ironvirt-netfs-test.raw", "1M"])
        .ok();
    h.run(&["vol-delete", "ironvirt-netfs-test.raw", "--pool", "n"])
        .ok();
    h.run(&["pool-destroy", "n"]).ok();
    assert_eq!(mounted_on(&target), None);
}
