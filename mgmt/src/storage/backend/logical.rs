//! `logical` pools: an LVM volume group driven by the lvm2 tools, as libvirt's
//! storage_backend_logical.c does. Build = pvcreate each source device + vgcreate; start and
//! stop = vgchange -aly / -aln; delete = vgremove + pvremove; figures from `vgs`, volumes from
//! `lvs` (one per active logical volume, path `/dev/VG/LV`, key = the LV's UUID).
//!
//! Logical volumes are device-mapper devices: creating or activating one needs the kernel's
//! device-mapper; lvcreate's own error says so when it is missing.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::{blkid, exec, BuildFlags};
use crate::storage::driver::PoolFigures;
use crate::storage::{PoolDef, StorageError, VolInfo};

/// What blkid calls an LVM physical volume (libvirt probes for the same name).
const PV_SIGNATURE: &str = "LVM2_member";

/// How much of each end of a device pool-build clears before pvcreate: LVM wants no partition
/// table on a whole-disk PV (and GPT keeps a backup header at the end).
const CLEAR_BYTES: u64 = 1024 * 1024;

/// Bytes as lvm2's `K` (KiB) size argument, rounded up like libvirt's VIR_DIV_UP.
fn kib(bytes: u64) -> String {
    format!("{}K", bytes.div_ceil(1024))
}

pub fn pvcreate_argv(device: &str, overwrite: bool) -> Vec<String> {
    if overwrite {
        // -ff -y: also take a device that still carries another volume group's label.
        exec::argv(&["pvcreate", "-ff", "-y", device])
    } else {
        exec::argv(&["pvcreate", device])
    }
}

pub fn pvremove_argv(device: &str) -> Vec<String> {
    exec::argv(&["pvremove", device])
}

pub fn vgcreate_argv(vg: &str, devices: &[String]) -> Vec<String> {
    let mut v = exec::argv(&["vgcreate", vg]);
    v.extend(devices.iter().cloned());
    v
}

/// `vgchange -aly VG` / `-aln VG` (libvirt's tests/storagepoolxml2argvdata/pool-logical.argv):
/// activate or deactivate the group's volumes on this host only.
pub fn vgchange_argv(vg: &str, on: bool) -> Vec<String> {
    exec::argv(&["vgchange", if on { "-aly" } else { "-aln" }, vg])
}

pub fn vgremove_argv(vg: &str) -> Vec<String> {
    exec::argv(&["vgremove", "-f", vg])
}

pub fn pvs_argv() -> Vec<String> {
    exec::argv(&["pvs", "--noheadings", "-o", "pv_name,vg_name"])
}

pub fn vgs_argv(vg: &str) -> Vec<String> {
    exec::argv(&[
        "vgs",
        "--separator",
        ":",
        "--noheadings",
        "--units",
        "b",
        "--unbuffered",
        "--nosuffix",
        "--options",
        "vg_size,vg_free",
        vg,
    ])
}

/// `lvs` with `#` as separator: LV names may hold ':' and the devices field holds ','.
pub fn lvs_argv(vg: &str) -> Vec<String> {
    exec::argv(&[
        "lvs",
        "--separator",
        "#",
        "--noheadings",
        "--units",
        "b",
        "--unbuffered",
        "--nosuffix",
        "--options",
        "lv_name,origin,uuid,devices,segtype,stripes,seg_size,vg_extent_size,size,lv_attr",
        vg,
    ])
}

/// libvirt's lvcreate: an allocation below the capacity makes a sparse volume (a snapshot
/// with a virtual size, `allocation` of real space); a backing volume makes a snapshot of it.
pub fn lvcreate_argv(
    name: &str,
    capacity: u64,
    allocation: Option<u64>,
    vg: &str,
    backing: Option<&str>,
) -> Vec<String> {
    let mut v = exec::argv(&["lvcreate", "--name", name, "-L"]);
    match allocation {
        Some(a) if a != capacity => {
            v.push(kib(a.max(1)));
            v.extend(exec::argv(&["--type", "snapshot", "--virtualsize"]));
        }
        _ => {}
    }
    v.push(kib(capacity));
    match backing {
        Some(b) => v.extend(exec::argv(&["-s", b])),
        None => v.push(vg.into()),
    }
    v.push("--yes".into());
    v
}

pub fn lvremove_argv(path: &str) -> Vec<String> {
    exec::argv(&["lvremove", "-f", path])
}

