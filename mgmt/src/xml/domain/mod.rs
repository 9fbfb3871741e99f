//! The libvirt domain document: a typed view over the element tree.
//!
//! The tree is the source of truth for serialization, so elements the model does not know are
//! written back unchanged; the typed fields are derived from it at parse time and every model
//! change (the generated UUID, setters) is made in the tree first.

mod chardev;
mod cpu;
mod device_checks;
mod error;
mod lifecycle;
mod memory;
mod os;

pub use chardev::{Chardev, ChardevType};
pub use cpu::{parse_bitmap, Cpu, Placement, Topology, Vcpus};
pub use error::DomainError;
pub use lifecycle::{parse_action, Lifecycle};
pub use memory::Memory;
pub use os::{Loader, Os};

use uuid::Uuid;

use crate::xml::tree::{self, Document, Element};

/// libvirt's `<domain type=…>` values.
const DOMAIN_TYPES: &[&str] = &[
    "none",
    "qemu",
    "kqemu",
    "kvm",
    "xen",
    "lxc",
    "uml",
    "openvz",
    "test",
    "vmware",
    "hyperv",
    "vbox",
    "phyp",
    "parallels",
    "bhyve",
    "vz",
    "ch",
    "hvf",
];

/// Elements that come before `<uuid>` in libvirt's order, for placing a generated one.
const BEFORE_UUID: &[&str] = &["name"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    doc: Document,
    domain_type: String,
    id: Option<i64>,
    name: String,
    uuid: Uuid,
    title: Option<String>,
    description: Option<String>,
    memory: Memory,
    vcpus: Vcpus,
    cpu: Option<Cpu>,
    os: Os,
    lifecycle: Lifecycle,
    serials: Vec<Chardev>,
    consoles: Vec<Chardev>,
}

impl Domain {
    /// Parses and validates a domain document; a missing `<uuid>` is generated and added to the
    /// document, a UUID written without dashes or in upper case is rewritten canonically.
    pub fn parse(xml: &str) -> Result<Domain, DomainError> {
        Domain::from_document(tree::parse(xml)?)
    }

