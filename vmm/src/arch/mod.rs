//! Architecture-specific setup. Only x86_64 exists today; other architectures get sibling modules.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
