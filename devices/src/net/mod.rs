//! Host network plumbing for virtio-net: TAP devices.

pub mod tap;
