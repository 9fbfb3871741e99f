//! Host network plumbing for virtio-net: TAP devices, macvtap devices, and a small rtnetlink client.

pub mod macvtap;
pub mod netlink;
pub mod tap;
