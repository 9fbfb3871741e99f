//! libvirt domain XML.
