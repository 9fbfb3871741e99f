//! `ironvirt-vmm --domain FILE.xml`: runs one VM in this process, configured from libvirt domain XML.
//!
//! Exit status: 0 when the guest powers off (or reboots with `on_reboot='destroy'`), 2 when it crashes with
//! `on_crash='destroy'`, 1 when the VM cannot be built or run (the reason is on stderr).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ironvirt_mgmt::launch::vm_config;
use ironvirt_mgmt::xml::domain::Domain;
use ironvirt_vmm::{Vm, VmExit};

const USAGE: &str = "usage: ironvirt-vmm --domain FILE.xml

Runs one virtual machine in this process, configured from a libvirt domain XML document.

options:
  --domain FILE   the domain XML to run
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

enum Args {
    Run { domain: PathBuf },
    Help,
    Version,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let mut domain = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h") | Some("--help") => return Ok(Args::Help),
            Some("-V") | Some("--version") => return Ok(Args::Version),
            Some("--domain") => {
                domain = Some(PathBuf::from(
                    args.next().ok_or("option '--domain' needs a file name")?,
                ));
            }
            Some(s) if s.starts_with("--domain=") => {
                domain = Some(PathBuf::from(&s["--domain=".len()..]))
            }
            _ => return Err(format!("unexpected argument '{}'", arg.to_string_lossy())),
        }
    }
    domain
        .map(|domain| Args::Run { domain })
        .ok_or_else(|| "missing '--domain FILE.xml'".to_string())
}

fn run(
    domain_path: PathBuf,
    process_start: Instant,
    stop_signals: libc::sigset_t,
) -> Result<VmExit, String> {
    let bytes = std::fs::read(&domain_path)
        .map_err(|e| format!("cannot read domain XML {}: {e}", domain_path.display()))?;
    let domain =
        Domain::parse_bytes(&bytes).map_err(|e| format!("{}: {e}", domain_path.display()))?;
    let config = vm_config(&domain).map_err(|e| e.to_string())?;
    let mut vm = Vm::new(config, process_start).map_err(|e| e.to_string())?;
    stop_on_signals(vm.handle(), stop_signals);
    vm.run().map_err(|e| e.to_string())
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

fn stop_on_signals(handle: ironvirt_vmm::VmHandle, set: libc::sigset_t) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: sigwait on a set of blocked signals, writing the signal number into `sig`.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                log::info!("signal {sig}: stopping the guest");
                handle.stop();
            }
        });
}

fn main() -> ExitCode {
    let process_start = Instant::now();
    let stop_signals = block_stop_signals();
    init_logging();
    let domain = match parse_args() {
        Ok(Args::Run { domain }) => domain,
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
    let result = run(domain, process_start, stop_signals);
    ironvirt_vmm::terminal::restore();
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
