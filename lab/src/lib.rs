//! The lab: real Linux guests under ironvirt-vmm inside a QEMU-TCG VM with emulated AMD-V.
