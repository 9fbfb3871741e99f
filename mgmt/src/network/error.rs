//! What a network operation can fail with, worded as libvirt's network driver words it.

use super::xml::NetworkXmlError;
use crate::driver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("Network not found: no network with matching {by} '{key}'")]
    NoNetwork { by: &'static str, key: String },
    #[error("Requested operation is not valid: network is already active")]
    AlreadyActive,
    #[error("Requested operation is not valid: network '{0}' is not active")]
    NotActive(String),
    #[error("operation failed: network '{name}' already exists with uuid {uuid}")]
    NameTaken { name: String, uuid: String },
    #[error("operation failed: network '{other}' is already defined with uuid {uuid}")]
    UuidTaken { other: String, uuid: String },
    #[error("internal error: bridge name '{0}' already in use.")]
    BridgeInUse(String),
    #[error("Requested operation is not valid: can't undefine transient network")]
    UndefineTransient,
    #[error("Requested operation is not valid: cannot set autostart for transient network")]
    AutostartTransient,
    #[error("Requested operation is not valid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Xml(#[from] NetworkXmlError),
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// Setting up the host (bridge, addresses, firewall, dnsmasq) failed.
    #[error("internal error: {0}")]
    Host(String),
    #[error("internal error: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

impl NetworkError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| NetworkError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Starting a domain can fail in the network driver (an inactive network, say); the domain
/// driver reports that with the network driver's words.
impl From<NetworkError> for DriverError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::Invalid(s) => DriverError::Invalid(s),
            NetworkError::Unsupported(s) => {
                DriverError::Vmm(format!("unsupported configuration: {s}"))
            }
            other => DriverError::Vmm(other.to_string()),
        }
    }
}
