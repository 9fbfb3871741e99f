//! Character devices: `<serial>` and `<console>` (the model; `launch` decides what can run).

use super::{attr_u32, DomainError};
use crate::xml::tree::Element;

/// libvirt's character device backends (`<serial type=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChardevType {
    Null,
    Vc,
    Pty,
    Dev,
    File,
    Pipe,
    Stdio,
    Udp,
    Tcp,
    Unix,
    Spicevmc,
    Spiceport,
    Nmdm,
    QemuVdagent,
    Dbus,
}

const TYPES: &[(&str, ChardevType)] = &[
    ("null", ChardevType::Null),
    ("vc", ChardevType::Vc),
    ("pty", ChardevType::Pty),
    ("dev", ChardevType::Dev),
    ("file", ChardevType::File),
    ("pipe", ChardevType::Pipe),
    ("stdio", ChardevType::Stdio),
    ("udp", ChardevType::Udp),
    ("tcp", ChardevType::Tcp),
    ("unix", ChardevType::Unix),
    ("spicevmc", ChardevType::Spicevmc),
    ("spiceport", ChardevType::Spiceport),
    ("nmdm", ChardevType::Nmdm),
    ("qemu-vdagent", ChardevType::QemuVdagent),
    ("dbus", ChardevType::Dbus),
];

impl ChardevType {
    pub fn as_str(&self) -> &'static str {
        TYPES
            .iter()
            .find(|(_, t)| t == self)
            .map_or("null", |(s, _)| s)
    }

    fn from_name(s: &str) -> Option<ChardevType> {
        TYPES.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }

    /// Backends whose `<source path=…>` is mandatory.
    fn needs_path(&self) -> bool {
        matches!(
            self,
            ChardevType::Dev | ChardevType::File | ChardevType::Pipe | ChardevType::Unix
        )
    }
}

/// One `<serial>` or `<console>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chardev {
    pub kind: ChardevType,
    /// `<source path=…>` (file, unix, dev, pipe; pty once running).
    pub source_path: Option<String>,
    /// `<source mode='bind|connect'>` (unix, tcp, udp).
    pub source_mode: Option<String>,
    /// `<source append='on|off'>` (file).
    pub source_append: Option<bool>,
    /// `<target type=…>`: `isa-serial`, `pci-serial`… for serials; `serial`, `virtio`… for consoles.
    pub target_type: Option<String>,
    pub target_port: Option<u32>,
}

impl Chardev {
    pub(super) fn parse(el: &Element) -> Result<Chardev, DomainError> {
        // libvirt's default backend when `type` is left out.
        let kind = match el.attr("type") {
            None => ChardevType::Pty,
            Some(t) => ChardevType::from_name(t)
                .ok_or_else(|| DomainError::UnknownChardevType(t.to_string()))?,
        };
        let source = el.child("source");
        let source_path = source.and_then(|s| s.attr("path")).map(str::to_string);
        if kind.needs_path() && !matches!(source_path.as_deref(), Some(p) if !p.is_empty()) {
            return Err(DomainError::ChardevMissingPath);
        }
        let source_append = match source.and_then(|s| s.attr("append")) {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => {
                return Err(DomainError::InvalidAttr {
                    attr: "append",
                    element: "source",
                    value: other.to_string(),
                })
            }
        };
        let target = el.child("target");
        Ok(Chardev {
            kind,
            source_path,
            source_mode: source.and_then(|s| s.attr("mode")).map(str::to_string),
            source_append,
            target_type: target.and_then(|t| t.attr("type")).map(str::to_string),
            target_port: target
                .map(|t| attr_u32(t, "port", "target"))
                .transpose()?
                .flatten(),
        })
    }
}
