//! A generic XML element tree that keeps everything a libvirt document can carry (names with prefixes,
//! attributes in order, text, CDATA, comments), so that a typed model can sit on top of it and
//! elements it does not understand survive `dumpxml` unchanged.

mod parse;
mod write;

pub use parse::{parse, parse_bytes, XmlError};

/// A whole document: the root element plus whatever surrounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Comments and processing instructions before the root element.
    pub prolog: Vec<Node>,
    pub root: Element,
    /// Comments and processing instructions after the root element.
    pub epilog: Vec<Node>,
}

/// One child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    /// Character data with entities already resolved.
    Text(String),
    /// The content of a `<![CDATA[...]]>` section, kept apart so it is written back as CDATA.
    CData(String),
    Comment(String),
    /// `<?target content?>`, stored as the text between `<?` and `?>`.
    ProcessingInstruction(String),
}

/// An element: its qualified name (prefix included, e.g. `qemu:commandline`), attributes in document
/// order, and children in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Document {
    /// Serializes in libvirt's style (see [`write`](self::write)).
    pub fn to_xml(&self) -> String {
        write::document(self)
    }
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ..Element::default()
        }
    }

    /// Builder helper: an element holding just `text`.
    pub fn with_text(name: impl Into<String>, text: impl Into<String>) -> Self {
        let mut e = Element::new(name);
        e.children.push(Node::Text(text.into()));
        e
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces the value in place when the attribute exists (keeping its position), appends otherwise.
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((name.to_string(), value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attributes.iter().position(|(k, _)| k == name)?;
        Some(self.attributes.remove(pos).1)
    }

    /// Child elements, skipping text, comments and the like.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The first child element called `name` (libvirt reads `./name[1]` almost everywhere).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.name == name)
    }

    /// Concatenated text and CDATA directly inside this element.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) | Node::CData(t) => s.push_str(t),
                _ => {}
            }
        }
        s
    }

    /// The text of the first child element `name`, as libvirt's `string(./name[1])`.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(Element::text)
    }

    /// Replaces all text/CDATA children with one text node, keeping child elements and comments.
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.children
            .retain(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
        self.children.insert(0, Node::Text(text.into()));
    }

    /// Inserts `child` right after the last existing child element whose name is in `after`
    /// (in that preference order), or first when none is present. Keeps libvirt's element order
    /// for elements the model adds (e.g. `<uuid>` goes after `<name>`).
    pub fn insert_after(&mut self, child: Element, after: &[&str]) {
        let pos = after.iter().find_map(|want| {
            self.children
                .iter()
                .rposition(|n| matches!(n, Node::Element(e) if e.name == *want))
        });
        let at = pos.map_or(0, |p| p + 1);
        self.children.insert(at, Node::Element(child));
    }

    /// Structural equality that ignores whitespace-only text (indentation is not content in libvirt
    /// documents) and merges adjacent text, so a re-indented document compares equal to its source.
    pub fn same_content(&self, other: &Element) -> bool {
        self.name == other.name
            && self.attributes == other.attributes
            && significant(&self.children) == significant(&other.children)
    }
}

enum Significant<'a> {
    Element(&'a Element),
    Text(String),
    Comment(&'a str),
    Pi(&'a str),
}

impl PartialEq for Significant<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Significant::Element(a), Significant::Element(b)) => a.same_content(b),
            (Significant::Text(a), Significant::Text(b)) => a == b,
            (Significant::Comment(a), Significant::Comment(b)) => a == b,
            (Significant::Pi(a), Significant::Pi(b)) => a == b,
            _ => false,
        }
    }
}

fn significant(children: &[Node]) -> Vec<Significant<'_>> {
    let mut out: Vec<Significant<'_>> = Vec::new();
    for n in children {
        match n {
            Node::Text(t) | Node::CData(t) => {
                if let Some(Significant::Text(prev)) = out.last_mut() {
                    prev.push_str(t);
                } else {
                    out.push(Significant::Text(t.clone()));
                }
            }
            Node::Element(e) => out.push(Significant::Element(e)),
            Node::Comment(c) => out.push(Significant::Comment(c)),
            Node::ProcessingInstruction(p) => out.push(Significant::Pi(p)),
        }
    }
    out.retain(|s| !matches!(s, Significant::Text(t) if t.trim().is_empty()));
    out
}

#[cfg(test)]
mod tests;

/// `s` escaped for element text the way libvirt writes it.
pub fn escape_text(s: &str) -> String {
    let mut out = String::new();
    write::escape_into(&mut out, s, false);
    out
}
