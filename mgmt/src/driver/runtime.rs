//! The runtime directory of a connection: per-domain status files (`NAME.xml`, a `<domstatus>`
//! wrapping the live definition, like libvirt's), the VMM's pid file, control socket and exit
//! status, and the shut-off reason a domain keeps until the host reboots.

use std::path::{Path, PathBuf};

use super::state::{Reason, State};
use super::DriverError;
use crate::store::{write_atomic, FileLock};
use crate::xml::tree::{self, Document, Element, Node};
use crate::xml::Domain;

/// The files of one domain in the runtime directory.
pub struct RunFiles {
    dir: PathBuf,
    name: String,
}

/// What the status file of an active domain says.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub reason: Reason,
    pub pid: i32,
    pub id: u32,
    /// The live definition (with `id=` and the console's pty path).
    pub live: Domain,
}

/// How a VMM process ended, from its exit-status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Shutdown,
    Destroyed,
    Crashed(String),
    Failed(String),
}

impl ExitStatus {
    fn parse(text: &str) -> Option<ExitStatus> {
        let text = text.trim_end();
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        Some(match word {
            "shutdown" => ExitStatus::Shutdown,
            "destroyed" => ExitStatus::Destroyed,
            "crashed" => ExitStatus::Crashed(rest.to_string()),
            "failed" => ExitStatus::Failed(rest.to_string()),
            _ => return None,
        })
    }

    pub fn reason(&self) -> Reason {
        match self {
            ExitStatus::Shutdown => Reason::Shutdown,
            ExitStatus::Destroyed => Reason::Destroyed,
            ExitStatus::Crashed(_) => Reason::Crashed,
            ExitStatus::Failed(_) => Reason::Failed,
        }
    }
}

impl RunFiles {
    pub fn new(dir: &Path, name: &str) -> RunFiles {
        RunFiles {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    pub fn status(&self) -> PathBuf {
        self.file("xml")
    }
    /// The definition handed to the VMM (not `.xml`, so it is never mistaken for a status file).
    pub fn vmm_def(&self) -> PathBuf {
        self.file("def")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.file("pid")
    }
    pub fn control(&self) -> PathBuf {
        self.file("ctl")
    }
    pub fn exit(&self) -> PathBuf {
        self.file("exit")
    }
    pub fn lock(&self) -> PathBuf {
        self.file("lock")
    }
    pub fn shutoff(&self) -> PathBuf {
        self.file("shutoff")
    }
    pub fn console_lock(&self) -> PathBuf {
        self.file("console")
    }

    /// Whether the VMM holds its pid file, i.e. is alive (the kernel drops the lock when it dies).
    pub fn vmm_alive(&self) -> bool {
        FileLock::is_held(&self.pidfile())
    }

    pub fn read_status(&self) -> Result<Option<Status>, DriverError> {
        let path = self.status();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DriverError::io("cannot read status file", &path)(e)),
        };
        let bad = || DriverError::Failed(format!("corrupt status file {}", path.display()));
        let doc = tree::parse(&text).map_err(|_| bad())?;
        let root = &doc.root;
        let state = root.attr("state").and_then(State::parse).ok_or_else(bad)?;
        let reason = Reason::parse(root.attr("reason").unwrap_or_default());
        let pid = root
            .attr("pid")
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let id = root
            .attr("id")
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let dom_el = root.child("domain").ok_or_else(bad)?.clone();
        let live = Domain::from_document(Document {
            prolog: Vec::new(),
            root: dom_el,
            epilog: Vec::new(),
        })?;
        Ok(Some(Status {
            state,
            reason,
            pid,
            id,
            live,
        }))
    }

    pub fn write_status(&self, status: &Status) -> Result<(), DriverError> {
        let mut root = Element::new("domstatus");
        root.set_attr("state", status.state.file_name());
        root.set_attr("reason", status.reason.as_str());
        root.set_attr("pid", status.pid.to_string());
        root.set_attr("id", status.id.to_string());
        root.children
            .push(Node::Element(status.live.document().root.clone()));
        let doc = Document {
            prolog: Vec::new(),
            root,
            epilog: Vec::new(),
        };
        let path = self.status();
        write_atomic(&path, doc.to_xml().as_bytes())
            .map_err(DriverError::io("cannot write status file", &path))
    }

    pub fn read_exit(&self) -> Option<ExitStatus> {
        std::fs::read_to_string(self.exit())
            .ok()
            .and_then(|t| ExitStatus::parse(&t))
    }

    /// The reason a shut-off domain keeps (until the runtime directory is cleared at host boot).
    pub fn shutoff_reason(&self) -> Reason {
        std::fs::read_to_string(self.shutoff())
            .map(|t| Reason::parse(&t))
            .unwrap_or(Reason::Unknown)
    }

    pub fn set_shutoff_reason(&self, reason: Reason) {
        let _ = write_atomic(&self.shutoff(), reason.as_str().as_bytes());
    }

    /// Removes what a VMM run leaves behind (not the lock files, which others may hold).
    pub fn clear_run(&self) {
        for p in [
            self.status(),
            self.vmm_def(),
            self.pidfile(),
            self.control(),
            self.exit(),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Removes every file of this domain (for a transient domain that ended, or an undefine).
    pub fn clear_all(&self) {
        self.clear_run();
        let _ = std::fs::remove_file(self.shutoff());
    }
}

/// Names of the domains that have a status file.
pub fn active_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".xml")
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        })
        .collect()
}
