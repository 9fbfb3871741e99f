//! COM1's host side: opens the backend a [`SerialConfig`] names, writes guest output to it, and feeds host
//! input to the UART from the event loop, never faster than the guest drains its receive FIFO.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use ironvirt_devices::bus::lock;
use ironvirt_devices::legacy::SerialDevice;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::config::SerialConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open serial log file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("cannot create a pseudo-terminal for the serial console: {0}")]
    Pty(io::Error),
    #[error("cannot listen on serial socket {path}: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error("cannot connect to serial socket {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("cannot duplicate a serial console descriptor: {0}")]
    Dup(io::Error),
}

/// Where input comes from.
pub enum InputSource {
    /// A readable descriptor (stdin, a pty master, a connected socket).
    Fd(File),
    /// A listening socket whose current client is both input and output.
    Listener(UnixListener, Arc<Mutex<Option<UnixStream>>>),
}

/// An opened backend: the writer goes into the UART, the input source into the event loop.
pub struct ConsoleBackend {
    pub output: Box<dyn Write + Send>,
    pub input: Option<InputSource>,
    /// The pty's slave path, for `Pty` backends.
    pub pty_path: Option<PathBuf>,
}

/// Writes to a descriptor in non-blocking mode and drops what does not fit, so a console nobody reads
/// never stalls a vCPU (QEMU does the same for ptys without a reader).
struct LossyWriter(File);

impl Write for LossyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock)
                    || e.raw_os_error() == Some(libc::EIO) =>
            {
                Ok(buf.len())
            }
            other => other,
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Output to the current client of a listening socket, dropped while nobody is connected.
struct ClientWriter(Arc<Mutex<Option<UnixStream>>>);

