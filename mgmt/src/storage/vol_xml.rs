//! `<volume>` documents: parsing what `vol-create` is given, and writing what `vol-dumpxml` shows
//! (built from the image itself, as libvirt refreshes a volume before formatting it).

use crate::xml::tree::{self, Document, Element, Node};
use crate::xml::units::{parse_scaled, DefaultUnit};

use super::volume::VolInfo;
use super::StorageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolDef {
    doc: Document,
    name: String,
}

impl VolDef {
    pub fn parse(xml: &str) -> Result<VolDef, StorageError> {
        Self::from_document(tree::parse(xml)?)
    }

    pub fn parse_bytes(xml: &[u8]) -> Result<VolDef, StorageError> {
        Self::from_document(tree::parse_bytes(xml)?)
    }

    fn from_document(doc: Document) -> Result<VolDef, StorageError> {
        if doc.root.name != "volume" {
            return Err(StorageError::Invalid(
                "unknown root element for storage vol".into(),
            ));
        }
        let name = doc
            .root
            .child_text("name")
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| StorageError::Invalid("missing volume name element".into()))?;
        let def = VolDef { doc, name };
        // Sizes are checked here so a bad unit is reported at parse time, naming the element.
        def.capacity()?;
        def.allocation()?;
        Ok(def)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn to_xml(&self) -> String {
        self.doc.to_xml()
    }

    fn scaled(&self, name: &str) -> Result<Option<u64>, StorageError> {
        let Some(e) = self.doc.root.child(name) else {
            return Ok(None);
        };
        Ok(Some(parse_scaled(
            &e.text(),
            e.attr("unit"),
            DefaultUnit::Bytes,
        )?))
    }

    pub fn capacity(&self) -> Result<Option<u64>, StorageError> {
        self.scaled("capacity")
    }

    pub fn allocation(&self) -> Result<Option<u64>, StorageError> {
        self.scaled("allocation")
    }

    fn target(&self) -> Option<&Element> {
        self.doc.root.child("target")
    }

    /// `<target><format type=…/>`.
    pub fn format(&self) -> Option<String> {
        self.target()?
            .child("format")?
            .attr("type")
            .map(str::to_string)
    }

    /// `<backingStore><path>` and its `<format type=…/>`.
    pub fn backing(&self) -> Option<(String, Option<String>)> {
        let b = self.doc.root.child("backingStore")?;
        let path = b.child_text("path")?.trim().to_string();
        let format = b
            .child("format")
            .and_then(|f| f.attr("type"))
            .map(str::to_string);
        Some((path, format))
    }

    /// `<target><compat>`: 0.10 is qcow2 version 2, 1.1 version 3.
    pub fn compat(&self) -> Option<String> {
        self.target()?
            .child_text("compat")
            .map(|c| c.trim().to_string())
    }

    pub fn cluster_size(&self) -> Result<Option<u64>, StorageError> {
        let Some(e) = self.target().and_then(|t| t.child("clusterSize")) else {
            return Ok(None);
        };
        Ok(Some(parse_scaled(
            &e.text(),
            e.attr("unit"),
            DefaultUnit::Bytes,
        )?))
    }

    /// Whether `<target><features>` is present (libvirt then defaults `<compat>` to 1.1).
    pub fn has_features(&self) -> bool {
        self.target().is_some_and(|t| t.child("features").is_some())
    }

    pub fn lazy_refcounts(&self) -> bool {
        self.target()
            .and_then(|t| t.child("features"))
            .is_some_and(|f| f.child("lazy_refcounts").is_some())
    }

    pub fn has_encryption(&self) -> bool {
        self.target()
            .is_some_and(|t| t.child("encryption").is_some())
    }
}

fn text_el(name: &str, text: impl Into<String>) -> Node {
    Node::Element(Element::with_text(name, text))
}

fn bytes_el(name: &str, value: u64) -> Node {
    let mut e = Element::with_text(name, value.to_string());
    e.set_attr("unit", "bytes");
    Node::Element(e)
}

