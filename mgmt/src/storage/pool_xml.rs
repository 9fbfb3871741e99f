//! `<pool>` documents. The model sits on the generic tree, so everything it does not interpret
//! (iSCSI auth, RBD config options, namespaces…) survives `pool-dumpxml` unchanged.

use crate::xml::tree::{self, Document, Element, Node};

use super::StorageError;

/// Every pool type libvirt's schema knows; only some have a backend here (see
/// [`crate::storage::backend::Backend::of`]).
pub const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    doc: Document,
    pool_type: String,
    name: String,
}

/// What `pool-define-as`/`pool-create-as` take, in virsh's option names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub pool_type: String,
    pub source_host: Option<String>,
    pub source_path: Option<String>,
    pub source_dev: Option<String>,
    pub source_name: Option<String>,
    pub source_format: Option<String>,
    pub source_protocol_ver: Option<String>,
    pub target: Option<String>,
}

impl PoolSpec {
    /// The XML virsh builds from these options (`pool-define-as --print-xml`).
    pub fn to_xml(&self) -> String {
        let mut root = Element::new("pool");
        root.set_attr("type", &self.pool_type);
        root.children
            .push(Node::Element(Element::with_text("name", &self.name)));
        let mut source = Element::new("source");
        if let Some(h) = &self.source_host {
            // virsh writes the option verbatim (no host:port split).
            let mut e = Element::new("host");
            e.set_attr("name", h);
            source.children.push(Node::Element(e));
        }
        for (name, value) in [("dir", &self.source_path), ("device", &self.source_dev)] {
            if let Some(v) = value {
                let mut e = Element::new(name);
                e.set_attr("path", v);
                source.children.push(Node::Element(e));
            }
        }
        if let Some(f) = &self.source_format {
            let mut e = Element::new("format");
            e.set_attr("type", f);
            source.children.push(Node::Element(e));
        }
        if let Some(n) = &self.source_name {
            source
                .children
                .push(Node::Element(Element::with_text("name", n)));
        }
        if let Some(v) = &self.source_protocol_ver {
            let mut e = Element::new("protocol");
            e.set_attr("ver", v);
            source.children.push(Node::Element(e));
        }
        if !source.children.is_empty() {
            root.children.push(Node::Element(source));
        }
        if let Some(t) = &self.target {
            let mut target = Element::new("target");
            target
                .children
                .push(Node::Element(Element::with_text("path", t)));
            root.children.push(Node::Element(target));
        }
        Document {
            prolog: Vec::new(),
            root,
            epilog: Vec::new(),
        }
        .to_xml()
    }
}

impl PoolDef {
    pub fn parse(xml: &str) -> Result<PoolDef, StorageError> {
        Self::from_document(tree::parse(xml)?)
    }

    pub fn parse_bytes(xml: &[u8]) -> Result<PoolDef, StorageError> {
        Self::from_document(tree::parse_bytes(xml)?)
    }