impl Write for ClientWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut client = lock(&self.0);
        if let Some(stream) = client.as_mut() {
            match stream.write(buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => *client = None,
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stdout, flushed after every write so the console is interactive.
struct StdoutWriter;

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn dup_file(fd: RawFd) -> Result<File, ConsoleError> {
    // SAFETY: dup returns a new descriptor (or -1) that nothing else owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(ConsoleError::Dup(io::Error::last_os_error()));
    }
    // SAFETY: `new` is a fresh descriptor owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(new) }))
}

/// Opens a pseudo-terminal in raw mode and returns its master and slave path.
fn open_pty() -> io::Result<(File, PathBuf)> {
    // SAFETY: posix_openpt with constant flags; the result is checked.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `master` is a fresh descriptor we now own.
    let master = File::from(unsafe { OwnedFd::from_raw_fd(master) });
    let fd = master.as_raw_fd();
    // SAFETY: grantpt/unlockpt on our pty master.
    if unsafe { libc::grantpt(fd) } < 0 || unsafe { libc::unlockpt(fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes at most `name.len()` bytes into `name`.
    if unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r NUL-terminated `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // The guest's line discipline does the cooking; the host side must pass bytes through untouched.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr/cfmakeraw/tcsetattr on our pty with a properly sized termios.
    unsafe {
        if libc::tcgetattr(fd, &mut tio) == 0 {
            libc::cfmakeraw(&mut tio);
            libc::tcsetattr(fd, libc::TCSANOW, &tio);
        }
    }
    set_nonblocking(fd)?;
    Ok((master, PathBuf::from(path)))
}

impl ConsoleBackend {
    pub fn open(config: &SerialConfig) -> Result<Self, ConsoleError> {
        match config {
            SerialConfig::Stdio => {
                terminal::enter_raw_mode();
                let stdin = dup_file(libc::STDIN_FILENO)?;
                Ok(ConsoleBackend {
                    output: Box::new(StdoutWriter),
                    input: Some(InputSource::Fd(stdin)),
                    pty_path: None,
                })
            }
            SerialConfig::File { path, append } => {
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(*append)
                    .truncate(!*append)
                    .open(path)
                    .map_err(|source| ConsoleError::File {
                        path: path.clone(),
                        source,
                    })?;
                Ok(ConsoleBackend {
                    output: Box::new(file),
                    input: None,
                    pty_path: None,
                })
            }
            SerialConfig::Pty => {
                let (master, path) = open_pty().map_err(ConsoleError::Pty)?;
                let input = master.try_clone().map_err(ConsoleError::Dup)?;
                Ok(ConsoleBackend {
                    output: Box::new(LossyWriter(master)),
                    input: Some(InputSource::Fd(input)),
                    pty_path: Some(path),
                })
            }
            SerialConfig::Unix { path, listen: true } => {
                remove_stale_socket(path);
                let listener = UnixListener::bind(path).map_err(|source| ConsoleError::Listen {
                    path: path.clone(),
                    source,
                })?;
                let client = Arc::new(Mutex::new(None));
                Ok(ConsoleBackend {
                    output: Box::new(ClientWriter(client.clone())),
                    input: Some(InputSource::Listener(listener, client)),
                    pty_path: None,
                })
            }
            SerialConfig::Unix {
                path,
                listen: false,
            } => {
                let stream = UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
                    path: path.clone(),
                    source,
                })?;
                set_nonblocking(stream.as_raw_fd()).map_err(ConsoleError::Dup)?;
                let input = File::from(OwnedFd::from(
                    stream.try_clone().map_err(ConsoleError::Dup)?,
                ));
                Ok(ConsoleBackend {
                    output: Box::new(ClientWriter(Arc::new(Mutex::new(Some(stream))))),
                    input: Some(InputSource::Fd(input)),
                    pty_path: None,
                })
            }
        }
    }
}

/// A socket file left by an earlier run would make bind fail; anything else at that path is not ours to remove.
fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The host terminal's mode while stdin is the guest console.
pub mod terminal {
    use std::sync::Mutex;

    static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

    /// Puts a terminal stdin into raw mode (keeping ISIG so Ctrl-C still stops the VMM, and output
    /// post-processing so the host terminal stays sane), remembering the old mode for [`restore`].
    pub fn enter_raw_mode() {
        // SAFETY: isatty on a constant descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return;
        }
        // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
        let mut tio: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr fills `tio`.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut tio) } != 0 {
            return;
        }
        let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
        saved.get_or_insert(tio);
        tio.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        tio.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN);
        tio.c_cflag &= !(libc::CSIZE | libc::PARENB);
        tio.c_cflag |= libc::CS8;
        tio.c_cc[libc::VMIN] = 1;
        tio.c_cc[libc::VTIME] = 0;
        // SAFETY: tcsetattr with a termios derived from the current one.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &tio) };
    }

    /// Puts the terminal back as [`enter_raw_mode`] found it. Safe to call more than once.
    pub fn restore() {
        let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tio) = saved.as_ref() {
            // SAFETY: restoring a termios previously read from the same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, tio) };
        }
    }
}

/// The event-loop side of COM1's input.
pub struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
    drained: EventFd,
    source: InputSource,
    /// The descriptor input is read from now (the source, or the listener's current client).
    reader: Option<File>,
    /// Input is paused until the guest drains its FIFO.
    paused: bool,
    /// Re-polls a pty after its slave side hangs up (epoll would report the hang-up in a busy loop).
    retry: TimerFd,
}

const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

impl SerialInput {
    pub fn new(
        serial: Arc<Mutex<SerialDevice>>,
        drained: EventFd,
        source: InputSource,
    ) -> io::Result<Self> {
        let reader = match &source {
            InputSource::Fd(f) => Some(f.try_clone()?),
            InputSource::Listener(..) => None,
        };
        Ok(SerialInput {
            serial,
            drained,
            source,
            reader,
            paused: false,
            retry: TimerFd::new()?,
        })
    }

    fn reader_events(&self) -> Option<Events> {
        self.reader.as_ref().map(|r| Events::new(r, EventSet::IN))
    }

    fn stop_reading(&mut self, ops: &mut EventOps) {
        if let Some(ev) = self.reader_events() {
            let _ = ops.remove(ev);
        }
    }

    fn pump(&mut self, ops: &mut EventOps) {
        let capacity = lock(&self.serial).input_capacity();
        if capacity == 0 {
            self.stop_reading(ops);
            self.paused = true;
            return;
        }
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        let want = capacity.min(buf.len());
        match reader.read(&mut buf[..want]) {
            Ok(0) => self.lost_reader(ops),
            Ok(n) => {
                lock(&self.serial).enqueue_input(&buf[..n]);
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.lost_reader(ops),
        }
    }

    /// End of input: a socket client left, stdin closed, or a pty's slave hung up.
    fn lost_reader(&mut self, ops: &mut EventOps) {
        self.stop_reading(ops);
        match &self.source {
            InputSource::Listener(_, client) => {
                *lock(client) = None;
                self.reader = None;
            }
            InputSource::Fd(_) => {
                // A pty master can be reopened by the next client; stdin at EOF just stays quiet.
                if self.retry.reset(RETRY_DELAY, None).is_err() {
                    self.reader = None;
                }
            }
        }
    }

    fn accept(&mut self, ops: &mut EventOps) {
        let InputSource::Listener(listener, client) = &self.source else {
            return;
        };
        let client = client.clone();
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        if set_nonblocking(stream.as_raw_fd()).is_err() {
            return;
        }
        let Ok(reader) = stream.try_clone() else {
            return;
        };
        self.stop_reading(ops);
        *lock(&client) = Some(stream);
        self.reader = Some(File::from(OwnedFd::from(reader)));
        if !self.paused {
            if let Some(ev) = self.reader_events() {
                let _ = ops.add(ev);
            }
        }
    }
}

impl MutEventSubscriber for SerialInput {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.drained, EventSet::IN));
        let _ = ops.add(Events::new(&self.retry, EventSet::IN));
        match &self.source {
            InputSource::Listener(l, _) => {
                let _ = ops.add(Events::new(l, EventSet::IN));
            }
            InputSource::Fd(_) => {
                if let Some(ev) = self.reader_events() {
                    let _ = ops.add(ev);
                }
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.drained.as_raw_fd() {
            let _ = self.drained.read();
            if self.paused {
                self.paused = false;
                if let Some(ev) = self.reader_events() {
                    let _ = ops.add(ev);
                }
            }
        } else if fd == self.retry.as_raw_fd() {
            let _ = self.retry.wait();
            if !self.paused {
                if let Some(ev) = self.reader_events() {
                    let _ = ops.add(ev);
                }
            }
        } else if matches!(&self.source, InputSource::Listener(l, _) if l.as_raw_fd() == fd) {
            self.accept(ops);
        } else if self.reader.as_ref().map(|r| r.as_raw_fd()) == Some(fd) {
            if events.event_set().contains(EventSet::IN) {
                self.pump(ops);
            } else {
                self.lost_reader(ops);
            }
        }
    }
}
