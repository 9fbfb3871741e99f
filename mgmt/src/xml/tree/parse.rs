//! Reading a document into a [`Document`] with quick-xml, turning its errors into messages that say
//! where (line, column) and what is wrong.

use quick_xml::errors::{Error as QxError, IllFormedError, SyntaxError};
use quick_xml::escape::{resolve_predefined_entity, EscapeError};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use quick_xml::XmlVersion;

use super::{Document, Element, Node};

/// A document that is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML error: the document is empty")]
    Empty,
    #[error(
        "XML error: the document is not valid UTF-8 (invalid byte at line {line}, column {column})"
    )]
    NotUtf8 { line: usize, column: usize },
    #[error("XML error at line {line}, column {column}: {message}")]
    At {
        line: usize,
        column: usize,
        message: String,
    },
}

impl XmlError {
    /// (line, column), both 1-based, when the error has a position.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            XmlError::Empty => None,
            XmlError::NotUtf8 { line, column } | XmlError::At { line, column, .. } => {
                Some((*line, *column))
            }
        }
    }
}

/// Parses raw file contents; non-UTF-8 input is refused (libvirt documents are UTF-8).
pub fn parse_bytes(bytes: &[u8]) -> Result<Document, XmlError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => parse(s),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction, so the lossy conversion is exact.
            let prefix = String::from_utf8_lossy(valid);
            let (line, column) = line_column(&prefix, prefix.len());
            Err(XmlError::NotUtf8 { line, column })
        }
    }
}

pub fn parse(xml: &str) -> Result<Document, XmlError> {
    // A UTF-8 BOM is legal before the prolog; quick-xml would otherwise see it as text.
    let body = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    if body.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    Parser::new(xml, xml.len() - body.len()).run()
}

