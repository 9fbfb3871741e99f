//! Storage pools and volumes, as libvirt's storage driver does them: pool and volume XML models,
//! the pool store (defined/active/autostart), the dir, fs, netfs and logical pool backends, and
//! volume operations done by our own block code (no qemu-img at run time) or by lvm2 for LVs.

pub mod backend;
pub mod clone;
pub mod domain;
pub mod driver;
pub mod error;
pub mod image;
pub mod imgcheck;
pub mod imgtool;
pub mod pool_xml;
pub mod progress;
pub mod size;
pub mod vol_xml;
pub mod volume;
pub mod wipe;

pub use clone::CopyFlags;
pub use driver::{PoolRecord, PoolState, StorageDriver};
pub use error::StorageError;
pub use pool_xml::PoolDef;
pub use vol_xml::VolDef;
pub use volume::{VolCreate, VolInfo};
