//! libvirt XML documents: a generic tree that round-trips anything, and typed models over it.

pub mod domain;
pub mod tree;
pub mod units;

pub use domain::{Domain, DomainError};
pub use tree::{Document, Element, Node, XmlError};
