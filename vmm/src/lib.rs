//! ironvirt VMM library.
pub mod config;
pub use config::*;
