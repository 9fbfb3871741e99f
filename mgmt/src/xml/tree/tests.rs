use super::*;

fn roundtrip(xml: &str) -> Document {
    let doc = parse(xml).expect("parses");
    let again = parse(&doc.to_xml()).expect("output parses");
    assert!(
        doc.root.same_content(&again.root),
        "round trip changed the tree:\n{}",
        doc.to_xml()
    );
    again
}

fn err_at(xml: &str) -> (usize, usize, String) {
    match parse(xml) {
        Err(XmlError::At {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("expected a positioned error, got {other:?}"),
    }
}

#[test]
fn writes_libvirt_style() {
    let xml = "<domain type=\"kvm\"><name>a</name><devices><serial type='pty'/>\
               <console type='pty'><target type='serial'/></console></devices></domain>";
    let doc = parse(xml).unwrap();
    assert_eq!(
        doc.to_xml(),
        "<domain type='kvm'>\n  <name>a</name>\n  <devices>\n    <serial type='pty'/>\n    \
         <console type='pty'>\n      <target type='serial'/>\n    </console>\n  </devices>\n</domain>\n"
    );
}

#[test]
fn keeps_attribute_order_namespaces_comments_and_cdata() {
    let xml = r#"<?xml version="1.0"?>
<!-- leading comment -->
<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <!-- inner comment -->
  <memory unit='KiB' dumpCore='on'>1024</memory>
  <description><![CDATA[a < b & c]]></description>
  <qemu:commandline>
    <qemu:arg value='-newarg'/>
  </qemu:commandline>
</domain>
"#;
    let doc = roundtrip(xml);
    assert_eq!(doc.prolog, vec![Node::Comment(" leading comment ".into())]);
    let root = &doc.root;
    assert_eq!(
        root.attributes[1],
        (
            "xmlns:qemu".to_string(),
            "http://libvirt.org/schemas/domain/qemu/1.0".to_string()
        )
    );
    assert_eq!(
        root.children
            .iter()
            .filter(|n| matches!(n, Node::Comment(_)))
            .count(),
        1
    );
    let mem = root.child("memory").unwrap();
    assert_eq!(mem.attributes[0].0, "unit");
    assert_eq!(mem.attributes[1].0, "dumpCore");
    assert_eq!(root.child_text("description").unwrap(), "a < b & c");
    let out = doc.to_xml();
    assert!(out.contains("<description><![CDATA[a < b & c]]></description>"));
    assert!(out.contains("    <qemu:arg value='-newarg'/>"));
    assert!(out.starts_with("<!-- leading comment -->\n<domain"));
}

#[test]
fn entities_are_resolved_and_escaped_back() {
    let xml =
        "<a t=\"it's &quot;x&quot; &lt;&amp;&gt;\">1 &lt; 2 &amp;&amp; &#65;&#x42; 'q' \"d\"</a>";
    let doc = roundtrip(xml);
    assert_eq!(doc.root.attr("t"), Some("it's \"x\" <&>"));
    assert_eq!(doc.root.text(), "1 < 2 && AB 'q' \"d\"");
    assert_eq!(
        doc.to_xml(),
        "<a t='it&apos;s &quot;x&quot; &lt;&amp;&gt;'>1 &lt; 2 &amp;&amp; AB &apos;q&apos; &quot;d&quot;</a>\n"
    );
}

#[test]
fn newline_in_attribute_survives() {
    let doc = roundtrip("<a v='x&#10;y'/>");
    assert_eq!(doc.root.attr("v"), Some("x\ny"));
}

#[test]
fn mixed_content_is_written_verbatim() {
    let doc = roundtrip("<a>text <b>bold</b> tail</a>");
    assert_eq!(doc.to_xml(), "<a>text <b>bold</b> tail</a>\n");
}

#[test]
fn cdata_containing_terminator() {
    let doc = Document {
        prolog: vec![],
        root: Element {
            name: "a".into(),
            attributes: vec![],
            children: vec![Node::CData("x]]>y".into())],
        },
        epilog: vec![],
    };
    let back = parse(&doc.to_xml()).unwrap();
    assert_eq!(back.root.text(), "x]]>y");
}

#[test]
fn mismatched_closing_tag() {
    let xml = "<domain>\n  <name>x</name>\n  <memory>1\n  </vcpu>\n</domain>";
    let (line, column, message) = err_at(xml);
    assert_eq!(
        message,
        "mismatched closing tag: expected </memory>, found </vcpu>"
    );
    assert_eq!((line, column), (4, 3));
}

#[test]
fn unclosed_root() {
    let (line, _, message) = err_at("<domain>\n  <name>x</name>\n");
    assert!(
        message.contains("<domain> opened at line 1, column 1 is never closed"),
        "{message}"
    );
    assert_eq!(line, 3);
}

#[test]
fn broken_start_tag() {
    let (line, column, message) = err_at("<dom\n");
    assert_eq!((line, column), (1, 1));
    assert!(message.contains("never closed"), "{message}");
}

#[test]
fn duplicate_attribute() {
    let (line, column, message) = err_at("<a>\n  <b x='1' x='2'/>\n</a>");
    assert_eq!(line, 2);
    assert_eq!(column, 12);
    assert!(message.contains("duplicate attribute in <b>"), "{message}");
}

#[test]
fn undefined_entity() {
    let (line, column, message) = err_at("<a>\n x &nbsp; y</a>");
    assert_eq!((line, column), (2, 4));
    assert!(message.contains("undefined entity '&nbsp;'"), "{message}");
}

#[test]
fn empty_missing_root_and_trailing_garbage() {
    assert_eq!(parse(""), Err(XmlError::Empty));
    assert_eq!(parse("  \n "), Err(XmlError::Empty));
    let (_, _, m) = err_at("<!-- only a comment -->");
    assert!(m.contains("no root element"), "{m}");
    let (line, column, m) = err_at("<a/>\n<b/>");
    assert_eq!((line, column), (2, 1));
    assert!(m.contains("extra content"), "{m}");
    let (line, column, m) = err_at("<a/>\n  junk");
    assert_eq!((line, column), (2, 3));
    assert!(m.contains("extra content"), "{m}");
    let (_, _, m) = err_at("junk<a/>");
    assert!(m.contains("before the root"), "{m}");
}

#[test]
fn non_utf8_is_refused_with_position() {
    let bytes = b"<a>\n  caf\xe9</a>";
    assert_eq!(
        parse_bytes(bytes),
        Err(XmlError::NotUtf8 { line: 2, column: 6 })
    );
}

#[test]
fn error_display_has_line_and_column() {
    let err = parse("<a>\n</b>").unwrap_err();
    assert_eq!(
        err.to_string(),
        "XML error at line 2, column 1: mismatched closing tag: expected </a>, found </b>"
    );
}

#[test]
fn model_helpers() {
    let mut doc = parse("<domain><name>x</name><memory>1</memory></domain>").unwrap();
    doc.root
        .insert_after(Element::with_text("uuid", "u"), &["name"]);
    let names: Vec<_> = doc.root.elements().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["name", "uuid", "memory"]);
    let mem = doc.root.child_mut("memory").unwrap();
    mem.set_attr("unit", "KiB");
    mem.set_text("2");
    assert_eq!(mem.attr("unit"), Some("KiB"));
    assert_eq!(mem.text(), "2");
    assert_eq!(mem.remove_attr("unit").as_deref(), Some("KiB"));
}
