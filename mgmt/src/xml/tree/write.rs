//! Serialization in the style of libvirt's `dumpxml`: two-space indentation, single-quoted
//! attributes, self-closed empty elements, text-only elements on one line.

use std::fmt::Write as _;

use super::{Document, Element, Node};

pub(super) fn document(doc: &Document) -> String {
    let mut out = String::new();
    for n in &doc.prolog {
        node(&mut out, n, 0);
    }
    element(&mut out, &doc.root, 0);
    for n in &doc.epilog {
        node(&mut out, n, 0);
    }
    out
}

/// Writes `n` on its own line(s) at `depth`.
fn node(out: &mut String, n: &Node, depth: usize) {
    match n {
        Node::Element(e) => element(out, e, depth),
        Node::Text(t) if t.trim().is_empty() => {}
        other => {
            indent(out, depth);
            inline(out, other);
            out.push('\n');
        }
    }
}

fn element(out: &mut String, e: &Element, depth: usize) {
    indent(out, depth);
    open_tag(out, e);
    if e.children.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push('>');
    if is_inline(e) {
        for c in &e.children {
            inline(out, c);
        }
    } else {
        out.push('\n');
        for c in &e.children {
            node(out, c, depth + 1);
        }
        indent(out, depth);
    }
    let _ = writeln!(out, "</{}>", e.name);
}

/// Text-only elements stay on one line; mixed content (text next to elements) is written exactly as
/// read, because re-indenting would change the text.
fn is_inline(e: &Element) -> bool {
    let has_text = e
        .children
        .iter()
        .any(|c| matches!(c, Node::CData(_)) || matches!(c, Node::Text(t) if !t.trim().is_empty()));
    let only_text = e
        .children
        .iter()
        .all(|c| matches!(c, Node::Text(_) | Node::CData(_)));
    only_text || has_text
}

/// Writes a node without any added whitespace.
fn inline(out: &mut String, n: &Node) {
    match n {
        Node::Element(e) => {
            open_tag(out, e);
            if e.children.is_empty() {
                out.push_str("/>");
            } else {
                out.push('>');
                for c in &e.children {
                    inline(out, c);
                }
                let _ = write!(out, "</{}>", e.name);
            }
        }
        Node::Text(t) => escape_into(out, t, false),
        Node::CData(c) => {
            // "]]>" cannot appear inside one section: end it there and start a new one.
            out.push_str("<![CDATA[");
            out.push_str(&c.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        Node::Comment(c) => {
            let _ = write!(out, "<!--{c}-->");
        }
        Node::ProcessingInstruction(p) => {
            let _ = write!(out, "<?{p}?>");
        }
    }
}

fn open_tag(out: &mut String, e: &Element) {
    out.push('<');
    out.push_str(&e.name);
    for (k, v) in &e.attributes {
        let _ = write!(out, " {k}='");
        escape_into(out, v, true);
        out.push('\'');
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Escapes like libvirt's virBufferEscapeString (quotes included, also in text). In attributes,
/// tab and line breaks become character references so that attribute-value normalization on the
/// next read does not turn them into spaces.
pub(crate) fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}