pub fn lvchange_off_argv(path: &str) -> Vec<String> {
    exec::argv(&["lvchange", "-aln", path])
}

pub fn lvresize_argv(path: &str, capacity: u64) -> Vec<String> {
    exec::argv(&["lvresize", "--yes", "-L", &kib(capacity), path])
}

/// `vgs` output: "  SIZE:FREE" (some versions add a trailing ':').
pub fn parse_vgs(vg: &str, out: &str) -> Result<PoolFigures, StorageError> {
    let bad = || {
        StorageError::Internal(format!(
            "cannot parse vgs output for volume group '{vg}': {out:?}"
        ))
    };
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(bad)?;
    let mut f = line.trim_end_matches(':').split(':');
    let capacity: u64 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let available: u64 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(PoolFigures {
        capacity,
        allocation: capacity.saturating_sub(available),
        available,
    })
}

/// One logical volume as `lvs` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lv {
    pub name: String,
    /// The origin of a snapshot (None for a plain or a sparse volume).
    pub origin: Option<String>,
    pub uuid: String,
    pub size: u64,
    pub attr: String,
}

impl Lv {
    /// Created with `--virtualsize` (attr 's', origin `[NAME_vorigin]`).
    pub fn sparse(&self) -> bool {
        self.attr.starts_with('s')
    }
}

/// `lvs` output → the volumes libvirt shows: one per LV (an LV with several segments has
/// several lines), skipping inactive LVs and thin pools, which have no device node.
pub fn parse_lvs(out: &str) -> Result<Vec<Lv>, StorageError> {
    let mut lvs: Vec<Lv> = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('#').collect();
        if f.len() < 10 {
            return Err(StorageError::Internal(format!(
                "malformed lvs line: {line:?}"
            )));
        }
        let attr = f[9].to_string();
        let active = attr.as_bytes().get(4) == Some(&b'a');
        if !active || attr.starts_with('t') || lvs.iter().any(|l| l.name == f[0]) {
            continue;
        }
        let size = f[8].parse().map_err(|_| {
            StorageError::Internal(format!("malformed volume size in lvs line: {line:?}"))
        })?;
        // "[lv_vorigin]" is lvm's hidden origin of a sparse volume, never a backing store.
        let origin = Some(f[1]).filter(|o| !o.is_empty() && !o.starts_with('['));
        lvs.push(Lv {
            name: f[0].into(),
            origin: origin.map(str::to_string),
            uuid: f[2].into(),
            size,
            attr,
        });
    }
    Ok(lvs)
}

