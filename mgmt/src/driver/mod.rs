//! The domain driver: what `virsh` asks libvirtd's QEMU driver, done directly against the state
//! store and the VMM processes. Every function here is what one CLI command does; the CLI only
//! parses arguments and prints.
//!
//! Concurrency: operations on one domain serialize on its lock file (`run/NAME.lock`); operations
//! that create or remove domains also take the driver lock (`run/.driver-lock`), always after the
//! domain lock. Readers take no lock and never block behind a slow start.

mod error;
mod lifecycle;
mod process;
mod resources;
mod runtime;
mod state;
pub mod stats;

use std::path::{Path, PathBuf};

pub use error::DriverError;
pub use lifecycle::{ShutdownMode, StartFlags};
pub use resources::Scope as ChangeScope;
pub use runtime::{ExitStatus, RunFiles, Status};
pub use state::{Reason, State};

use crate::store::{ensure_dir, write_atomic, Env, FileLock, Paths};
use crate::uri::ConnectUri;
use crate::xml::Domain;

/// An open connection to the local store of one scope.
pub struct Connection {
    uri: ConnectUri,
    paths: Paths,
    vmm: PathBuf,
}

/// One domain as `list`, `dominfo` and friends see it.
#[derive(Debug, Clone)]
pub struct DomainRecord {
    pub name: String,
    pub uuid: String,
    /// Domain id while active.
    pub id: Option<u32>,
    pub state: State,
    pub reason: Reason,
    pub persistent: bool,
    pub autostart: bool,
    /// The VMM's pid while active.
    pub pid: Option<i32>,
    /// The live definition while active, else the persistent one.
    pub def: Domain,
    /// The persistent definition (what `dumpxml --inactive` shows).
    pub config: Option<Domain>,
}

impl DomainRecord {
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// The definition `dumpxml --inactive` shows: the persistent one, or the live one without its
    /// runtime details for a transient domain.
    pub fn inactive_def(&self) -> &Domain {
        self.config.as_ref().unwrap_or(&self.def)
    }
}

/// Undefine options.
#[derive(Debug, Clone, Copy, Default)]
pub struct UndefineFlags {
    pub remove_all_storage: bool,
    pub nvram: bool,
    pub keep_nvram: bool,
}

impl Connection {
    /// Opens a local connection (remote URIs are run through ssh by the CLI, never opened here).
    pub fn open(uri: ConnectUri, env: &Env) -> Result<Connection, DriverError> {
        if uri.ssh.is_some() {
            return Err(DriverError::InvalidArg(format!(
                "{} is a remote URI: run the command on the remote host",
                uri.text
            )));
        }
        let paths = env.paths(uri.scope);
        for dir in [&paths.domains, &paths.run, &paths.logs] {
            ensure_dir(dir).map_err(DriverError::io("cannot create directory", dir))?;
        }
        Ok(Connection {
            uri,
            paths,
            vmm: vmm_binary(),
        })
    }

    /// Uses `vmm` instead of the `ironvirt-vmm` found next to this program (tests, embedders).
    pub fn with_vmm(mut self, vmm: PathBuf) -> Connection {
        self.vmm = vmm;
        self
    }

    pub fn uri(&self) -> &str {
        &self.uri.text
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    fn run_files(&self, name: &str) -> RunFiles {
        RunFiles::new(&self.paths.run, name)
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.paths.domains.join(format!("{name}.xml"))
    }

    fn autostart_path(&self, name: &str) -> PathBuf {
        self.paths
            .domains
            .join("autostart")
            .join(format!("{name}.xml"))
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.paths.logs.join(format!("{name}.log"))
    }

    fn driver_lock(&self) -> Result<FileLock, DriverError> {
        let p = self.paths.run.join(".driver-lock");
        FileLock::exclusive(&p).map_err(DriverError::io("cannot lock", &p))
    }

    fn domain_lock(&self, name: &str) -> Result<FileLock, DriverError> {
        let p = self.run_files(name).lock();
        FileLock::exclusive(&p).map_err(DriverError::io("cannot lock", &p))
    }

    fn read_config(&self, name: &str) -> Result<Option<Domain>, DriverError> {
        let path = self.config_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Domain::parse_bytes(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DriverError::io("cannot read", &path)(e)),
        }
    }

    fn write_config(&self, def: &Domain) -> Result<(), DriverError> {
        let path = self.config_path(def.name());
        write_atomic(&path, inactive_xml(def).as_bytes())
            .map_err(DriverError::io("cannot write", &path))
    }

