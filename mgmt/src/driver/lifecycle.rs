//! Starting, stopping, pausing and resetting domains.

use std::time::{Duration, Instant};

use ironvirt_vmm::control::{Client, Request};

use super::process::{Spawn, CONTROL_TIMEOUT};
use super::runtime::Status;
use super::state::{Reason, State};
use super::{inactive_xml, Connection, DomainRecord, DriverError};
use crate::launch::vm_config;
use crate::store::write_atomic;
use crate::xml::domain::ChardevType;
use crate::xml::tree::Element;
use crate::xml::Domain;

/// How long `destroy` waits for a polite exit before SIGKILL, and after it.
const QUIT_WAIT: Duration = Duration::from_secs(2);
const QUIT_GRACE: Duration = Duration::from_secs(8);
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default)]
pub struct StartFlags {
    pub paused: bool,
}

/// `shutdown --mode` / `reboot --mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    Acpi,
    Agent,
    Initctl,
    Signal,
    Paravirt,
}

impl ShutdownMode {
    pub fn parse(s: &str) -> Option<ShutdownMode> {
        Some(match s {
            "acpi" => ShutdownMode::Acpi,
            "agent" => ShutdownMode::Agent,
            "initctl" => ShutdownMode::Initctl,
            "signal" => ShutdownMode::Signal,
            "paravirt" => ShutdownMode::Paravirt,
            _ => return None,
        })
    }

