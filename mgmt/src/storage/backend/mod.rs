//! Pool backends, one module per pool type, dispatched by [`Backend`]. External tools are run
//! through [`exec`] from argv vectors that pure functions build (and unit tests pin down).
//!
//! | type    | build                          | start / stop          | volumes                |
//! |---------|--------------------------------|-----------------------|------------------------|
//! | dir     | mkdir target                   | —                     | files in the target    |
//! | fs      | mkdir target (+ mkfs)          | mount / umount device | files in the mount     |
//! | netfs   | mkdir target                   | mount / umount share  | files in the mount     |
//! | logical | pvcreate + vgcreate            | vgchange -aly / -aln  | LVs (lvcreate, lvs…)   |

pub mod blkid;
pub mod dir;
pub mod exec;
pub mod fs;
pub mod logical;
pub mod mount;
pub mod netfs;

use super::driver::PoolFigures;
use super::{PoolDef, StorageError};

/// `pool-build --overwrite` / `--no-overwrite` (mutually exclusive; the CLI checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildFlags {
    pub overwrite: bool,
    pub no_overwrite: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Dir,
    Fs,
    NetFs,
    Logical,
}

impl Backend {
    /// The backend of a pool, or libvirt-style "unsupported" for types without one (define
    /// accepts them; build and start refuse).
    pub fn of(def: &PoolDef) -> Result<Backend, StorageError> {
        Ok(match def.pool_type() {
            "dir" => Backend::Dir,
            "fs" => Backend::Fs,
            "netfs" => Backend::NetFs,
            "logical" => Backend::Logical,
            other => {
                return Err(StorageError::Unsupported(format!(
                    "storage pool type '{other}' is not supported by ironvirt yet"
                )))
            }
        })
    }

    /// Volumes are files in the target directory (else logical volumes).
    pub fn file_volumes(self) -> bool {
        self != Backend::Logical
    }

    pub fn build(self, def: &PoolDef, flags: BuildFlags) -> Result<(), StorageError> {
        match self {
            Backend::Dir => dir::build(def, flags.no_overwrite),
            Backend::Fs => fs::build(def, flags),
            // The share is built on its server; here there is only the mount point to make.
            Backend::NetFs => dir::build(def, false),
            Backend::Logical => logical::build(def, flags),
        }
    }

    /// Makes the pool's storage reachable (mounts, activates the volume group).
    pub fn start(self, def: &PoolDef) -> Result<(), StorageError> {
        match self {
            Backend::Dir => dir::check(def),
            Backend::Fs => fs::start(def),
            Backend::NetFs => netfs::start(def),
            Backend::Logical => logical::start(def),
        }
    }

    pub fn stop(self, def: &PoolDef) -> Result<(), StorageError> {
        match self {
            Backend::Dir => Ok(()),
            Backend::Fs => fs::stop(def),
            Backend::NetFs => netfs::stop(def),
            Backend::Logical => logical::stop(def),
        }
    }

    /// Capacity, allocation and available bytes of a started pool.
    pub fn figures(self, def: &PoolDef) -> Result<PoolFigures, StorageError> {
        match self {
            Backend::Logical => logical::figures(def),
            _ => dir::figures(&dir::target(def)),
        }
    }

    /// `pool-delete` on an inactive pool.
    pub fn delete(self, def: &PoolDef) -> Result<(), StorageError> {
        match self {
            Backend::Logical => logical::delete(def),
            _ => dir::delete(def),
        }
    }
}
