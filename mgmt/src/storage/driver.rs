//! The pool store: persistent definitions (`storage/NAME.xml`), autostart links
//! (`storage/autostart/NAME.xml`) and the live state of active pools (`run/ironvirt/storage/NAME.xml`),
//! and the pool lifecycle (build, start, refresh, destroy, delete), whose per-type work is in
//! [`super::backend`].
//!
//! There is no daemon: what libvirtd does at its own start (define the `default` pool once, start
//! autostart pools) happens the first time a storage command runs after the host booted (the run
//! directory is on tmpfs, so a marker there says whether that has happened).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::store::{ensure_dir, write_atomic, FileLock, Paths};

use super::backend::{dir, Backend, BuildFlags};
use super::pool_xml::{PoolDef, PoolSpec};
use super::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    Inactive,
    Running,
}

impl PoolState {
    /// The word `pool-info` and `pool-list --details` use.
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolState::Inactive => "inactive",
            PoolState::Running => "running",
        }
    }
}

/// One pool as the commands see it.
#[derive(Debug, Clone)]
pub struct PoolRecord {
    /// The live definition (with figures) while active, else the persistent one.
    pub def: PoolDef,
    /// The persistent definition (`pool-dumpxml --inactive`).
    pub config: Option<PoolDef>,
    pub state: PoolState,
    pub autostart: bool,
}

impl PoolRecord {
    pub fn name(&self) -> &str {
        self.def.name()
    }

    pub fn is_active(&self) -> bool {
        self.state == PoolState::Running
    }

    pub fn persistent(&self) -> bool {
        self.config.is_some()
    }

    pub fn uuid(&self) -> String {
        self.def.uuid().unwrap_or_default()
    }

    /// The target directory (dir pools always have one).
    pub fn target(&self) -> PathBuf {
        PathBuf::from(self.def.target_path().unwrap_or_default())
    }
}

/// Capacity, allocation and available bytes of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolFigures {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

pub struct StorageDriver {
    config_dir: PathBuf,
    run_dir: PathBuf,
    images_dir: PathBuf,
}

const DEFAULT_MARKER: &str = ".default-pool-defined";
const AUTOSTART_MARKER: &str = ".autostarted";

impl StorageDriver {
    /// Opens the store of a connection; defines the `default` pool the first time, and starts
    /// autostart pools once per host boot.
    pub fn open(paths: &Paths) -> Result<StorageDriver, StorageError> {
        let run_dir = paths
            .run
            .parent()
            .map(|p| p.join("storage"))
            .unwrap_or_else(|| paths.run.join("storage"));
        let d = StorageDriver {
            config_dir: paths.storage.clone(),
            run_dir,
            images_dir: paths.data.join("images"),
        };
        for dir in [&d.config_dir, &d.run_dir] {
            ensure_dir(dir).map_err(StorageError::io("cannot create directory", dir))?;
        }
        let _g = d.lock()?;
        d.first_use()?;
        Ok(d)
    }

    fn first_use(&self) -> Result<(), StorageError> {
        let marker = self.config_dir.join(DEFAULT_MARKER);
        if !marker.exists() {
            if self.config_path("default").exists() {
                // Defined by hand before we got here: leave it alone.
            } else {
                let spec = PoolSpec {
                    name: "default".into(),
                    pool_type: "dir".into(),
                    target: Some(self.images_dir.display().to_string()),
                    ..PoolSpec::default()
                };
                self.define_locked(&spec.to_xml())?;
                self.set_autostart_locked("default", true)?;
            }
            write_atomic(&marker, b"").map_err(StorageError::io("cannot write", &marker))?;
        }
        let booted = self.run_dir.join(AUTOSTART_MARKER);
        if !booted.exists() {
            for name in self.config_names()? {
                if self.autostart_path(&name).exists() && !self.state_path(&name).exists() {
                    if name == "default" {
                        dir::build(&self.config(&name)?, false)?;
                    }
                    // A pool that cannot start stays inactive, as with libvirtd.
                    let _ = self.start_locked(&name);
                }
            }
            write_atomic(&booted, b"").map_err(StorageError::io("cannot write", &booted))?;
        }
        Ok(())
    }

    /// Serializes changes to the pool store between concurrent invocations.
    pub fn lock(&self) -> Result<FileLock, StorageError> {
        let p = self.run_dir.join(".lock");
        FileLock::exclusive(&p).map_err(StorageError::io("cannot lock", &p))
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.config_dir.join(format!("{name}.xml"))
    }

