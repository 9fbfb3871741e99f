//! ironvirt management layer.