    /// Notices a VMM that ended since the last look: records why, and clears its runtime files.
    /// Returns the status of a domain that is still active. Without `locked` (the caller holds the
    /// domain lock) cleanup happens only if the lock is free, so readers never wait.
    fn refresh(&self, name: &str, locked: bool) -> Result<Option<Status>, DriverError> {
        let files = self.run_files(name);
        let Some(status) = files.read_status()? else {
            return Ok(None);
        };
        if files.vmm_alive() {
            return Ok(Some(status));
        }
        let guard = if locked {
            None
        } else {
            match FileLock::try_exclusive(&files.lock()) {
                Ok(Some(g)) => Some(g),
                // Somebody is working on this domain: report what we see, they clean up.
                _ => return Ok(None),
            }
        };
        // Re-check under the lock: another invocation may have cleaned up (or restarted) already.
        if !locked && (files.vmm_alive() || files.read_status()?.is_none()) {
            drop(guard);
            return self.refresh(name, false);
        }
        let reason = files.read_exit().map_or(Reason::Crashed, |e| e.reason());
        self.finish_run(name, reason);
        Ok(None)
    }

    /// Cleans up after a VMM that ended (the caller holds the domain lock).
    fn finish_run(&self, name: &str, reason: Reason) {
        let files = self.run_files(name);
        files.clear_run();
        if self.config_path(name).exists() {
            files.set_shutoff_reason(reason);
        } else {
            // A transient domain disappears with its VM.
            files.clear_all();
        }
    }

    fn record(&self, name: &str) -> Result<Option<DomainRecord>, DriverError> {
        let config = self.read_config(name)?;
        let status = self.refresh(name, false)?;
        let autostart = self.autostart_path(name).exists();
        Ok(match (status, config) {
            (Some(s), config) => Some(DomainRecord {
                name: name.to_string(),
                uuid: s.live.uuid_string(),
                id: Some(s.id),
                state: s.state,
                reason: s.reason,
                persistent: config.is_some(),
                autostart,
                pid: Some(s.pid),
                def: s.live,
                config,
            }),
            (None, Some(c)) => Some(DomainRecord {
                name: name.to_string(),
                uuid: c.uuid_string(),
                id: None,
                state: State::ShutOff,
                reason: self.run_files(name).shutoff_reason(),
                persistent: true,
                autostart,
                pid: None,
                def: c.clone(),
                config: Some(c),
            }),
            (None, None) => None,
        })
    }

