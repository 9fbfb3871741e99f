//! `ironvirt-vmm --domain FILE.xml`: runs one VM in this process, configured from libvirt domain XML.
//!
//! Exit status: 0 when the guest powers off (or reboots with `on_reboot='destroy'`), 2 when it crashes with
//! `on_crash='destroy'`, 1 when the VM cannot be built or run (the reason is on stderr).
//!
//! The management layer (`ironvirt start`) adds `--control-socket`, `--pidfile`, `--exit-status` and
//! `--paused`: the pid file stays locked for the life of the process, so "is the VM alive" is one
//! non-blocking flock away even after a SIGKILL, and the exit-status file tells a later `ironvirt`
//! invocation why the VM ended (no file + unlocked pid file = the VMM died).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ironvirt_mgmt::launch::vm_config;
use ironvirt_mgmt::xml::domain::Domain;
use ironvirt_vmm::control::{ControlServer, ServerInfo};
use ironvirt_vmm::{Vm, VmExit};

const USAGE: &str = "usage: ironvirt-vmm --domain FILE.xml [options]

Runs one virtual machine in this process, configured from a libvirt domain XML document.

options:
  --domain FILE          the domain XML to run
  --control-socket PATH  serve the JSON-lines control protocol on this UNIX socket
  --pidfile PATH         write this process's pid to PATH and keep it locked while running
  --exit-status PATH     on exit, write why the VM ended: shutdown, destroyed, crashed or failed
  --paused               build the VM but keep its vCPUs paused until a 'cont' request
  -h, --help      show this help
  -V, --version   show the version

environment:
  IRONVIRT_LOG    log level on stderr: error, warn (default), info, debug, trace";

struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.0
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "ironvirt-vmm: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

fn init_logging() {
    let level = std::env::var("IRONVIRT_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Warn);
    if log::set_logger(Box::leak(Box::new(StderrLogger(level)))).is_ok() {
        log::set_max_level(level);
    }
}

#[derive(Default)]
struct RunArgs {
    domain: PathBuf,
    control_socket: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    exit_status: Option<PathBuf>,
    paused: bool,
}

enum Args {
    Run(RunArgs),
    Help,
    Version,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let mut run = RunArgs::default();
    let mut domain = None;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(PathBuf::from(v))),
            _ => (text.clone(), None),
        };
        let mut value = |what: &str| -> Result<PathBuf, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .map(PathBuf::from)
                    .ok_or(format!("option '{name}' needs {what}")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Args::Help),
            "-V" | "--version" => return Ok(Args::Version),
            "--domain" => domain = Some(value("a file name")?),
            "--control-socket" => run.control_socket = Some(value("a socket path")?),
            "--pidfile" => run.pidfile = Some(value("a file name")?),
            "--exit-status" => run.exit_status = Some(value("a file name")?),
            "--paused" => run.paused = true,
            _ => return Err(format!("unexpected argument '{text}'")),
        }
    }
    run.domain = domain.ok_or_else(|| "missing '--domain FILE.xml'".to_string())?;
    Ok(Args::Run(run))
}

/// Creates `path`, takes an exclusive lock on it for the rest of the process's life and writes our pid.
fn lock_pidfile(path: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open pid file {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "pid file {} is locked: another ironvirt-vmm already runs this domain",
            path.display()
        ));
    }
    file.set_len(0)
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
    // The lock must outlive this function: it is released by the kernel when the process ends.
    std::mem::forget(file);
    Ok(())
}

fn write_exit_status(path: &std::path::Path, status: &str) {
    if let Err(e) = std::fs::write(path, format!("{status}\n")) {
        eprintln!(
            "ironvirt-vmm: cannot write exit status to {}: {e}",
            path.display()
        );
    }
}

fn run(
    args: &RunArgs,
    process_start: Instant,
    stop_signals: libc::sigset_t,
) -> Result<VmExit, String> {
    let domain_path = &args.domain;
    if let Some(p) = &args.pidfile {
        lock_pidfile(p)?;
    }
    let bytes = std::fs::read(domain_path)
        .map_err(|e| format!("cannot read domain XML {}: {e}", domain_path.display()))?;
    let domain =
        Domain::parse_bytes(&bytes).map_err(|e| format!("{}: {e}", domain_path.display()))?;
    let config = vm_config(&domain).map_err(|e| e.to_string())?;
    let mut vm = Vm::new(config.clone(), process_start).map_err(|e| e.to_string())?;
    stop_on_signals(vm.handle(), stop_signals);
    if args.paused {
        vm.handle().pause().map_err(|e| e.to_string())?;
    }
    let info = |vm: &Vm| ServerInfo {
        pty: vm.pty_path().map(Into::into),
    };
    // Kept until the VM ends: dropping it removes the socket file.
    let control = match &args.control_socket {
        Some(path) => Some(
            ControlServer::spawn(path, vm.handle(), info(&vm))
                .map_err(|e| format!("cannot serve the control socket {}: {e}", path.display()))?,
        ),
        None => None,
    };
    // `reboot` (libvirt's ACPI reboot) boots the guest again inside `run`, keeping the console and disks.
    let exit = vm.run().map_err(|e| e.to_string());
    drop(control);
    exit
}

/// SIGTERM, SIGINT and SIGHUP stop the VM like a pulled power cord, but through [`Vm::run`]'s normal return,
/// so the host terminal is restored and sockets are cleaned up. The signals are blocked in every thread
/// (threads inherit the mask from `main`) and taken synchronously by one waiter thread.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn stop_on_signals(target: ironvirt_vmm::VmHandle, set: libc::sigset_t) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: sigwait on a set of blocked signals, writing the signal number into `sig`.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                log::info!("signal {sig}: stopping the guest");
                target.stop();
            }
        });
}

fn main() -> ExitCode {
    let process_start = Instant::now();
    let stop_signals = block_stop_signals();
    init_logging();
    let args = match parse_args() {
        Ok(Args::Run(args)) => args,
        Ok(Args::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Args::Version) => {
            println!("ironvirt-vmm {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&args, process_start, stop_signals);
    ironvirt_vmm::terminal::restore();
    if let Some(path) = &args.exit_status {
        let status = match &result {
            Ok(VmExit::PoweredOff) | Ok(VmExit::RebootDestroyed) => "shutdown".to_string(),
            Ok(VmExit::Stopped) => "destroyed".to_string(),
            Ok(VmExit::Crashed(why)) => format!("crashed {why}"),
            Err(e) => format!("failed {e}"),
        };
        write_exit_status(path, &status);
    }
    match result {
        Ok(VmExit::PoweredOff) | Ok(VmExit::Stopped) => ExitCode::SUCCESS,
        Ok(VmExit::RebootDestroyed) => {
            eprintln!("ironvirt-vmm: the guest rebooted and on_reboot is 'destroy': exiting");
            ExitCode::SUCCESS
        }
        Ok(VmExit::Crashed(_)) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