/// `pvs --noheadings -o pv_name,vg_name` → (device, volume group) pairs (a PV in no group has
/// no second column).
pub fn parse_pvs(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// libvirt's virStorageBackendLogicalMatchPoolSource: the volume group exists and (when the pool
/// lists devices) at least one of them is one of its physical volumes.
pub fn check_source(def: &PoolDef, pvs: &[(String, String)]) -> Result<(), StorageError> {
    let vg = def.volume_group();
    let members: Vec<&str> = pvs
        .iter()
        .filter(|(_, g)| *g == vg)
        .map(|(d, _)| d.as_str())
        .collect();
    if members.is_empty() {
        return Err(StorageError::Unsupported(format!(
            "cannot find logical volume group name '{vg}' (run pool-build to create it)"
        )));
    }
    let devices = def.source_devices();
    if !devices.is_empty() && !devices.iter().any(|d| members.contains(&d.as_str())) {
        return Err(StorageError::Unsupported(format!(
            "cannot find any matching source devices for logical volume group '{vg}'"
        )));
    }
    Ok(())
}

/// Zeroes the first and last MiB of a device, as libvirt does before pvcreate.
fn clear_ends(device: &str) -> Result<(), StorageError> {
    let p = Path::new(device);
    let mut f = OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(StorageError::io("cannot open device", p))?;
    let len = f
        .seek(SeekFrom::End(0))
        .map_err(StorageError::io("cannot size device", p))?;
    let n = CLEAR_BYTES.min(len);
    let zeros = vec![0u8; n as usize];
    f.write_all_at(&zeros, 0)
        .and_then(|_| f.write_all_at(&zeros, len - n))
        .and_then(|_| f.sync_all())
        .map_err(StorageError::io("cannot clear device header of", p))
}

pub fn build(def: &PoolDef, flags: BuildFlags) -> Result<(), StorageError> {
    let devices = def.source_devices();
    if devices.is_empty() {
        return Err(StorageError::Unsupported(format!(
            "pool '{}' lists no <source><device path=…/> to build its volume group on",
            def.name()
        )));
    }
    let mut done: Vec<&String> = Vec::new();
    let mut result = Ok(());
    for d in &devices {
        result = (|| {
            if !flags.overwrite {
                blkid::check_empty(d, PV_SIGNATURE, &blkid::probe(d)?)?;
            }
            clear_ends(d)?;
            exec::run(&pvcreate_argv(d, flags.overwrite)).map(|_| ())
        })();
        if result.is_err() {
            break;
        }
        done.push(d);
    }
    if result.is_ok() {
        result = exec::run(&vgcreate_argv(&def.volume_group(), &devices)).map(|_| ());
    }
    if result.is_err() {
        // A half-built group would make the next pool-build fail on "already a PV".
        for d in done {
            let _ = exec::run(&pvremove_argv(d));
        }
    }
    result
}

pub fn start(def: &PoolDef) -> Result<(), StorageError> {
    check_source(def, &parse_pvs(&exec::run(&pvs_argv())?))?;
    exec::run(&vgchange_argv(&def.volume_group(), true)).map(|_| ())
}

pub fn stop(def: &PoolDef) -> Result<(), StorageError> {
    exec::run(&vgchange_argv(&def.volume_group(), false)).map(|_| ())
}

/// Removes the volume group, then the PV labels (a failure there is left alone, as libvirt
/// does: the group is gone already).
pub fn delete(def: &PoolDef) -> Result<(), StorageError> {
    exec::run(&vgremove_argv(&def.volume_group()))?;
    for d in def.source_devices() {
        let _ = exec::run(&pvremove_argv(&d));
    }
    Ok(())
}

pub fn figures(def: &PoolDef) -> Result<PoolFigures, StorageError> {
    let vg = def.volume_group();
    parse_vgs(&vg, &exec::run(&vgs_argv(&vg))?)
}

fn target(def: &PoolDef) -> String {
    def.target_path()
        .unwrap_or_else(|| format!("/dev/{}", def.volume_group()))
}

fn vol_info(def: &PoolDef, lv: &Lv) -> VolInfo {
    let path = format!("{}/{}", target(def), lv.name);
    let meta = std::fs::metadata(&path).ok();
    let m = |f: fn(&std::fs::Metadata) -> i64| meta.as_ref().map_or(0, f);
    VolInfo {
        name: lv.name.clone(),
        key: lv.uuid.clone(),
        path,
        pool: def.name().to_string(),
        vol_type: "block".into(),
        // Logical volumes are raw block devices; libvirt shows no format for them.
        format: String::new(),
        capacity: lv.size,
        allocation: lv.size,
        physical: lv.size,
        mode: meta.as_ref().map_or(0, |m| m.mode()),
        uid: meta.as_ref().map_or(0, |m| m.uid()),
        gid: meta.as_ref().map_or(0, |m| m.gid()),
        atime: (m(|m| m.atime()), m(|m| m.atime_nsec())),
        mtime: (m(|m| m.mtime()), m(|m| m.mtime_nsec())),
        ctime: (m(|m| m.ctime()), m(|m| m.ctime_nsec())),
        compat: None,
        cluster_size: None,
        lazy_refcounts: false,
        backing: lv
            .origin
            .as_ref()
            .map(|o| crate::storage::volume::BackingInfo {
                path: format!("{}/{o}", target(def)),
                format: None,
                perms: None,
            }),
    }
}

/// The pool's volumes, sorted by name.
pub fn volumes(def: &PoolDef) -> Result<Vec<VolInfo>, StorageError> {
    let lvs = parse_lvs(&exec::run(&lvs_argv(&def.volume_group()))?)?;
    let mut out: Vec<VolInfo> = lvs.iter().map(|lv| vol_info(def, lv)).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn lv_named(def: &PoolDef, name: &str) -> Result<Option<Lv>, StorageError> {
    Ok(parse_lvs(&exec::run(&lvs_argv(&def.volume_group()))?)?
        .into_iter()
        .find(|l| l.name == name))
}

/// `vol-create-as` in a logical pool. `backing` is a path of another LV to snapshot.
pub fn create_volume(
    def: &PoolDef,
    name: &str,
    capacity: u64,
    allocation: Option<u64>,
    backing: Option<&str>,
) -> Result<VolInfo, StorageError> {
    exec::run(&lvcreate_argv(
        name,
        capacity,
        allocation,
        &def.volume_group(),
        backing,
    ))?;
    let lv = lv_named(def, name)?.ok_or_else(|| {
        StorageError::Internal(format!(
            "cannot find newly created volume '{}/{name}'",
            target(def)
        ))
    })?;
    Ok(vol_info(def, &lv))
}

/// `vol-delete`: lvremove, retried after deactivating the LV (libvirt's order).
pub fn delete_volume(path: &str) -> Result<(), StorageError> {
    if let Err(first) = exec::run(&lvremove_argv(path)) {
        if exec::run(&lvchange_off_argv(path)).is_err() {
            return Err(first);
        }
        exec::run(&lvremove_argv(path))?;
    }
    Ok(())
}

pub fn resize_volume(def: &PoolDef, v: &VolInfo, capacity: u64) -> Result<VolInfo, StorageError> {
    exec::run(&lvresize_argv(&v.path, capacity))?;
    let lv = lv_named(def, &v.name)?.ok_or_else(|| StorageError::NoVolume {
        kind: "name",
        value: v.name.clone(),
    })?;
    Ok(vol_info(def, &lv))
}

/// `vol-wipe` (zero algorithm): zeroes the whole device. A sparse LV would fill up and turn
/// inactive, so libvirt refuses it, and so do we.
pub fn wipe_volume(def: &PoolDef, v: &VolInfo) -> Result<(), StorageError> {
    if lv_named(def, &v.name)?.is_some_and(|l| l.sparse()) {
        return Err(StorageError::Unsupported(format!(
            "logical volume '{}' is sparse, volume wipe not supported",
            v.path
        )));
    }
    let p = Path::new(&v.path);
    let mut f = OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(StorageError::io("cannot open volume", p))?;
    let len = f
        .seek(SeekFrom::End(0))
        .map_err(StorageError::io("cannot size volume", p))?;
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off)
            .map_err(StorageError::io("cannot wipe volume", p))?;
        off += n as u64;
    }
    f.sync_all().map_err(StorageError::io("cannot sync", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_command_lines() {
        assert_eq!(pvcreate_argv("/dev/sdb", false), ["pvcreate", "/dev/sdb"]);
        assert_eq!(
            pvcreate_argv("/dev/sdb", true),
            ["pvcreate", "-ff", "-y", "/dev/sdb"]
        );
        assert_eq!(pvremove_argv("/dev/sdb"), ["pvremove", "/dev/sdb"]);
        assert_eq!(
            vgcreate_argv("vg0", &["/dev/a".into(), "/dev/b".into()]),
            ["vgcreate", "vg0", "/dev/a", "/dev/b"]
        );
        // libvirt's tests/storagepoolxml2argvdata/pool-logical.argv: "vgchange -aly HostVG".
        assert_eq!(
            vgchange_argv("HostVG", true),
            ["vgchange", "-aly", "HostVG"]
        );
        assert_eq!(
            vgchange_argv("HostVG", false),
            ["vgchange", "-aln", "HostVG"]
        );
        assert_eq!(vgremove_argv("vg0"), ["vgremove", "-f", "vg0"]);
        assert_eq!(pvs_argv(), ["pvs", "--noheadings", "-o", "pv_name,vg_name"]);
        assert_eq!(
            vgs_argv("vg0").join(" "),
            "vgs --separator : --noheadings --units b --unbuffered --nosuffix --options vg_size,vg_free vg0"
        );
        assert_eq!(
            lvs_argv("vg0").join(" "),
            "lvs --separator # --noheadings --units b --unbuffered --nosuffix --options lv_name,origin,uuid,devices,segtype,stripes,seg_size,vg_extent_size,size,lv_attr vg0"
        );
    }

    #[test]
    fn volume_command_lines() {
        assert_eq!(
            lvcreate_argv("a", 8 << 20, None, "vg0", None).join(" "),
            "lvcreate --name a -L 8192K vg0 --yes"
        );
        assert_eq!(
            lvcreate_argv("a", 8 << 20, Some(8 << 20), "vg0", None).join(" "),
            "lvcreate --name a -L 8192K vg0 --yes"
        );
        // Sparse: real allocation first, then the virtual size (sizes rounded up to KiB).
        assert_eq!(
            lvcreate_argv("s", 1 << 30, Some(1000), "vg0", None).join(" "),
            "lvcreate --name s -L 1K --type snapshot --virtualsize 1048576K vg0 --yes"
        );
        assert_eq!(
            lvcreate_argv("s", 1 << 30, Some(0), "vg0", None).join(" "),
            "lvcreate --name s -L 1K --type snapshot --virtualsize 1048576K vg0 --yes"
        );
        assert_eq!(
            lvcreate_argv("snap", 4096, None, "vg0", Some("/dev/vg0/base")).join(" "),
            "lvcreate --name snap -L 4K -s /dev/vg0/base --yes"
        );
        assert_eq!(
            lvremove_argv("/dev/vg0/a"),
            ["lvremove", "-f", "/dev/vg0/a"]
        );
        assert_eq!(
            lvchange_off_argv("/dev/vg0/a"),
            ["lvchange", "-aln", "/dev/vg0/a"]
        );
        assert_eq!(
            lvresize_argv("/dev/vg0/a", 3 * 1024 * 1024 + 1),
            ["lvresize", "--yes", "-L", "3073K", "/dev/vg0/a"]
        );
    }

    #[test]
    fn parses_vgs() {
        let f = parse_vgs("vg", "  10603200512:4328521728\n").unwrap();
        assert_eq!(
            f,
            PoolFigures {
                capacity: 10603200512,
                allocation: 10603200512 - 4328521728,
                available: 4328521728
            }
        );
        assert_eq!(parse_vgs("vg", "  100:40:\n").unwrap().allocation, 60);
        assert!(parse_vgs("vg", "").is_err());
        assert!(parse_vgs("vg", " x:y").is_err());
    }

    #[test]
    fn parses_lvs_like_libvirt() {
        // The sample in libvirt's virStorageBackendLogicalFindLVs, plus an inactive LV, a thin
        // pool and a sparse volume.
        let out = "  RootLV##06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky#/dev/hda2(0)#linear#1#5234491392#33554432#5234491392#-wi-ao\n\
  Test3##UB5hFw-kmlm-LSoX-EI1t-ioVd-h7GL-M0W8Ht#/dev/hda2(251)#linear#1#2181038080#33554432#2181038080#-wi-a-\n\
  Test3#Test2#UB5hFw-kmlm-LSoX-EI1t-ioVd-h7GL-M0W8Ht#/dev/hda2(187)#linear#1#1040187392#33554432#1040187392#swi-a-\n\
  Off##abc#/dev/hda2(300)#linear#1#4194304#4194304#4194304#-wi---\n\
  pool##def#pool_tdata(0)#thin-pool#1#4194304#4194304#4194304#twi-a-tz--\n\
  sp#[sp_vorigin]#ghi#/dev/hda2(400)#linear#1#4194304#4194304#1073741824#swi-a-s---\n";
        let lvs = parse_lvs(out).unwrap();
        let names: Vec<&str> = lvs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["RootLV", "Test3", "sp"]);
        assert_eq!(lvs[0].uuid, "06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky");
        assert_eq!(lvs[0].size, 5234491392);
        assert_eq!(lvs[1].origin, None);
        assert_eq!(
            lvs[2].origin, None,
            "a sparse volume's hidden origin is no backing store"
        );
        assert!(lvs[2].sparse());
        assert!(parse_lvs("a#b\n").is_err());
        assert!(parse_lvs("").unwrap().is_empty());
    }

    #[test]
    fn checks_the_volume_group_exists() {
        let def = |src: &str| {
            PoolDef::parse(&format!(
                "<pool type='logical'><name>p</name><source>{src}<name>vg0</name></source></pool>"
            ))
            .unwrap()
        };
        let pvs = parse_pvs("  /dev/loop1 vg0\n  /dev/loop2\n  /dev/loop3 other\n");
        assert_eq!(pvs.len(), 2);
        assert!(check_source(&def(""), &pvs).is_ok());
        assert!(check_source(&def("<device path='/dev/loop1'/>"), &pvs).is_ok());
        assert_eq!(
            check_source(&def("<device path='/dev/loop3'/>"), &pvs)
                .unwrap_err()
                .to_string(),
            "unsupported configuration: cannot find any matching source devices for logical volume group 'vg0'"
        );
        assert_eq!(
            check_source(&def(""), &[]).unwrap_err().to_string(),
            "unsupported configuration: cannot find logical volume group name 'vg0' (run pool-build to create it)"
        );
    }
}
