//! Domains and storage: `<disk type='volume'>` resolved to the volume's file at start, and which
//! volumes running domains hold (so they are not deleted or their pool stopped under them).

use std::path::{Path, PathBuf};

use crate::driver::{Connection, DriverError};
use crate::store::Paths;
use crate::xml::tree::Element;
use crate::xml::Domain;

use super::{StorageDriver, StorageError};

/// `def` with every `<disk type='volume'>` turned into the file disk it stands for: the source
/// becomes the volume's path and, unless `<driver type>` says otherwise, the volume's format.
pub fn resolve_volumes(paths: &Paths, def: &Domain) -> Result<Domain, StorageError> {
    let uses_volumes = def
        .devices()
        .any(|d| d.name == "disk" && d.attr("type") == Some("volume"));
    if !uses_volumes {
        return Ok(def.clone());
    }
    let storage = StorageDriver::open(paths)?;
    let mut doc = def.document().clone();
    let Some(devices) = doc.root.child_mut("devices") else {
        return Ok(def.clone());
    };
    for disk in devices
        .elements_mut()
        .filter(|d| d.name == "disk" && d.attr("type") == Some("volume"))
    {
        resolve_one(&storage, disk)?;
    }
    Domain::from_document(doc).map_err(|e| StorageError::Invalid(e.to_string()))
}

fn resolve_one(storage: &StorageDriver, disk: &mut Element) -> Result<(), StorageError> {
    let source = disk.child("source");
    let (Some(pool), Some(vol)) = (
        source.and_then(|s| s.attr("pool")).map(str::to_string),
        source.and_then(|s| s.attr("volume")).map(str::to_string),
    ) else {
        return Err(StorageError::Invalid(
            "missing pool or volume attribute of a disk source of type 'volume'".into(),
        ));
    };
    let record = storage.lookup(&pool)?;
    if !record.is_active() {
        return Err(StorageError::Invalid(format!(
            "storage pool '{pool}' containing volume '{vol}' is not active"
        )));
    }
    let v = storage.volume(Some(&pool), &vol)?;
    // A logical volume is a block device (libvirt's VIR_STORAGE_VOL_BLOCK): `<disk type='block'
    // ><source dev=…>`, raw; a file volume is `<disk type='file'><source file=…>` in its format.
    let block = v.vol_type == "block";
    let format = if v.format.is_empty() {
        "raw"
    } else {
        v.format.as_str()
    };
    disk.set_attr("type", if block { "block" } else { "file" });
    if let Some(src) = disk.child_mut("source") {
        src.remove_attr("pool");
        src.remove_attr("volume");
        src.remove_attr("mode");
        src.set_attr(if block { "dev" } else { "file" }, &v.path);
    }
    match disk.child_mut("driver") {
        Some(d) if d.attr("type").is_some() => {}
        Some(d) => d.set_attr("type", format),
        None => {
            let mut d = Element::new("driver");
            d.set_attr("name", "qemu");
            d.set_attr("type", format);
            disk.insert_after(d, &[]);
        }
    }
    Ok(())
}

/// The disk files the running domains of `conn` have open.
pub fn paths_in_use(conn: &Connection) -> Vec<PathBuf> {
    let Ok(domains) = conn.list() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in domains.iter().filter(|d| d.is_active()) {
        for disk in d.def.devices().filter(|e| e.name == "disk") {
            if let Some(src) = disk.child("source") {
                if let Some(p) = src.attr("file").or_else(|| src.attr("dev")) {
                    out.push(PathBuf::from(p));
                }
            }
        }
    }
    out
}

/// Whether `path` (a volume, or a pool's directory) is used by one of `in_use`.
pub fn used(in_use: &[PathBuf], path: &Path) -> bool {
    in_use.iter().any(|p| p == path || p.parent() == Some(path))
}

/// Starting a domain can fail in the storage driver (an inactive pool, a missing volume): the
/// domain driver reports it in the storage driver's words.
impl From<StorageError> for DriverError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Invalid(s) => DriverError::Invalid(s),
            other => DriverError::Vmm(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::VolCreate;
    use crate::store::Env;
    use crate::uri::Scope;

    #[test]
    fn volume_disks_become_file_disks() {
        let root = std::env::temp_dir().join(format!("ironvirt-voldisk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let env = Env {
            root: Some(root.clone()),
            is_root: true,
            ..Env::default()
        };
        let paths = env.paths(Scope::System);
        let s = StorageDriver::open(&paths).unwrap();
        s.create_volume(
            "default",
            &VolCreate {
                name: "d.qcow2".into(),
                capacity: 1 << 20,
                format: Some("qcow2".into()),
                ..VolCreate::default()
            },
        )
        .unwrap();
        let xml = "<domain type='kvm'><name>v</name><memory>65536</memory><os><type>hvm</type><kernel>/k</kernel></os>\
                   <devices><disk type='volume' device='disk'><source pool='default' volume='d.qcow2'/>\
                   <target dev='vda' bus='virtio'/></disk></devices></domain>";
        let d = Domain::parse(xml).unwrap();
        let r = resolve_volumes(&paths, &d).unwrap();
        let disk = r.devices().find(|e| e.name == "disk").unwrap();
        assert_eq!(disk.attr("type"), Some("file"));
        let want = paths.data.join("images/d.qcow2");
        assert_eq!(
            disk.child("source").unwrap().attr("file"),
            Some(want.to_str().unwrap())
        );
        assert_eq!(disk.child("driver").unwrap().attr("type"), Some("qcow2"));
        let cfg = crate::launch::vm_config(&r).unwrap();
        assert_eq!(cfg.disks.len(), 1);

        let missing = xml.replace("d.qcow2", "nope");
        let e = resolve_volumes(&paths, &Domain::parse(&missing).unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Storage volume not found: no storage vol with matching name 'nope'"
        );
        s.destroy("default", &|_| false).unwrap();
        let e = resolve_volumes(&paths, &d).unwrap_err();
        assert_eq!(
            DriverError::from(e).to_string(),
            "Requested operation is not valid: storage pool 'default' containing volume 'd.qcow2' is not active"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