struct Parser<'a> {
    src: &'a str,
    /// Offset of the reader's input inside `src` (non-zero after a BOM).
    base: usize,
    reader: Reader<&'a [u8]>,
    /// Open elements, innermost last, each with the offset of its `<` for error messages.
    stack: Vec<(Element, usize)>,
    prolog: Vec<Node>,
    epilog: Vec<Node>,
    root: Option<Element>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, base: usize) -> Self {
        let mut reader = Reader::from_reader(&src.as_bytes()[base..]);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Parser {
            src,
            base,
            reader,
            stack: Vec::new(),
            prolog: Vec::new(),
            epilog: Vec::new(),
            root: None,
        }
    }

    fn run(mut self) -> Result<Document, XmlError> {
        loop {
            let start = self.pos();
            let event = match self.reader.read_event() {
                Ok(ev) => ev,
                Err(e) => return Err(self.reader_error(&e, start)),
            };
            match event {
                Event::Start(tag) => {
                    let el = self.element(&tag, start)?;
                    self.before_element(start)?;
                    self.stack.push((el, start));
                }
                Event::Empty(tag) => {
                    let el = self.element(&tag, start)?;
                    self.before_element(start)?;
                    self.close(el);
                }
                Event::End(_) => {
                    // quick-xml has checked the name against the open tag already.
                    if let Some((el, _)) = self.stack.pop() {
                        self.close(el);
                    }
                }
                Event::Text(t) => {
                    let text = t.xml10_content();
                    self.text(&text, start)?;
                }
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match resolve_predefined_entity(&r) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(self.at(start, format!("undefined entity '&{};'", &*r)))
                            }
                        },
                        Err(_) => {
                            return Err(
                                self.at(start, format!("invalid character reference '&{};'", &*r))
                            )
                        }
                    };
                    self.text(&resolved, start)?;
                }
                Event::CData(c) => {
                    let content = c.xml10_content().into_owned();
                    if self.stack.is_empty() {
                        return Err(self.at(start, outside_root(self.root.is_some())));
                    }
                    self.push(Node::CData(content));
                }
                Event::Comment(c) => {
                    let content = c.xml10_content().into_owned();
                    self.push(Node::Comment(content));
                }
                Event::PI(pi) => {
                    let content = pi.into_inner().into_owned();
                    self.push(Node::ProcessingInstruction(content));
                }
                // The declaration only restates UTF-8 / XML 1.0, and libvirt never writes a DTD.
                Event::Decl(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
        }
        if let Some((el, open)) = self.stack.last() {
            let (line, column) = line_column(self.src, *open);
            let message = format!(
                "premature end of document: <{}> opened at line {line}, column {column} is never closed",
                el.name
            );
            return Err(self.at(self.src.len() - self.base, message));
        }
        match self.root {
            Some(root) => Ok(Document {
                prolog: self.prolog,
                root,
                epilog: self.epilog,
            }),
            None => Err(self.at(
                self.src.len() - self.base,
                "no root element: the document has no element at all".into(),
            )),
        }
    }

    /// Offset (relative to the reader input) of the next event.
    fn pos(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn element(&self, tag: &BytesStart<'_>, start: usize) -> Result<Element, XmlError> {
        let name = tag.name().as_ref().to_string();
        let mut el = Element::new(name);
        for attr in tag.attributes() {
            let attr = match attr {
                Ok(a) => a,
                Err(e) => return Err(self.attr_error(&e, start, &el.name)),
            };
            let key = attr.key.as_ref().to_string();
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| {
                    self.at(
                        start,
                        format!("in attribute '{key}' of <{}>: {}", el.name, describe(&e)),
                    )
                })?;
            el.attributes.push((key, value.into_owned()));
        }
        Ok(el)
    }

    fn before_element(&self, start: usize) -> Result<(), XmlError> {
        if self.stack.is_empty() && self.root.is_some() {
            return Err(self.at(
                start,
                "extra content at the end of the document: a second root element".into(),
            ));
        }
        Ok(())
    }

    fn close(&mut self, el: Element) {
        match self.stack.last_mut() {
            Some((parent, _)) => parent.children.push(Node::Element(el)),
            None => self.root = Some(el),
        }
    }

    fn text(&mut self, text: &str, start: usize) -> Result<(), XmlError> {
        if self.stack.is_empty() {
            if text.trim().is_empty() {
                return Ok(());
            }
            let offset = start + (text.len() - text.trim_start().len());
            return Err(self.at(offset, outside_root(self.root.is_some())));
        }
        // Text arrives in pieces around entity references; keep it as one node.
        if let Some((parent, _)) = self.stack.last_mut() {
            if let Some(Node::Text(prev)) = parent.children.last_mut() {
                prev.push_str(text);
            } else {
                parent.children.push(Node::Text(text.to_string()));
            }
        }
        Ok(())
    }

    /// Adds a comment / PI / CDATA to the open element, or to the prolog/epilog at the top level.
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some((parent, _)) => parent.children.push(node),
            None if self.root.is_none() => self.prolog.push(node),
            None => self.epilog.push(node),
        }
    }

    fn at(&self, offset: usize, message: String) -> XmlError {
        let (line, column) = line_column(self.src, self.base + offset);
        XmlError::At {
            line,
            column,
            message,
        }
    }

    fn reader_error(&self, e: &QxError, start: usize) -> XmlError {
        let err_pos = usize::try_from(self.reader.error_position()).unwrap_or(start);
        let message = match e {
            QxError::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
                format!("mismatched closing tag: expected </{expected}>, found </{found}>")
            }
            QxError::IllFormed(IllFormedError::UnmatchedEndTag(name)) => {
                format!("closing tag </{name}> has no matching opening tag")
            }
            QxError::IllFormed(IllFormedError::DoubleHyphenInComment) => {
                "'--' is not allowed inside a comment".into()
            }
            QxError::IllFormed(IllFormedError::UnclosedReference) => {
                "'&' starts an entity reference that is never closed with ';' (write &amp; for a literal '&')".into()
            }
            QxError::IllFormed(other) => other.to_string(),
            QxError::Syntax(s) => syntax_message(*s).into(),
            QxError::InvalidAttr(a) => return self.attr_error(a, start, "element"),
            QxError::Escape(esc) => describe_escape(esc),
            other => other.to_string(),
        };
        self.at(err_pos, message)
    }

    fn attr_error(&self, e: &AttrError, start: usize, element: &str) -> XmlError {
        // AttrError positions count from the start of the tag's content, just after '<'.
        let (pos, message) = match e {
            AttrError::ExpectedEq(p) => (*p, "attribute name must be followed by '='".to_string()),
            AttrError::ExpectedValue(p) => (*p, "'=' must be followed by a quoted value".into()),
            AttrError::UnquotedValue(p) => {
                (*p, "attribute value must be enclosed in quotes".into())
            }
            AttrError::ExpectedQuote(p, q) => (
                *p,
                format!(
                    "attribute value is missing its closing quote {}",
                    char::from(*q)
                ),
            ),
            AttrError::Duplicated(p, _) => (*p, format!("duplicate attribute in <{element}>")),
        };
        self.at(start + 1 + pos, message)
    }
}

fn outside_root(after_root: bool) -> String {
    if after_root {
        "extra content at the end of the document".into()
    } else {
        "text is not allowed before the root element".into()
    }
}

fn syntax_message(s: SyntaxError) -> &'static str {
    match s {
        SyntaxError::InvalidBangMarkup => "unknown markup after '<!'",
        SyntaxError::UnclosedPI => "processing instruction is never closed with '?>'",
        SyntaxError::UnclosedXmlDecl => "XML declaration is never closed with '?>'",
        SyntaxError::UnclosedComment => "comment is never closed with '-->'",
        SyntaxError::UnclosedDoctype => "DOCTYPE is never closed with '>'",
        SyntaxError::UnclosedCData => "CDATA section is never closed with ']]>'",
        SyntaxError::UnclosedTag => "tag is never closed with '>'",
        SyntaxError::UnclosedSingleQuotedAttributeValue => {
            "attribute value is never closed with '\\''"
        }
        SyntaxError::UnclosedDoubleQuotedAttributeValue => {
            "attribute value is never closed with '\"'"
        }
    }
}

fn describe(e: &QxError) -> String {
    match e {
        QxError::Escape(esc) => describe_escape(esc),
        other => other.to_string(),
    }
}

fn describe_escape(e: &EscapeError) -> String {
    match e {
        EscapeError::UnrecognizedEntity(_, name) => format!("undefined entity '&{name};'"),
        EscapeError::UnterminatedEntity(_) => {
            "'&' starts an entity reference that is never closed with ';' (write &amp; for a literal '&')".into()
        }
        other => other.to_string(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `src`.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
