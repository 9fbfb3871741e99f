//! `console`: copies between the terminal and the domain's serial pty until Ctrl+] (or the VM
//! ends). One session per domain: a lock file names the holder; `--force` takes the console over
//! and the previous session notices it was replaced and detaches.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::store::FileLock;

/// Ctrl+]: virsh's escape character.
pub const ESCAPE: u8 = 0x1d;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("Operation not supported: Active console session exists for this domain")]
    Busy,
    #[error("internal error: cannot open console {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("internal error: console I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Puts a terminal in raw mode and restores it on drop.
struct RawTerminal {
    fd: RawFd,
    saved: libc::termios,
}

impl RawTerminal {
    fn enter(fd: RawFd) -> Option<RawTerminal> {
        // SAFETY: isatty/tcgetattr/tcsetattr on a descriptor we were handed; termios is plain data.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(fd, libc::TCSAFLUSH, &raw);
            Some(RawTerminal { fd, saved })
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved in `enter` on the same descriptor.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved);
        }
    }
}

/// Takes the console lock, taking it over from another session when `force`.
fn acquire(lock_path: &Path, force: bool) -> Result<FileLock, ConsoleError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(lock) = FileLock::try_exclusive(lock_path)? {
            std::fs::write(lock_path, std::process::id().to_string())?;
            return Ok(lock);
        }
        if !force {
            return Err(ConsoleError::Busy);
        }
        // The holder polls the file and leaves when it names somebody else.
        std::fs::write(lock_path, std::process::id().to_string())?;
        if Instant::now() > deadline {
            return Err(ConsoleError::Busy);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn still_ours(lock_path: &Path) -> bool {
    std::fs::read_to_string(lock_path)
        .map(|s| s.trim() == std::process::id().to_string())
        .unwrap_or(true)
}

/// Attaches `input`/`output` to the pty at `pty` until the escape byte, end of input, the VM
/// ending, or a forced takeover.
pub fn attach(
    pty: &Path,
    lock_path: &Path,
    force: bool,
    input: RawFd,
    output: &mut dyn Write,
) -> Result<(), ConsoleError> {
    let _lock = acquire(lock_path, force)?;
    let mut dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(pty)
        .map_err(|source| ConsoleError::Open {
            path: pty.display().to_string(),
            source,
        })?;
    let _raw = RawTerminal::enter(input);
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: dev.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: input,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on two initialised pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 200) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if !still_ours(lock_path) {
            return Ok(());
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match dev.read(&mut buf) {
                // EIO: the VM closed its side (it ended or rebooted into a new pty).
                Ok(0) | Err(_) => return Ok(()),
                Ok(k) => {
                    output.write_all(&buf[..k])?;
                    output.flush()?;
                }
            }
        }
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            // SAFETY: read into our buffer from the caller's descriptor.
            let k = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
            if k <= 0 {
                // End of input (a script's pipe closed): detach, as the escape byte would.
                return Ok(());
            }
            let data = &buf[..k as usize];
            if let Some(pos) = data.iter().position(|&b| b == ESCAPE) {
                dev.write_all(&data[..pos])?;
                return Ok(());
            }
            dev.write_all(data)?;
        }
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    /// The pty must not become our controlling terminal.
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}
