//! QEMU-compatible image locking.
//!
//! QEMU (block/file-posix.c) expresses "I use permission P" as a shared OFD lock on byte
//! `100 + P` of the image file and "I do not let others have P" as a shared OFD lock on byte `200 + P`.
//! Before taking a permission it tests whether anybody holds byte `200 + P` (somebody refuses to share
//! it), and for each permission it refuses to share it tests whether anybody holds `100 + P`. The test is
//! an exclusive `F_OFD_GETLK`, which conflicts with any other open file description's shared lock.
//!
//! Permission bits (QEMU's `BLK_PERM_*`): 0 consistent-read, 1 write, 2 write-unchanged, 3 resize
//! (4 was graph-mod before QEMU 6.1; nobody takes it any more and we neither use nor refuse it).
//! Like a QEMU writer we use consistent-read, write and resize and refuse to share write and resize;
//! like a QEMU reader we use consistent-read and refuse to share write and resize.
//!
//! The locks belong to the open file description, so they go away when the image file is closed —
//! unless a child forked meanwhile still has a copy of the descriptor: then they last until that
//! child execs (our files are close-on-exec) or exits. QEMU has the same property.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::BlockError;

const PERM_BASE: i64 = 100;
const SHARED_BASE: i64 = 200;

const PERM_CONSISTENT_READ: u32 = 0;
const PERM_WRITE: u32 = 1;
const PERM_RESIZE: u32 = 3;
const PERM_COUNT: u32 = 5;

fn perm_name(p: u32) -> &'static str {
    match p {
        0 => "consistent read",
        1 => "write",
        2 => "write unchanged",
        3 => "resize",
        _ => "graph modification",
    }
}

/// Takes the locks QEMU would take for a reader (`write == false`) or writer of `file`.
pub fn lock_image(file: &File, path: &Path, write: bool) -> Result<(), BlockError> {
    let used: &[u32] = if write {
        &[PERM_CONSISTENT_READ, PERM_WRITE, PERM_RESIZE]
    } else {
        &[PERM_CONSISTENT_READ]
    };
    let unshared: &[u32] = &[PERM_WRITE, PERM_RESIZE];

    let locked = |detail: String| BlockError::Locked {
        path: path.to_path_buf(),
        detail,
    };
    // Apply first, then test, as QEMU does: two openers racing then both see each other.
    for &p in used {
        apply(file, PERM_BASE + i64::from(p)).map_err(BlockError::io(path, "lock"))?;
    }
    for &p in unshared {
        apply(file, SHARED_BASE + i64::from(p)).map_err(BlockError::io(path, "lock"))?;
    }
    for &p in used {
        if held_by_other(file, SHARED_BASE + i64::from(p))
            .map_err(BlockError::io(path, "lock test"))?
        {
            return Err(locked(format!("failed to get \"{}\" lock", perm_name(p))));
        }
    }
    for p in 0..PERM_COUNT {
        if unshared.contains(&p)
            && held_by_other(file, PERM_BASE + i64::from(p))
                .map_err(BlockError::io(path, "lock test"))?
        {
            return Err(locked(format!(
                "failed to get shared \"{}\" lock",
                perm_name(p)
            )));
        }
    }
    Ok(())
}

fn flock_at(kind: libc::c_int, byte: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl.l_pid = 0;
    fl
}

/// Takes a shared OFD lock on one byte.
fn apply(file: &File, byte: i64) -> io::Result<()> {
    let mut fl = flock_at(libc::F_RDLCK, byte);
    loop {
        // SAFETY: fcntl with F_OFD_SETLK reads the flock struct we pass; it lives across the call.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether another open file description holds a lock on `byte`.
fn held_by_other(file: &File, byte: i64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK, byte);
    loop {
        // SAFETY: fcntl with F_OFD_GETLK reads and fills the flock struct we pass.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if r == 0 {
            return Ok(fl.l_type != libc::F_UNLCK as libc::c_short);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
