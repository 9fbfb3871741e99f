//! Per-object serialization between concurrent `ironvirt` invocations: an exclusive flock on a lock
//! file, released when the guard drops (or the process dies).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock on `path` (created if needed) is ours.
    pub fn exclusive(path: &Path) -> std::io::Result<FileLock> {
        if let Some(dir) = path.parent() {
            super::ensure_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Whether some process holds a lock on `path` right now (without waiting or keeping one).
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        // SAFETY: as above; a shared lock we get is dropped with `file` at once.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        r != 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

impl FileLock {
    /// Takes the lock on `path` if nobody holds it; `Ok(None)` when somebody does.
    pub fn try_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
        if let Some(dir) = path.parent() {
            super::ensure_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            Ok(Some(FileLock { _file: file }))
        } else {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_while_guard_lives() {
        let dir = std::env::temp_dir().join(format!("ironvirt-lock-{}", std::process::id()));
        let p = dir.join("x.lock");
        assert!(!FileLock::is_held(&p));
        let g = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::is_held(&p));
        drop(g);
        assert!(!FileLock::is_held(&p));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