    fn autostart_path(&self, name: &str) -> PathBuf {
        self.config_dir
            .join("autostart")
            .join(format!("{name}.xml"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.xml"))
    }

    fn read_def(path: &Path) -> Result<PoolDef, StorageError> {
        let bytes = std::fs::read(path).map_err(StorageError::io("cannot read", path))?;
        PoolDef::parse_bytes(&bytes)
    }

    fn config(&self, name: &str) -> Result<PoolDef, StorageError> {
        Self::read_def(&self.config_path(name))
    }

    fn names_in(dir: &Path) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(StorageError::io("cannot list", dir)(e)),
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = file.strip_suffix(".xml") {
                if !n.starts_with('.') && e.path().is_file() {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    fn config_names(&self) -> Result<Vec<String>, StorageError> {
        Self::names_in(&self.config_dir)
    }

    fn record(&self, name: &str) -> Result<Option<PoolRecord>, StorageError> {
        let config = match self.config_path(name).exists() {
            true => Some(self.config(name)?),
            false => None,
        };
        let live = match self.state_path(name).exists() {
            true => Some(Self::read_def(&self.state_path(name))?),
            false => None,
        };
        let state = if live.is_some() {
            PoolState::Running
        } else {
            PoolState::Inactive
        };
        let Some(def) = live.or_else(|| config.clone()) else {
            return Ok(None);
        };
        Ok(Some(PoolRecord {
            def,
            config,
            state,
            autostart: self.autostart_path(name).exists(),
        }))
    }

    /// Every pool, sorted by name.
    pub fn list(&self) -> Result<Vec<PoolRecord>, StorageError> {
        let mut names = self.config_names()?;
        names.extend(Self::names_in(&self.run_dir)?);
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for n in names {
            if let Some(r) = self.record(&n)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A pool by name, else by UUID (virsh's lookup order).
    pub fn lookup(&self, name_or_uuid: &str) -> Result<PoolRecord, StorageError> {
        if !name_or_uuid.contains('/') {
            if let Some(r) = self.record(name_or_uuid)? {
                return Ok(r);
            }
        }
        if uuid::Uuid::parse_str(name_or_uuid).is_ok() {
            let want = name_or_uuid.to_ascii_lowercase();
            if let Some(r) = self
                .list()?
                .into_iter()
                .find(|r| r.uuid().to_ascii_lowercase() == want)
            {
                return Ok(r);
            }
            return Err(StorageError::NoPool {
                kind: "uuid",
                value: name_or_uuid.to_string(),
            });
        }
        Err(StorageError::NoPool {
            kind: "name",
            value: name_or_uuid.to_string(),
        })
    }

    /// An active pool, or libvirt's "not active" error.
    pub fn active(&self, name_or_uuid: &str) -> Result<PoolRecord, StorageError> {
        let r = self.lookup(name_or_uuid)?;
        if !r.is_active() {
            return Err(StorageError::PoolInactive(r.name().to_string()));
        }
        Ok(r)
    }

    /// `pool-define`: stores a persistent definition (replacing the config of a pool of the same
    /// name and UUID).
    pub fn define(&self, xml: &str) -> Result<PoolDef, StorageError> {
        let _g = self.lock()?;
        self.define_locked(xml)
    }

    fn check_unique(&self, def: &mut PoolDef) -> Result<(), StorageError> {
        for other in self.list()? {
            if other.name() == def.name() {
                match (def.uuid(), other.def.uuid()) {
                    (Some(a), Some(b)) if !a.eq_ignore_ascii_case(&b) => {
                        return Err(StorageError::Invalid(format!(
                            "pool '{}' is already defined with uuid {b}",
                            def.name()
                        )))
                    }
                    _ => continue,
                }
            }
            if def.uuid().is_some() && def.uuid() == other.def.uuid() {
                return Err(StorageError::Invalid(format!(
                    "pool '{}' already exists with uuid {}",
                    other.name(),
                    other.uuid()
                )));
            }
            if same_storage(def, &other.def) {
                return Err(StorageError::PoolSourceConflict(other.name().to_string()));
            }
        }
        Ok(())
    }

    fn define_locked(&self, xml: &str) -> Result<PoolDef, StorageError> {
        let mut def = PoolDef::parse(xml)?;
        if def.uuid().is_none() {
            // Redefining keeps the pool's UUID.
            if let Some(old) = self.record(def.name())? {
                def.set_uuid(&old.uuid());
            }
        }
        self.check_unique(&mut def)?;
        def.normalize();
        let p = self.config_path(def.name());
        write_atomic(&p, def.to_xml().as_bytes()).map_err(StorageError::io("cannot write", &p))?;
        Ok(def)
    }

    /// `pool-create`: a transient pool, started at once.
    pub fn create(&self, xml: &str) -> Result<PoolDef, StorageError> {
        let _g = self.lock()?;
        let mut def = PoolDef::parse(xml)?;
        if self.record(def.name())?.is_some() {
            return Err(StorageError::PoolExists(def.name().to_string()));
        }
        self.check_unique(&mut def)?;
        def.normalize();
        self.start_def(def.clone())?;
        Ok(def)
    }

    /// `pool-build`: prepares the pool's storage (target directory, filesystem, volume group;
    /// see [`Backend::build`]).
    pub fn build(&self, name: &str, flags: BuildFlags) -> Result<(), StorageError> {
        let _g = self.lock()?;
        let r = self.lookup(name)?;
        if r.is_active() {
            return Err(StorageError::PoolActive(r.name().to_string()));
        }
        Backend::of(&r.def)?.build(&r.def, flags)
    }

    /// `pool-start`.
    pub fn start(&self, name: &str) -> Result<(), StorageError> {
        let _g = self.lock()?;
        self.start_locked(name)
    }

    fn start_locked(&self, name: &str) -> Result<(), StorageError> {
        let r = self.lookup(name)?;
        if r.is_active() {
            return Err(StorageError::PoolActive(r.name().to_string()));
        }
        self.start_def(r.def)
    }

    /// Starts the backend (mount, vgchange) and records the live state; a failure after the
    /// backend started stops it again, so a pool that failed to start leaves nothing mounted
    /// or active.
    fn start_def(&self, def: PoolDef) -> Result<(), StorageError> {
        let backend = Backend::of(&def)?;
        backend.start(&def)?;
        if let Err(e) = self.activate(backend, def.clone()) {
            let _ = backend.stop(&def);
            return Err(e);
        }
        Ok(())
    }

    /// Writes the live state with fresh figures.
    fn activate(&self, backend: Backend, mut def: PoolDef) -> Result<(), StorageError> {
        self.fill_live(backend, &mut def)?;
        let p = self.state_path(def.name());
        write_atomic(&p, def.to_xml().as_bytes()).map_err(StorageError::io("cannot write", &p))
    }

    fn fill_live(&self, backend: Backend, def: &mut PoolDef) -> Result<(), StorageError> {
        let f = backend.figures(def)?;
        def.set_figures(f.capacity, f.allocation, f.available);
        if backend.file_volumes() {
            // The mounted filesystem's root (fs, netfs) or the directory itself.
            let target = dir::target(def);
            let meta =
                std::fs::metadata(&target).map_err(StorageError::io("cannot stat", &target))?;
            def.set_target_permissions(meta.mode(), meta.uid(), meta.gid());
        }
        Ok(())
    }

    /// `pool-refresh`: new figures (volumes are read from the directory or lvs every time).
    pub fn refresh(&self, name: &str) -> Result<(), StorageError> {
        let _g = self.lock()?;
        let r = self.active(name)?;
        let mut def = r.def.clone();
        self.fill_live(Backend::of(&def)?, &mut def)?;
        let p = self.state_path(def.name());
        write_atomic(&p, def.to_xml().as_bytes()).map_err(StorageError::io("cannot write", &p))
    }

    /// `pool-destroy`: stops the pool (unmounts, deactivates; a transient one disappears).
    /// Refused while a running domain uses one of its volumes: `in_use` says which paths are
    /// open. If the backend cannot stop (a busy mount), the pool stays active.
    pub fn destroy(&self, name: &str, in_use: &dyn Fn(&Path) -> bool) -> Result<(), StorageError> {
        let _g = self.lock()?;
        let r = self.active(name)?;
        if in_use(&r.target()) {
            return Err(StorageError::Invalid(format!(
                "storage pool '{}' has volumes in use by running domains",
                r.name()
            )));
        }
        Backend::of(&r.def)?.stop(&r.def)?;
        let p = self.state_path(r.name());
        std::fs::remove_file(&p).map_err(StorageError::io("cannot remove", &p))
    }

    /// `pool-undefine`: forgets the persistent definition (an active pool becomes transient).
    pub fn undefine(&self, name: &str) -> Result<String, StorageError> {
        let _g = self.lock()?;
        let r = self.lookup(name)?;
        if !r.persistent() {
            return Err(StorageError::Invalid(format!(
                "Requested operation is not valid: cannot undefine transient storage pool '{}'",
                r.name()
            )));
        }
        let _ = std::fs::remove_file(self.autostart_path(r.name()));
        let p = self.config_path(r.name());
        std::fs::remove_file(&p).map_err(StorageError::io("cannot remove", &p))?;
        Ok(r.name().to_string())
    }

    /// `pool-delete`: removes an inactive pool's storage (the empty target directory, or the
    /// volume group and its PV labels).
    pub fn delete(&self, name: &str) -> Result<String, StorageError> {
        let _g = self.lock()?;
        let r = self.lookup(name)?;
        if r.is_active() {
            return Err(StorageError::PoolActive(r.name().to_string()));
        }
        Backend::of(&r.def)?.delete(&r.def)?;
        Ok(r.name().to_string())
    }

    /// `pool-autostart [--disable]`.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<String, StorageError> {
        let _g = self.lock()?;
        let r = self.lookup(name)?;
        self.set_autostart_locked(r.name(), on)?;
        Ok(r.name().to_string())
    }

    fn set_autostart_locked(&self, name: &str, on: bool) -> Result<(), StorageError> {
        if !self.config_path(name).exists() {
            return Err(StorageError::Invalid(
                "Requested operation is not valid: cannot set autostart for transient pool".into(),
            ));
        }
        crate::store::set_autostart_link(&self.config_path(name), &self.autostart_path(name), on)
            .map_err(|e| StorageError::io(e.what, &e.path)(e.source))
    }

    /// Capacity figures of a pool as stored at its last start or refresh.
    pub fn figures_of(r: &PoolRecord) -> PoolFigures {
        let read = |name: &str| {
            r.def
                .document()
                .root
                .child_text(name)
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0)
        };
        PoolFigures {
            capacity: read("capacity"),
            allocation: read("allocation"),
            available: read("available"),
        }
    }
}

/// Whether two pools would use the same storage (libvirt's "Storage source conflict"): the
/// same directory for file pools, the same device for fs pools, the same share for netfs, the
/// same volume group for logical pools.
fn same_storage(a: &PoolDef, b: &PoolDef) -> bool {
    let files = |d: &PoolDef| matches!(d.pool_type(), "dir" | "fs" | "netfs");
    if files(a) && files(b) && a.target_path().is_some() && a.target_path() == b.target_path() {
        return true;
    }
    match (a.pool_type(), b.pool_type()) {
        ("fs", "fs") => {
            let (da, db) = (a.source_devices(), b.source_devices());
            da.iter().any(|d| db.contains(d))
        }
        ("netfs", "netfs") => {
            a.source_hosts() == b.source_hosts()
                && a.source_dir().is_some()
                && a.source_dir() == b.source_dir()
        }
        ("logical", "logical") => a.volume_group() == b.volume_group(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(xml: &str) -> PoolDef {
        PoolDef::parse(xml).unwrap()
    }

    #[test]
    fn source_conflicts_per_type() {
        let fs = |n: &str, dev: &str, t: &str| {
            def(&format!("<pool type='fs'><name>{n}</name><source><device path='{dev}'/></source><target><path>{t}</path></target></pool>"))
        };
        let dir = def("<pool type='dir'><name>d</name><target><path>/srv/a</path></target></pool>");
        assert!(
            same_storage(&fs("a", "/dev/sdb", "/srv/a"), &dir),
            "same target directory"
        );
        assert!(same_storage(
            &fs("a", "/dev/sdb", "/x"),
            &fs("b", "/dev/sdb", "/y")
        ));
        assert!(!same_storage(
            &fs("a", "/dev/sdb", "/x"),
            &fs("b", "/dev/sdc", "/y")
        ));
        let nfs = |n: &str, h: &str| {
            def(&format!("<pool type='netfs'><name>{n}</name><source><host name='{h}'/><dir path='/e'/></source><target><path>/m{n}</path></target></pool>"))
        };
        assert!(same_storage(&nfs("a", "h"), &nfs("b", "h")));
        assert!(!same_storage(&nfs("a", "h"), &nfs("b", "g")));
        let lv = |n: &str, vg: &str| {
            def(&format!(
                "<pool type='logical'><name>{n}</name><source><name>{vg}</name></source></pool>"
            ))
        };
        assert!(same_storage(&lv("a", "vg"), &lv("b", "vg")));
        assert!(!same_storage(&lv("a", "vg"), &lv("b", "vg2")));
    }
}
