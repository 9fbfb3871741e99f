//! Why a domain document was refused at define time. Messages follow libvirt's wording (with its
//! error-class prefix) so that scripts and users see what virsh would show.

use crate::xml::tree::XmlError;
use crate::xml::units::UnitError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("XML error: unexpected root element <{0}>, expecting <domain>")]
    WrongRoot(String),
    #[error("internal error: missing domain type attribute")]
    MissingType,
    #[error("unsupported configuration: invalid domain type {0}")]
    InvalidType(String),
    #[error("XML error: invalid domain id '{0}': expected an integer")]
    InvalidId(String),
    #[error("missing name information")]
    MissingName,
    #[error("XML error: name {0} cannot contain '/'")]
    NameWithSlash(String),
    #[error("internal error: malformed uuid element")]
    MalformedUuid(String),
    #[error(
        "XML error: Memory size must be specified via <memory> or in the <numa> configuration"
    )]
    NoMemory,
    #[error("XML error: Invalid value '{value}' for element or attribute '{what}'")]
    InvalidNumber { value: String, what: String },
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("XML error: maximum vcpus count must be an integer")]
    VcpuNotInteger,
    #[error("XML error: current vcpus count must be an integer")]
    CurrentVcpuNotInteger,
    #[error("XML error: a domain needs at least one vCPU: <vcpu> must be greater than 0")]
    ZeroVcpus,
    #[error(
        "unsupported configuration: maximum vCPU count must not be less than current vCPU count"
    )]
    CurrentVcpusAboveMax,
    #[error("XML error: Invalid value for attribute '{attr}' in element '{element}': '{value}'.")]
    InvalidAttr {
        attr: &'static str,
        element: &'static str,
        value: String,
    },
    #[error("XML error: Invalid value for attribute '{attr}' in element '{element}': '{value}'. Expected integer value")]
    AttrNotInteger {
        attr: &'static str,
        element: &'static str,
        value: String,
    },
    #[error("XML error: Missing required attribute '{attr}' in element '{element}'")]
    MissingAttr {
        attr: &'static str,
        element: &'static str,
    },
    #[error("XML error: Invalid value for attribute '{attr}' in element '{element}': Zero is not permitted")]
    ZeroAttr {
        attr: &'static str,
        element: &'static str,
    },
    #[error("invalid argument: Failed to parse bitmap '{0}'")]
    InvalidBitmap(String),
    #[error("unsupported configuration: CPU topology doesn't match maximum vcpu count")]
    TopologyMismatch,
    #[error("XML error: an os <type> must be specified")]
    MissingOsType,
    #[error("XML error: unknown boot device '{0}'")]
    UnknownBootDevice(String),
    #[error("unsupported configuration: per-device boot elements cannot be used together with os/boot elements")]
    BootOrderConflict,
    #[error("unsupported configuration: unknown {event} action: {value}")]
    UnknownLifecycleAction { event: &'static str, value: String },
    #[error(
        "unsupported configuration: Lifecycle event '{event}' doesn't support '{action}' action"
    )]
    LifecycleActionNotAllowed {
        event: &'static str,
        action: &'static str,
    },
    #[error("XML error: unknown type presented to host for character device: {0}")]
    UnknownChardevType(String),
    #[error("internal error: Missing source path attribute for char device")]
    ChardevMissingPath,
    #[error("missing target information for device {0}")]
    DiskMissingTarget(String),
    #[error("XML error: target '{target}' duplicated for disk sources '{path}' and '{other}'")]
    DiskTargetDuplicated {
        target: String,
        path: String,
        other: String,
    },
    #[error("unsupported configuration: Found duplicate drive address for disk with target name '{target}' controller='{}' bus='{}' target='{}' unit='{}'", address[0], address[1], address[2], address[3])]
    DriveAddressConflict { target: String, address: [u32; 4] },
    #[error("XML error: Invalid PCI address slot='{0}', must be <= 0x1F")]
    PciSlot(String),
    #[error("XML error: Invalid PCI address function={0}, must be <= 7")]
    PciFunction(String),
}