    /// As [`Domain::parse`], from raw file contents (refusing non-UTF-8).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Domain, DomainError> {
        Domain::from_document(tree::parse_bytes(bytes)?)
    }

    pub fn from_document(mut doc: Document) -> Result<Domain, DomainError> {
        let root = &doc.root;
        if root.name != "domain" {
            return Err(DomainError::WrongRoot(root.name.clone()));
        }
        let domain_type = match root.attr("type") {
            None => return Err(DomainError::MissingType),
            Some(t) if DOMAIN_TYPES.contains(&t) => t.to_string(),
            Some(t) => return Err(DomainError::InvalidType(t.to_string())),
        };
        let id = match root.attr("id") {
            None => None,
            Some(s) => Some(
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| DomainError::InvalidId(s.to_string()))?,
            ),
        };
        let name = parse_name(root)?;
        let uuid = match root.child_text("uuid") {
            Some(text) => parse_uuid(&text)?,
            None => Uuid::new_v4(),
        };
        let title = root.child_text("title");
        let description = root.child_text("description");
        let memory = Memory::parse(root)?;
        let vcpus = Vcpus::parse(root)?;
        let cpu = Cpu::parse(root)?;
        if let Some(topology) = cpu.as_ref().and_then(|c| c.topology) {
            if topology.total() != u64::from(vcpus.max) {
                return Err(DomainError::TopologyMismatch);
            }
        }
        let os = Os::parse(root)?;
        let lifecycle = Lifecycle::parse(root)?;
        let devices = root.child("devices");
        let chardevs = |kind: &str| -> Result<Vec<Chardev>, DomainError> {
            devices
                .map(|d| d.children_named(kind).map(Chardev::parse).collect())
                .unwrap_or(Ok(Vec::new()))
        };
        device_checks::check(root)?;
        let serials = chardevs("serial")?;
        let consoles = chardevs("console")?;

        write_uuid(&mut doc.root, uuid);
        generate_macs(&mut doc.root);
        Ok(Domain {
            doc,
            domain_type,
            id,
            name,
            uuid,
            title,
            description,
            memory,
            vcpus,
            cpu,
            os,
            lifecycle,
            serials,
            consoles,
        })
    }

    /// The document in libvirt's `dumpxml` layout.
    pub fn to_xml(&self) -> String {
        self.doc.to_xml()
    }

    /// The underlying tree, for views later issues add (disks, interfaces, …).
    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// `kvm`, `qemu`, …
    pub fn domain_type(&self) -> &str {
        &self.domain_type
    }

    pub fn id(&self) -> Option<i64> {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Canonical 8-4-4-4-12 lowercase form.
    pub fn uuid_string(&self) -> String {
        self.uuid.hyphenated().to_string()
    }

    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub fn memory(&self) -> Memory {
        self.memory
    }

    pub fn vcpus(&self) -> &Vcpus {
        &self.vcpus
    }

    pub fn cpu(&self) -> Option<&Cpu> {
        self.cpu.as_ref()
    }

    pub fn os(&self) -> &Os {
        &self.os
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    pub fn serials(&self) -> &[Chardev] {
        &self.serials
    }

    pub fn consoles(&self) -> &[Chardev] {
        &self.consoles
    }

    /// Every element under `<devices>`, in document order.
    pub fn devices(&self) -> impl Iterator<Item = &Element> {
        self.doc
            .root
            .child("devices")
            .into_iter()
            .flat_map(Element::elements)
    }

    /// Renames the domain (the same validation as at parse time applies).
    pub fn set_name(&mut self, name: &str) -> Result<(), DomainError> {
        let mut root = self.doc.root.clone();
        match root.child_mut("name") {
            Some(el) => el.set_text(name),
            None => root.insert_after(Element::with_text("name", name), &[]),
        }
        self.name = parse_name(&root)?;
        self.doc.root = root;
        Ok(())
    }

    pub fn set_uuid(&mut self, uuid: Uuid) {
        self.uuid = uuid;
        write_uuid(&mut self.doc.root, uuid);
    }

    /// Sets or (with `None`) removes `<title>`.
    pub fn set_title(&mut self, title: Option<&str>) {
        set_optional_text(&mut self.doc.root, "title", title, &["uuid", "name"]);
        self.title = title.map(str::to_string);
    }

    /// Sets or (with `None`) removes `<description>`.
    pub fn set_description(&mut self, description: Option<&str>) {
        set_optional_text(
            &mut self.doc.root,
            "description",
            description,
            &["title", "uuid", "name"],
        );
        self.description = description.map(str::to_string);
    }
}

fn parse_name(root: &Element) -> Result<String, DomainError> {
    let name = root.child_text("name").unwrap_or_default();
    if name.is_empty() {
        return Err(DomainError::MissingName);
    }
    if name.contains('/') {
        return Err(DomainError::NameWithSlash(name));
    }
    Ok(name)
}

/// libvirt accepts the 32 hex digits with dashes anywhere between byte pairs (or none), and
/// surrounding whitespace.
fn parse_uuid(text: &str) -> Result<Uuid, DomainError> {
    let malformed = || DomainError::MalformedUuid(text.to_string());
    let trimmed = text.trim();
    let mut hex = String::with_capacity(32);
    for part in trimmed.split('-') {
        if part.len() % 2 != 0 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        hex.push_str(part);
    }
    if hex.len() != 32 {
        return Err(malformed());
    }
    Uuid::parse_str(&hex).map_err(|_| malformed())
}

fn write_uuid(root: &mut Element, uuid: Uuid) {
    let text = uuid.hyphenated().to_string();
    match root.child_mut("uuid") {
        Some(el) => {
            if el.text() != text {
                el.set_text(text);
            }
        }
        None => root.insert_after(Element::with_text("uuid", text), BEFORE_UUID),
    }
}

/// libvirt gives every `<interface>` without `<mac>` a generated address at parse time, so the
/// definition keeps it from then on.
fn generate_macs(root: &mut Element) {
    let Some(devices) = root.child_mut("devices") else {
        return;
    };
    for iface in devices.elements_mut().filter(|d| d.name == "interface") {
        if iface.child("mac").is_none() {
            let mut mac = Element::new("mac");
            let address = crate::launch::interfaces::generate_mac();
            mac.set_attr("address", crate::launch::interfaces::format_mac(&address));
            iface.children.insert(0, tree::Node::Element(mac));
        }
    }
}

fn set_optional_text(root: &mut Element, name: &str, value: Option<&str>, after: &[&str]) {
    match (value, root.child_mut(name)) {
        (Some(v), Some(el)) => el.set_text(v),
        (Some(v), None) => root.insert_after(Element::with_text(name, v), after),
        (None, _) => root
            .children
            .retain(|n| !matches!(n, tree::Node::Element(e) if e.name == name)),
    }
}

/// An optional unsigned attribute, with libvirt's message when it is not a number.
pub(crate) fn attr_u32(
    el: &Element,
    attr: &'static str,
    element: &'static str,
) -> Result<Option<u32>, DomainError> {
    el.attr(attr)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| DomainError::AttrNotInteger {
                    attr,
                    element,
                    value: v.to_string(),
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests;