fn format_el(format: &str) -> Node {
    let mut e = Element::new("format");
    e.set_attr("type", format);
    Node::Element(e)
}

fn permissions(mode: u32, uid: u32, gid: u32) -> Node {
    let mut p = Element::new("permissions");
    p.children
        .push(text_el("mode", format!("{:04o}", mode & 0o7777)));
    p.children.push(text_el("owner", uid.to_string()));
    p.children.push(text_el("group", gid.to_string()));
    Node::Element(p)
}

/// The `vol-dumpxml` document for a volume, in libvirt's element order.
pub fn format_volume(v: &VolInfo) -> String {
    let mut root = Element::new("volume");
    root.set_attr("type", &v.vol_type);
    root.children.push(text_el("name", &v.name));
    root.children.push(text_el("key", &v.key));
    root.children.push(bytes_el("capacity", v.capacity));
    root.children.push(bytes_el("allocation", v.allocation));
    root.children.push(bytes_el("physical", v.physical));
    let mut target = Element::new("target");
    target.children.push(text_el("path", &v.path));
    // Logical volumes have no format (libvirt writes none for them).
    if !v.format.is_empty() {
        target.children.push(format_el(&v.format));
    }
    target.children.push(permissions(v.mode, v.uid, v.gid));
    let mut ts = Element::new("timestamps");
    for (name, (s, ns)) in [("atime", v.atime), ("mtime", v.mtime), ("ctime", v.ctime)] {
        ts.children.push(text_el(name, format!("{s}.{ns}")));
    }
    target.children.push(Node::Element(ts));
    if let Some(compat) = &v.compat {
        target.children.push(text_el("compat", compat));
    }
    if let Some(cs) = v.cluster_size {
        let mut e = Element::with_text("clusterSize", cs.to_string());
        e.set_attr("unit", "B");
        target.children.push(Node::Element(e));
    }
    if v.compat.is_some() {
        let mut f = Element::new("features");
        if v.lazy_refcounts {
            f.children
                .push(Node::Element(Element::new("lazy_refcounts")));
        }
        target.children.push(Node::Element(f));
    }
    root.children.push(Node::Element(target));
    if let Some(b) = &v.backing {
        let mut bs = Element::new("backingStore");
        bs.children.push(text_el("path", &b.path));
        if let Some(f) = &b.format {
            bs.children.push(format_el(f));
        }
        if let Some((mode, uid, gid)) = b.perms {
            bs.children.push(permissions(mode, uid, gid));
        }
        root.children.push(Node::Element(bs));
    }
    Document {
        prolog: Vec::new(),
        root,
        epilog: Vec::new(),
    }
    .to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sizes_format_and_backing() {
        let v = VolDef::parse(
            "<volume><name>a.qcow2</name><capacity unit='G'>5</capacity><allocation>4096</allocation>\
             <target><format type='qcow2'/><compat>0.10</compat><clusterSize unit='KiB'>4</clusterSize>\
             <features><lazy_refcounts/></features></target>\
             <backingStore><path>/b.img</path><format type='raw'/></backingStore></volume>",
        )
        .unwrap();
        assert_eq!(v.name(), "a.qcow2");
        assert_eq!(v.capacity().unwrap(), Some(5 << 30));
        assert_eq!(v.allocation().unwrap(), Some(4096));
        assert_eq!(v.format().as_deref(), Some("qcow2"));
        assert_eq!(v.compat().as_deref(), Some("0.10"));
        assert_eq!(v.cluster_size().unwrap(), Some(4096));
        assert!(v.lazy_refcounts());
        assert_eq!(v.backing(), Some(("/b.img".into(), Some("raw".into()))));
    }

    #[test]
    fn errors() {
        let e = |x: &str| VolDef::parse(x).unwrap_err().to_string();
        assert_eq!(e("<volume/>"), "XML error: missing volume name element");
        assert_eq!(
            e("<volume><name>a</name><capacity unit='XB'>1</capacity></volume>"),
            "invalid argument: unknown suffix 'XB'"
        );
        assert_eq!(
            e("<pool/>"),
            "XML error: unknown root element for storage vol"
        );
    }
}
