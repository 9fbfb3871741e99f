//! The target directory every file-based pool (dir, fs, netfs) has: creating it at build,
//! checking it at start, its filesystem figures, removing it at delete.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::storage::driver::PoolFigures;
use crate::storage::{PoolDef, StorageError};

pub fn target(def: &PoolDef) -> PathBuf {
    PathBuf::from(def.target_path().unwrap_or_default())
}

/// Creates the target directory (with the requested mode). With `no_overwrite`, it must not
/// exist yet (a dir pool's only "data" is its directory).
pub fn build(def: &PoolDef, no_overwrite: bool) -> Result<(), StorageError> {
    let target = target(def);
    if no_overwrite && target.exists() {
        return Err(StorageError::PoolBuilt(format!(
            "{} exists",
            target.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(def.target_mode().unwrap_or(0o711))
        .create(&target)
        .map_err(StorageError::io("cannot create path", &target))
}

/// A pool can only start on an existing directory.
pub fn check(def: &PoolDef) -> Result<(), StorageError> {
    let target = target(def);
    let meta =
        std::fs::metadata(&target).map_err(StorageError::io("cannot open directory", &target))?;
    if !meta.is_dir() {
        return Err(StorageError::Invalid(format!(
            "{} is not a directory",
            target.display()
        )));
    }
    Ok(())
}

/// `pool-delete`: removes the (empty) target directory.
pub fn delete(def: &PoolDef) -> Result<(), StorageError> {
    let t = target(def);
    std::fs::remove_dir(&t).map_err(StorageError::io("failed to remove pool", &t))
}

/// The filesystem figures libvirt reports for a directory pool (from statvfs).
pub fn figures(dir: &Path) -> Result<PoolFigures, StorageError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| StorageError::InvalidArg(format!("path {} has a NUL byte", dir.display())))?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(StorageError::io("cannot statvfs", dir)(
            std::io::Error::last_os_error(),
        ));
    }
    let frsize = st.f_frsize as u64;
    let blocks = st.f_blocks as u64;
    Ok(PoolFigures {
        capacity: blocks * frsize,
        allocation: blocks.saturating_sub(st.f_bfree as u64) * frsize,
        available: st.f_bavail as u64 * frsize,
    })
}
