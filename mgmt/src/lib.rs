//! ironvirt management layer.

pub mod cli;
pub mod config;
pub mod driver;
pub mod host;
pub mod launch;
pub mod network;
pub mod storage;
pub mod store;
pub mod uri;
pub mod xml;