    fn check(modes: &[ShutdownMode]) -> Result<(), DriverError> {
        for m in modes {
            match m {
                ShutdownMode::Acpi => {}
                ShutdownMode::Agent => {
                    return Err(DriverError::ArgUnsupported(
                        "guest agent is not available: ironvirt has no guest agent channel yet, use --mode acpi".into(),
                    ))
                }
                other => {
                    return Err(DriverError::ArgUnsupported(format!(
                        "shutdown mode '{}' is not supported: only 'acpi' is",
                        match other {
                            ShutdownMode::Initctl => "initctl",
                            ShutdownMode::Signal => "signal",
                            _ => "paravirt",
                        }
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Connection {
    fn next_id(&self) -> Result<u32, DriverError> {
        let _gl = self.driver_lock()?;
        let path = self.paths.run.join(".next-id");
        let id = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|&i| i > 0)
            .unwrap_or(1);
        write_atomic(&path, (id.saturating_add(1)).to_string().as_bytes())
            .map_err(DriverError::io("cannot write", &path))?;
        Ok(id)
    }

    /// `start`: boots a defined, inactive domain.
    pub fn start(&self, key: &str, flags: StartFlags) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let _dl = self.domain_lock(&r.name)?;
        if self.refresh(&r.name, true)?.is_some() {
            return Err(DriverError::AlreadyRunning);
        }
        let def = self.read_config(&r.name)?.ok_or(DriverError::NoDomain {
            by: "name",
            key: r.name.clone(),
        })?;
        self.launch(&def, flags)?;
        self.record(&r.name)?.ok_or(DriverError::NoDomain {
            by: "name",
            key: r.name,
        })
    }

    /// `create`: boots a domain from XML without defining it (a transient domain), or with the
    /// given XML as the live definition of an inactive persistent domain of the same name.
    pub fn create(&self, xml: &str, flags: StartFlags) -> Result<DomainRecord, DriverError> {
        let def = Domain::parse(xml)?;
        let name = def.name().to_string();
        let _dl = self.domain_lock(&name)?;
        {
            let _gl = self.driver_lock()?;
            self.check_unique(&def)?;
        }
        if self.refresh(&name, true)?.is_some() {
            return Err(DriverError::AlreadyActive(name));
        }
        self.launch(&def, flags)?;
        self.record(&name)?.ok_or(DriverError::NoDomain {
            by: "name",
            key: name,
        })
    }

    /// Runs `def` in a new VMM process (the caller holds the domain lock).
    fn launch(&self, def: &Domain, flags: StartFlags) -> Result<(), DriverError> {
        // Interfaces on virtual networks get their network's bridge (the network must be active).
        let def = &crate::network::domain::resolve_interfaces(&self.paths, def)?;
        // Volume disks become the files their pool holds (the pool must be active).
        let def = &crate::storage::domain::resolve_volumes(&self.paths, def)?;
        // The same check the VMM makes, but before a process exists: libvirt's error, at once.
        vm_config(def)?;
        let name = def.name();
        let files = self.run_files(name);
        files.clear_run();
        let def_path = files.vmm_def();
        write_atomic(&def_path, inactive_xml(def).as_bytes())
            .map_err(DriverError::io("cannot write", &def_path))?;
        let id = self.next_id()?;
        let log = self.log_path(name);
        let started = Spawn {
            vmm: &self.vmm,
            files: &files,
            log: &log,
            name,
            paused: flags.paused,
            vcpus: def.vcpus().current,
        }
        .run();
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                self.finish_run(name, Reason::Failed);
                return Err(e);
            }
        };
        if let Some(ended) = started.ended {
            self.finish_run(name, ended.reason());
            return Ok(());
        }
        let (state, reason) = if flags.paused {
            (State::Paused, Reason::User)
        } else {
            (State::Running, Reason::Booted)
        };
        files.write_status(&Status {
            state,
            reason,
            pid: started.pid,
            id,
            live: live_def(def, id, started.pty.as_deref())?,
        })?;
        let _ = std::fs::remove_file(files.shutoff());
        Ok(())
    }

    /// The active domain `key` with its lock held, or `NotRunning`.
    fn active(
        &self,
        key: &str,
    ) -> Result<(DomainRecord, Status, crate::store::FileLock), DriverError> {
        let r = self.lookup(key)?;
        let lock = self.domain_lock(&r.name)?;
        match self.refresh(&r.name, true)? {
            Some(s) => Ok((r, s, lock)),
            None => Err(DriverError::NotRunning),
        }
    }

    pub(super) fn control(&self, name: &str) -> Result<Client, DriverError> {
        Ok(Client::connect(
            &self.run_files(name).control(),
            CONTROL_TIMEOUT,
        )?)
    }

    /// `destroy`: ends the VM at once (`quit`, then SIGKILL unless `graceful`).
    pub fn destroy(&self, key: &str, graceful: bool) -> Result<DomainRecord, DriverError> {
        let (r, status, _lock) = self.active(key)?;
        let files = self.run_files(&r.name);
        let asked = self
            .control(&r.name)
            .and_then(|mut c| Ok(c.call(&Request::Quit)?))
            .is_ok();
        // A `quit` can be lost in a VMM that is rebuilding its machine (reboot): SIGTERM then.
        if !asked || !wait_dead(&files, QUIT_WAIT) {
            signal(status.pid, libc::SIGTERM, &files);
        }
        if !wait_dead(&files, QUIT_GRACE) {
            if graceful {
                return Err(DriverError::Failed(
                    "failed to terminate the ironvirt-vmm process with SIGTERM: try destroy without --graceful".into(),
                ));
            }
            signal(status.pid, libc::SIGKILL, &files);
            if !wait_dead(&files, KILL_GRACE) {
                return Err(DriverError::Failed(format!(
                    "failed to kill the ironvirt-vmm process {}",
                    status.pid
                )));
            }
        }
        self.finish_run(&r.name, Reason::Destroyed);
        Ok(r)
    }

    /// `shutdown`: asks the guest to power off (ACPI power button); returns at once.
    pub fn shutdown(&self, key: &str, modes: &[ShutdownMode]) -> Result<DomainRecord, DriverError> {
        ShutdownMode::check(modes)?;
        let (r, _status, _lock) = self.active(key)?;
        self.control(&r.name)?.call(&Request::SystemPowerdown)?;
        Ok(r)
    }

    /// `reboot`: an orderly reboot through the guest: the power button is pressed and, when the
    /// guest powers off, the VMM boots it again instead of exiting (libvirt's ACPI reboot).
    pub fn reboot(&self, key: &str, modes: &[ShutdownMode]) -> Result<DomainRecord, DriverError> {
        ShutdownMode::check(modes)?;
        let (r, _status, _lock) = self.active(key)?;
        self.control(&r.name)?.call(&Request::SystemReboot)?;
        Ok(r)
    }

    /// `reset`: a hard reset without the guest's cooperation.
    pub fn reset(&self, key: &str) -> Result<DomainRecord, DriverError> {
        let (r, _status, _lock) = self.active(key)?;
        self.control(&r.name)?.call(&Request::SystemReset)?;
        Ok(r)
    }

    /// `suspend`: stops the vCPUs (a paused domain stays paused).
    pub fn suspend(&self, key: &str) -> Result<DomainRecord, DriverError> {
        let (r, mut status, _lock) = self.active(key)?;
        self.control(&r.name)?.call(&Request::Stop)?;
        if status.state != State::Paused {
            status.state = State::Paused;
            status.reason = Reason::User;
            self.run_files(&r.name).write_status(&status)?;
        }
        Ok(r)
    }

    /// `resume`: lets a paused domain run again.
    pub fn resume(&self, key: &str) -> Result<DomainRecord, DriverError> {
        let (r, mut status, _lock) = self.active(key)?;
        if status.state != State::Paused {
            return Err(DriverError::NotPaused);
        }
        self.control(&r.name)?.call(&Request::Cont)?;
        status.state = State::Running;
        status.reason = Reason::Unpaused;
        self.run_files(&r.name).write_status(&status)?;
        Ok(r)
    }

    /// Starts every autostart domain that is not running; one result per domain.
    pub fn autostart_all(&self) -> Vec<(String, Result<(), DriverError>)> {
        self.autostart_names()
            .into_iter()
            .map(|name| {
                let result = match self.lookup(&name) {
                    Ok(r) if r.is_active() => Ok(()),
                    Ok(_) => self.start(&name, StartFlags::default()).map(|_| ()),
                    Err(e) => Err(e),
                };
                (name, result)
            })
            .collect()
    }
}

/// Signals the VMM only while it still holds its pid file, so a recycled pid is never hit.
fn signal(pid: i32, sig: i32, files: &super::RunFiles) {
    if files.vmm_alive() && pid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn wait_dead(files: &super::RunFiles, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while files.vmm_alive() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The live definition: the domain id on the root, and the pty the console got, as libvirt
/// shows them (`<source path='/dev/pts/N'/>`, and `tty=` on a pty `<console>`).
fn live_def(def: &Domain, id: u32, pty: Option<&str>) -> Result<Domain, DriverError> {
    let mut doc = def.document().clone();
    doc.root.set_attr("id", id.to_string());
    if let (Some(pty), Some(devices)) = (pty, doc.root.child_mut("devices")) {
        for dev in devices.elements_mut() {
            let is_pty = matches!(dev.attr("type"), None | Some("pty"));
            if !is_pty || !matches!(dev.name.as_str(), "serial" | "console") {
                continue;
            }
            if dev.name == "console" {
                dev.set_attr("tty", pty);
            }
            match dev.child_mut("source") {
                Some(src) => src.set_attr("path", pty),
                None => {
                    let mut src = Element::new("source");
                    src.set_attr("path", pty);
                    dev.insert_after(src, &[]);
                }
            }
        }
    }
    let _ = ChardevType::Pty;
    Ok(Domain::from_document(doc)?)
}
