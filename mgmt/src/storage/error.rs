//! Storage errors, worded like libvirt's so scripts matching virsh messages keep working.

use std::path::{Path, PathBuf};

use crate::xml::units::UnitError;
use crate::xml::XmlError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("XML error: {0}")]
    Xml(#[from] XmlError),
    #[error("XML error: {0}")]
    Invalid(String),
    #[error("{0}")]
    Unit(#[from] UnitError),
    #[error("Storage pool not found: no storage pool with matching {kind} '{value}'")]
    NoPool { kind: &'static str, value: String },
    #[error("Storage volume not found: no storage vol with matching {kind} '{value}'")]
    NoVolume { kind: &'static str, value: String },
    #[error("operation failed: pool '{0}' already exists")]
    PoolExists(String),
    #[error("operation failed: Storage source conflict with pool: '{0}'")]
    PoolSourceConflict(String),
    #[error("storage volume name '{0}' already in use.")]
    VolumeExists(String),
    #[error("Requested operation is not valid: storage pool '{0}' is not active")]
    PoolInactive(String),
    #[error("Requested operation is not valid: storage pool '{0}' is already active")]
    PoolActive(String),
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("{what} '{}': {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Block(#[from] ironvirt_devices::block::BlockError),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("Requested operation is not valid: {0}")]
    OperationInvalid(String),
    #[error("Storage pool probe failed: {0}")]
    ProbeFailed(String),
    #[error("Storage pool already built: {0}")]
    PoolBuilt(String),
    /// An external tool (mount, mkfs, lvm2…) failed; worded as libvirt's virCommandRun, with the
    /// tool's own stderr so the cause (device busy, no device-mapper…) is in the message.
    #[error("internal error: Child process ({command}) unexpected {status}: {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// An external tool is not installed.
    #[error("Cannot find '{program}' in path: No such file or directory (install the {package} package)")]
    CommandMissing {
        program: String,
        package: &'static str,
    },
}

impl StorageError {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
        move |source| StorageError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