    fn from_document(doc: Document) -> Result<PoolDef, StorageError> {
        let bad = |m: &str| StorageError::Invalid(m.to_string());
        if doc.root.name != "pool" {
            return Err(bad("unknown root element for storage pool"));
        }
        let pool_type = doc
            .root
            .attr("type")
            .ok_or_else(|| bad("storage pool missing type attribute"))?
            .to_string();
        if !POOL_TYPES.contains(&pool_type.as_str()) {
            return Err(StorageError::Invalid(format!(
                "unknown storage pool type {pool_type}"
            )));
        }
        let source_name = doc
            .root
            .child("source")
            .and_then(|s| s.child_text("name"))
            .map(|s| s.trim().to_string());
        // libvirt names a logical pool after its volume group when <name> is absent.
        let name = match doc.root.child_text("name").map(|s| s.trim().to_string()) {
            Some(n) if !n.is_empty() => n,
            _ if pool_type == "logical" && source_name.is_some() => source_name.unwrap_or_default(),
            _ => return Err(bad("missing pool source name element")),
        };
        if name.contains('/') {
            return Err(StorageError::Invalid(format!(
                "name {name} cannot contain '/'"
            )));
        }
        if let Some(u) = doc.root.child_text("uuid") {
            if uuid::Uuid::parse_str(u.trim()).is_err() {
                return Err(bad("malformed uuid element"));
            }
        }
        let def = PoolDef {
            doc,
            pool_type,
            name,
        };
        let needs_target = matches!(
            def.pool_type.as_str(),
            "dir" | "fs" | "netfs" | "disk" | "iscsi" | "scsi" | "mpath"
        );
        if needs_target && def.target_path().is_none() {
            return Err(bad("missing storage pool target path"));
        }
        Ok(def)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pool_type(&self) -> &str {
        &self.pool_type
    }

    pub fn uuid(&self) -> Option<String> {
        self.doc
            .root
            .child_text("uuid")
            .map(|u| u.trim().to_string())
    }

    pub fn set_uuid(&mut self, uuid: &str) {
        let root = &mut self.doc.root;
        match root.child_mut("uuid") {
            Some(u) => u.set_text(uuid),
            None => root.insert_after(Element::with_text("uuid", uuid), &["name"]),
        }
    }

    /// The target directory, with libvirt's path cleaning (`///var//lib/` → `/var/lib`).
    pub fn target_path(&self) -> Option<String> {
        let raw = self.doc.root.child("target")?.child_text("path")?;
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        Some(clean_path(raw))
    }

    /// `<source><device path=…/>` paths, in order (fs: one; logical: the physical volumes).
    pub fn source_devices(&self) -> Vec<String> {
        let Some(src) = self.doc.root.child("source") else {
            return Vec::new();
        };
        src.children_named("device")
            .filter_map(|d| d.attr("path"))
            .map(str::to_string)
            .collect()
    }

    /// `<source><host name=…/>` names (a host without a name is kept as `None`).
    pub fn source_hosts(&self) -> Vec<Option<String>> {
        let Some(src) = self.doc.root.child("source") else {
            return Vec::new();
        };
        src.children_named("host")
            .map(|h| h.attr("name").map(str::to_string))
            .collect()
    }

    /// `<source><format type=…/>`.
    pub fn source_format(&self) -> Option<String> {
        self.doc
            .root
            .child("source")?
            .child("format")?
            .attr("type")
            .map(str::to_string)
    }

    /// `<source><name>` (a logical pool's volume group).
    pub fn source_name(&self) -> Option<String> {
        let n = self.doc.root.child("source")?.child_text("name")?;
        let n = n.trim();
        (!n.is_empty()).then(|| n.to_string())
    }

    /// `<source><protocol ver=…/>` (the NFS version of a netfs pool).
    pub fn protocol_ver(&self) -> Option<String> {
        self.doc
            .root
            .child("source")?
            .child("protocol")?
            .attr("ver")
            .map(str::to_string)
    }

    /// The volume group of a logical pool: its source name, else the pool's name (libvirt's
    /// default).
    pub fn volume_group(&self) -> String {
        self.source_name().unwrap_or_else(|| self.name.clone())
    }

    pub fn source_dir(&self) -> Option<String> {
        self.doc
            .root
            .child("source")?
            .child("dir")?
            .attr("path")
            .map(str::to_string)
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn to_xml(&self) -> String {
        self.doc.to_xml()
    }

    /// What libvirt's parse + format does to a definition it stores: a UUID (generated when
    /// absent), capacity figures, an explicit `<source>`, a cleaned target path.
    pub fn normalize(&mut self) {
        let root = &mut self.doc.root;
        if root.child("name").is_none() {
            root.insert_after(Element::with_text("name", &self.name), &[]);
        }
        if root.child("uuid").is_none() {
            let u = uuid::Uuid::new_v4().to_string();
            root.insert_after(Element::with_text("uuid", u), &["name"]);
        }
        if root.child("source").is_none() {
            let mut s = Element::new("source");
            // libvirt writes an empty source as an open/close pair on two lines.
            s.children.push(Node::Text("\n  ".into()));
            root.insert_after(s, &["available", "allocation", "capacity", "uuid", "name"]);
        }
        if let Some(path) = root.child_mut("target").and_then(|t| t.child_mut("path")) {
            let cleaned = clean_path(path.text().trim());
            path.set_text(cleaned);
        }
        self.default_source();
        self.set_figures(0, 0, 0);
    }

    /// The source defaults libvirt's parser fills in and then writes out: fs and netfs pools
    /// get `<format type='auto'/>`; a logical pool gets its volume group name (the pool's name),
    /// `<format type='lvm2'/>` and the target `/dev/VG`.
    fn default_source(&mut self) {
        let default_format = match self.pool_type.as_str() {
            "fs" | "netfs" => "auto",
            "logical" => "lvm2",
            _ => return,
        };
        let vg = self.volume_group();
        let pool_type = self.pool_type.clone();
        let root = &mut self.doc.root;
        let Some(source) = root.child_mut("source") else {
            return;
        };
        // An empty <source> written as an open/close pair keeps only its indentation text.
        if !source
            .children
            .iter()
            .any(|n| matches!(n, Node::Element(_)))
        {
            source.children.clear();
        }
        if pool_type == "logical" && source.child("name").is_none() {
            source.insert_after(
                Element::with_text("name", &vg),
                &["adapter", "dir", "device", "host"],
            );
        }
        if source.child("format").is_none() {
            let mut f = Element::new("format");
            f.set_attr("type", default_format);
            source.insert_after(f, &["name", "adapter", "dir", "device", "host"]);
        }
        if pool_type == "logical" && self.target_path().is_none() {
            let root = &mut self.doc.root;
            let mut target = Element::new("target");
            target.children.push(Node::Element(Element::with_text(
                "path",
                format!("/dev/{vg}"),
            )));
            match root.child_mut("target") {
                Some(t) => *t = target,
                None => root.insert_after(target, &["source"]),
            }
        }
    }

    /// Sets `<capacity>`, `<allocation>` and `<available>` (in bytes, as libvirt writes them).
    pub fn set_figures(&mut self, capacity: u64, allocation: u64, available: u64) {
        let root = &mut self.doc.root;
        let mut after: Vec<&str> = vec!["uuid", "name"];
        for (name, value) in [
            ("capacity", capacity),
            ("allocation", allocation),
            ("available", available),
        ] {
            let mut e = Element::with_text(name, value.to_string());
            e.set_attr("unit", "bytes");
            match root.child_mut(name) {
                Some(old) => *old = e,
                None => root.insert_after(e, &after),
            }
            after.insert(0, name);
        }
    }

    /// Replaces the target's `<permissions>` with the directory's actual mode and owner (what
    /// libvirt shows for an active pool).
    pub fn set_target_permissions(&mut self, mode: u32, uid: u32, gid: u32) {
        let Some(target) = self.doc.root.child_mut("target") else {
            return;
        };
        let mut perms = Element::new("permissions");
        perms.children.push(Node::Element(Element::with_text(
            "mode",
            format!("{:04o}", mode & 0o7777),
        )));
        perms
            .children
            .push(Node::Element(Element::with_text("owner", uid.to_string())));
        perms
            .children
            .push(Node::Element(Element::with_text("group", gid.to_string())));
        if let Some(label) = target
            .child("permissions")
            .and_then(|p| p.child("label"))
            .cloned()
        {
            perms.children.push(Node::Element(label));
        }
        match target.child_mut("permissions") {
            Some(old) => *old = perms,
            None => target.insert_after(perms, &["path"]),
        }
    }

    /// The `<mode>` requested for the target directory, if any (octal).
    pub fn target_mode(&self) -> Option<u32> {
        let text = self
            .doc
            .root
            .child("target")?
            .child("permissions")?
            .child_text("mode")?;
        u32::from_str_radix(text.trim(), 8).ok()
    }
}

/// Collapses repeated slashes and drops a trailing one, as libvirt's virFileSanitizePath.
pub fn clean_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for ch in p.chars() {
        if ch == '/' && out.ends_with('/') {
            continue;
        }
        out.push(ch);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn define_as_xml_matches_virsh() {
        let spec = PoolSpec {
            name: "P".into(),
            pool_type: "dir".into(),
            source_host: Some("src-host".into()),
            source_path: Some("/src/path".into()),
            source_dev: Some("/src/dev".into()),
            source_name: Some("S".into()),
            target: Some("/target-path".into()),
            ..PoolSpec::default()
        };
        let golden = "<pool type='dir'>\n  <name>P</name>\n  <source>\n    <host name='src-host'/>\n    <dir path='/src/path'/>\n    <device path='/src/dev'/>\n    <name>S</name>\n  </source>\n  <target>\n    <path>/target-path</path>\n  </target>\n</pool>\n";
        assert_eq!(spec.to_xml(), golden);
    }

    /// `virsh -c test:///default pool-define-as … --print-xml` (virsh 11.3) for each type.
    #[test]
    fn define_as_xml_per_type_matches_virsh() {
        let spec = |t: &str| PoolSpec {
            name: "n".into(),
            pool_type: t.into(),
            ..PoolSpec::default()
        };
        let fs = PoolSpec {
            source_dev: Some("/dev/loop0".into()),
            source_format: Some("xfs".into()),
            target: Some("/mnt/f".into()),
            ..spec("fs")
        };
        assert_eq!(fs.to_xml(), "<pool type='fs'>\n  <name>n</name>\n  <source>\n    <device path='/dev/loop0'/>\n    <format type='xfs'/>\n  </source>\n  <target>\n    <path>/mnt/f</path>\n  </target>\n</pool>\n");
        let netfs = PoolSpec {
            source_host: Some("h:22".into()),
            source_path: Some("/exp".into()),
            source_dev: Some("/d".into()),
            source_name: Some("nm".into()),
            source_format: Some("nfs".into()),
            source_protocol_ver: Some("3".into()),
            target: Some("/mnt/n".into()),
            ..spec("netfs")
        };
        assert_eq!(netfs.to_xml(), "<pool type='netfs'>\n  <name>n</name>\n  <source>\n    <host name='h:22'/>\n    <dir path='/exp'/>\n    <device path='/d'/>\n    <format type='nfs'/>\n    <name>nm</name>\n    <protocol ver='3'/>\n  </source>\n  <target>\n    <path>/mnt/n</path>\n  </target>\n</pool>\n");
        let logical = PoolSpec {
            source_name: Some("vg0".into()),
            ..spec("logical")
        };
        assert_eq!(logical.to_xml(), "<pool type='logical'>\n  <name>n</name>\n  <source>\n    <name>vg0</name>\n  </source>\n</pool>\n");
    }

    /// What libvirt stores for each type (`pool-define-as` then `pool-dumpxml` on the test
    /// driver): default formats, and a logical pool's volume group and /dev target.
    #[test]
    fn normalize_fills_source_defaults_like_libvirt() {
        let norm = |xml: &str| {
            let mut p = PoolDef::parse(xml).unwrap();
            p.normalize();
            let x = p.to_xml();
            let src = x.find("  <source>").unwrap();
            x[src..].to_string()
        };
        assert_eq!(
            norm("<pool type='logical'><name>l</name><source><device path='/dev/loop1'/></source></pool>"),
            "  <source>\n    <device path='/dev/loop1'/>\n    <name>l</name>\n    <format type='lvm2'/>\n  </source>\n  <target>\n    <path>/dev/l</path>\n  </target>\n</pool>\n"
        );
        assert_eq!(
            norm("<pool type='logical'><name>l</name></pool>"),
            "  <source>\n    <name>l</name>\n    <format type='lvm2'/>\n  </source>\n  <target>\n    <path>/dev/l</path>\n  </target>\n</pool>\n"
        );
        assert_eq!(
            norm("<pool type='fs'><name>f</name><source><device path='/dev/loop0'/></source><target><path>/mnt/f</path></target></pool>"),
            "  <source>\n    <device path='/dev/loop0'/>\n    <format type='auto'/>\n  </source>\n  <target>\n    <path>/mnt/f</path>\n  </target>\n</pool>\n"
        );
        assert_eq!(
            norm("<pool type='netfs'><name>n</name><source><host name='h'/><dir path='/exp'/><protocol ver='4'/></source><target><path>/mnt/n</path></target></pool>"),
            "  <source>\n    <host name='h'/>\n    <dir path='/exp'/>\n    <format type='auto'/>\n    <protocol ver='4'/>\n  </source>\n  <target>\n    <path>/mnt/n</path>\n  </target>\n</pool>\n"
        );
    }

    #[test]
    fn normalize_like_libvirt() {
        let mut p = PoolDef::parse(
            "<pool type='dir'><name>p</name><target><path>//a//b/</path></target></pool>",
        )
        .unwrap();
        p.normalize();
        let xml = p.to_xml();
        let uuid = p.uuid().unwrap();
        assert_eq!(
            xml,
            format!(
                "<pool type='dir'>\n  <name>p</name>\n  <uuid>{uuid}</uuid>\n  <capacity unit='bytes'>0</capacity>\n  <allocation unit='bytes'>0</allocation>\n  <available unit='bytes'>0</available>\n  <source>\n  </source>\n  <target>\n    <path>/a/b</path>\n  </target>\n</pool>\n"
            )
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = |x: &str| PoolDef::parse(x).unwrap_err().to_string();
        assert_eq!(
            e("<pool><name>a</name></pool>"),
            "XML error: storage pool missing type attribute"
        );
        assert_eq!(
            e("<pool type='bogus'><name>a</name></pool>"),
            "XML error: unknown storage pool type bogus"
        );
        assert_eq!(
            e("<pool type='dir'><name>a</name></pool>"),
            "XML error: missing storage pool target path"
        );
        assert!(e("<pool type='dir'>").starts_with("XML error: "));
    }
}
