//! ironvirt management layer.

pub mod launch;
pub mod xml;
