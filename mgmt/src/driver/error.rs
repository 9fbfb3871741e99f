//! What a driver operation can fail with, worded as libvirt words it (error class first).

use crate::launch::LaunchError;
use crate::xml::DomainError;
use ironvirt_vmm::control::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("Domain not found: no domain with matching {by} '{key}'")]
    NoDomain { by: &'static str, key: String },
    #[error("Requested operation is not valid: domain is already running")]
    AlreadyRunning,
    #[error("operation failed: domain '{0}' is already active")]
    AlreadyActive(String),
    #[error("Requested operation is not valid: domain is not running")]
    NotRunning,
    #[error("Requested operation is not valid: domain is not paused")]
    NotPaused,
    #[error("operation failed: domain '{name}' already exists with uuid {uuid}")]
    NameTaken { name: String, uuid: String },
    #[error("operation failed: domain '{other}' is already defined with uuid {uuid}")]
    UuidTaken { other: String, uuid: String },
    #[error("Requested operation is not valid: cannot undefine transient domain")]
    UndefineTransient,
    #[error("Requested operation is not valid: cannot set autostart for transient domain")]
    AutostartTransient,
    #[error("Requested operation is not valid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Xml(#[from] DomainError),
    #[error("{0}")]
    Launch(#[from] LaunchError),
    #[error("Operation not supported: {0}")]
    Unsupported(String),
    #[error("argument unsupported: {0}")]
    ArgUnsupported(String),
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("internal error: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("internal error: cannot start {vmm}: {source}")]
    Spawn { vmm: String, source: std::io::Error },
    /// The VMM's own reason for not running the guest (its `error: …` line).
    #[error("{0}")]
    Vmm(String),
    #[error("internal error: process exited while connecting to monitor: {0}")]
    VmmDied(String),
    #[error("operation timed out: {0}")]
    Timeout(String),
    #[error("internal error: {0}")]
    Control(#[from] ClientError),
    #[error("operation failed: {0}")]
    Failed(String),
}

impl DriverError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| DriverError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