    /// Every domain, active ones first by id, then inactive ones by name (virsh's order).
    pub fn list(&self) -> Result<Vec<DomainRecord>, DriverError> {
        let mut names: Vec<String> = runtime::active_names(&self.paths.run);
        if let Ok(entries) = std::fs::read_dir(&self.paths.domains) {
            for e in entries.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = f.strip_suffix(".xml") {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for n in names {
            if let Some(r) = self.record(&n)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| match (a.id, b.id) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        Ok(out)
    }

    /// Finds a domain the way virsh does: a number is an id, a UUID a UUID, anything else a name.
    pub fn lookup(&self, key: &str) -> Result<DomainRecord, DriverError> {
        if let Ok(id) = key.parse::<u32>() {
            if let Some(r) = self.list()?.into_iter().find(|r| r.id == Some(id)) {
                return Ok(r);
            }
        }
        if uuid::Uuid::parse_str(key).is_ok() && key.len() >= 32 {
            let want = uuid::Uuid::parse_str(key).map(|u| u.hyphenated().to_string());
            if let Some(r) = self
                .list()?
                .into_iter()
                .find(|r| Ok(&r.uuid) == want.as_ref())
            {
                return Ok(r);
            }
        }
        if valid_name(key) {
            if let Some(r) = self.record(key)? {
                return Ok(r);
            }
        }
        Err(DriverError::NoDomain {
            by: "name",
            key: key.to_string(),
        })
    }

    /// Defines (or redefines) a persistent domain from XML.
    pub fn define(&self, xml: &str) -> Result<DomainRecord, DriverError> {
        let def = Domain::parse(xml)?;
        let name = def.name().to_string();
        let _dl = self.domain_lock(&name)?;
        let _gl = self.driver_lock()?;
        self.check_unique(&def)?;
        self.write_config(&def)?;
        self.record(&name)?.ok_or(DriverError::NoDomain {
            by: "name",
            key: name,
        })
    }

    /// A name belongs to one UUID and a UUID to one name, across persistent and running domains.
    fn check_unique(&self, def: &Domain) -> Result<(), DriverError> {
        for r in self.list()? {
            if r.name == def.name() && r.uuid != def.uuid_string() {
                return Err(DriverError::NameTaken {
                    name: r.name,
                    uuid: r.uuid,
                });
            }
            if r.uuid == def.uuid_string() && r.name != def.name() {
                return Err(DriverError::UuidTaken {
                    other: r.name,
                    uuid: r.uuid,
                });
            }
        }
        Ok(())
    }

    /// Removes the persistent definition; a running domain goes on as a transient one.
    pub fn undefine(&self, key: &str, flags: UndefineFlags) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let _dl = self.domain_lock(&r.name)?;
        let _gl = self.driver_lock()?;
        if !r.persistent {
            return Err(DriverError::UndefineTransient);
        }
        if flags.nvram && flags.keep_nvram {
            return Err(DriverError::InvalidArg(
                "cannot both keep and delete nvram".into(),
            ));
        }
        // Storage removal (--remove-all-storage, --storage) is done by the CLI through the storage
        // layer; the driver only forgets the definition.
        let _ = std::fs::remove_file(self.autostart_path(&r.name));
        let path = self.config_path(&r.name);
        std::fs::remove_file(&path).map_err(DriverError::io("cannot remove", &path))?;
        if !r.is_active() {
            self.run_files(&r.name).clear_all();
        }
        Ok(r)
    }

    pub fn set_autostart(&self, key: &str, enable: bool) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let _dl = self.domain_lock(&r.name)?;
        if !r.persistent {
            return Err(DriverError::AutostartTransient);
        }
        crate::store::set_autostart_link(
            &self.config_path(&r.name),
            &self.autostart_path(&r.name),
            enable,
        )
        .map_err(|e| DriverError::io(e.what, &e.path)(e.source))?;
        Ok(r)
    }

    /// Replaces the persistent definition of an existing domain (`edit`, `setvcpus --config`, …).
    /// The name and UUID must stay those of `key`'s domain unless the edit renames it, which is
    /// then checked like a new definition.
    pub fn redefine(&self, key: &str, def: &Domain) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let _dl = self.domain_lock(&r.name)?;
        let _gl = self.driver_lock()?;
        if def.name() != r.name && def.uuid_string() == r.uuid {
            return Err(DriverError::Invalid(format!(
                "cannot rename domain '{}' to '{}' by editing its XML: use 'domrename'",
                r.name,
                def.name()
            )));
        }
        self.check_unique(def)?;
        self.write_config(def)?;
        self.record(def.name())?.ok_or(DriverError::NoDomain {
            by: "name",
            key: def.name().to_string(),
        })
    }

    /// Names of persistent domains marked for autostart.
    pub fn autostart_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.paths.domains.join("autostart"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".xml")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The console's pty of a running domain.
    pub fn console_pty(&self, key: &str) -> Result<(DomainRecord, PathBuf), DriverError> {
        let r = self.lookup(key)?;
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        let pty = r
            .def
            .serials()
            .iter()
            .chain(r.def.consoles())
            .filter(|c| c.kind == crate::xml::domain::ChardevType::Pty)
            .find_map(|c| c.source_path.clone());
        match pty {
            Some(p) => Ok((r, PathBuf::from(p))),
            None => Err(DriverError::Unsupported(
                "cannot find character device <null>: the domain has no <serial type='pty'> or <console type='pty'>".into(),
            )),
        }
    }
}

/// Where `ironvirt-vmm` is: `$IRONVIRT_VMM`, else beside this program, else on `$PATH`.
fn vmm_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("IRONVIRT_VMM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("ironvirt-vmm")))
        .filter(|p| p.exists())
    {
        return beside;
    }
    PathBuf::from("ironvirt-vmm")
}

/// A name that is safe as a file name in the store (libvirt refuses '/' at parse time already).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// The persistent form of a definition: no runtime `id`, no pty paths the VMM filled in.
pub fn inactive_xml(def: &Domain) -> String {
    let mut doc = def.document().clone();
    doc.root.remove_attr("id");
    doc.to_xml()
}

/// Creates the parent directory of `path`.
pub(crate) fn ensure_parent(path: &Path) -> Result<(), DriverError> {
    if let Some(dir) = path.parent() {
        ensure_dir(dir).map_err(DriverError::io("cannot create directory", dir))?;
    }
    Ok(())
}
