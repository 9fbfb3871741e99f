//! Booting L1 (QEMU TCG with emulated AMD-V) with a prepared initramfs, capturing its serial console.
//!
//! The console streams to a log file (and optionally the caller's stdout) as it arrives. A dead L1 —
//! no `l1-ready`/`l1-done` marker, an L1 kernel BUG/panic line, or a timeout — is retried once
//! (LAB.md: nested emulation occasionally crashes L1), and the retry is reported in the result.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::artifacts::Artifacts;
use crate::markers::Markers;

/// Lines the L1 payload mirrors from L2 consoles start with this; such lines never mean L1 died.
pub const L2_LINE_PREFIX: &str = "L2";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "cannot start {qemu}: {source} (install the Debian package qemu-system-x86 from bookworm-backports)"
    )]
    Spawn {
        qemu: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Live copy of the console to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    None,
    /// Everything L1 prints.
    All,
    /// Only the guest consoles the payload mirrors (`L2|name| line`, shown as `line`), their VMM's
    /// stderr (`L2ERR|name| line`, shown on stderr), and the lab's own retry notices.
    Guest,
}

impl Echo {
    fn show(self, line: &str) {
        let shown = match self {
            Echo::None => return,
            Echo::All => {
                print!("{line}");
                Some(())
            }
            Echo::Guest => guest_part(line, "L2|")
                .map(|l| print!("{l}"))
                .or_else(|| guest_part(line, "L2ERR|").map(|l| eprint!("{l}"))),
        };
        if shown.is_some() {
            let _ = io::stdout().flush();
        }
    }
}

/// `L2|name| rest` -> `rest` for lines with the given prefix.
fn guest_part<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?;
    let (_, text) = rest.split_once("| ")?;
    Some(text)
}

/// How to boot L1.
#[derive(Debug, Clone)]
pub struct L1Config {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    pub cmdline: String,
    /// Whole-run limit for one attempt.
    pub timeout: Duration,
    /// The console transcript of every attempt is appended here.
    pub log: PathBuf,
    /// What to copy to this process's stdout as it arrives.
    pub echo: Echo,
    /// Extra attempts after a dead L1 (LAB.md recommends one).
    pub retries: u32,
    /// Raw images given to L1 as virtio disks (`/dev/vda`, `/dev/vdb`, … in L1; needs
    /// `L1Initramfs::storage_modules`).
    pub drives: Vec<PathBuf>,
}

impl L1Config {
    /// LAB.md's verified L1 configuration: 4 GiB, 2 vCPUs, quiet console on ttyS0.
    pub fn new(artifacts: &Artifacts, initrd: &Path, log: &Path) -> Self {
        L1Config {
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel: artifacts.kernel.bzimage.clone(),
            initrd: initrd.to_path_buf(),
            memory_mib: 4096,
            cpus: 2,
            cmdline: "console=ttyS0 quiet panic=-1".into(),
            timeout: Duration::from_secs(300),
            log: log.to_path_buf(),
            echo: Echo::None,
            retries: 1,
            drives: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.qemu);
        c.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
            .arg("-m")
            .arg(self.memory_mib.to_string())
            .arg("-smp")
            .arg(self.cpus.to_string())
            .args([
                "-nographic",
                "-nodefaults",
                "-serial",
                "stdio",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-append")
            .arg(&self.cmdline);
        for drive in &self.drives {
            let mut spec = std::ffi::OsString::from("file=");
            // QEMU's option syntax doubles commas in values.
            spec.push(drive.as_os_str().to_string_lossy().replace(',', ",,"));
            spec.push(",format=raw,if=virtio,cache=unsafe");
            c.arg("-drive").arg(spec);
        }
        c
    }
}

/// Why an attempt is considered a dead L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    Timeout(Duration),
    KernelCrash(String),
    NoReadyMarker,
    NoDoneMarker,
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadReason::Timeout(d) => write!(f, "timed out after {} s", d.as_secs()),
            DeadReason::KernelCrash(l) => write!(f, "L1 kernel crashed: {l}"),
            DeadReason::NoReadyMarker => write!(f, "L1 never reported l1-ready"),
            DeadReason::NoDoneMarker => write!(f, "L1 stopped before l1-done"),
        }
    }
}

/// The result of booting L1 (the last attempt's transcript and markers).
#[derive(Debug, Clone)]
pub struct L1Run {
    pub transcript: String,
    pub markers: Markers,
    /// Attempts made (2 after a retry).
    pub attempts: u32,
    /// Why earlier attempts were retried.
    pub retried: Vec<String>,
    /// Set when the last attempt died too.
    pub dead: Option<DeadReason>,
    /// Wall time of the last attempt.
    pub elapsed: Duration,
    pub log: PathBuf,
    /// QEMU's own stderr (last attempt).
    pub qemu_stderr: String,
}

impl L1Run {
    /// True when L1 booted, ran the payload and shut down normally.
    pub fn completed(&self) -> bool {
        self.dead.is_none()
    }
}

/// An L1 kernel crash line (not a mirrored guest line).
fn crash_line(line: &str) -> Option<&str> {
    let l = crate::markers::strip_terminal_noise(line);
    if l.starts_with(L2_LINE_PREFIX) {
        return None;
    }
    // Strip a printk timestamp like "[   12.345678] ".
    let body = match l.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((_, rest)) => rest.trim_start(),
        None => l,
    };
    let crashed = body.starts_with("Kernel panic")
        || body.starts_with("BUG:")
        || body.starts_with("kernel BUG")
        || body.starts_with("Oops:");
    crashed.then_some(body)
}

/// Boots L1, retrying once (by default) if it dies.
pub fn run(cfg: &L1Config) -> Result<L1Run, RunError> {
    if let Some(parent) = cfg.log.parent() {
        fs::create_dir_all(parent).map_err(|source| RunError::Io {
            op: "creating",
            path: parent.display().to_string(),
            source,
        })?;
    }
    let log_err = |source| RunError::Io {
        op: "writing",
        path: cfg.log.display().to_string(),
        source,
    };
    // Truncate: the log holds this run's attempts only.
    File::create(&cfg.log).map_err(log_err)?;
    let mut retried = Vec::new();
    let mut attempt = 1;
    loop {
        let mut log = OpenOptions::new()
            .append(true)
            .open(&cfg.log)
            .map_err(log_err)?;
        writeln!(log, "=== ironvirt-lab: L1 attempt {attempt} ===").map_err(log_err)?;
        let started = Instant::now();
        let (transcript, qemu_stderr, dead) = run_once(cfg, log)?;
        let run = L1Run {
            markers: Markers::parse(&transcript),
            transcript,
            attempts: attempt,
            retried: retried.clone(),
            dead,
            elapsed: started.elapsed(),
            log: cfg.log.clone(),
            qemu_stderr,
        };
        match &run.dead {
            Some(reason) if attempt <= cfg.retries => {
                let msg = format!("attempt {attempt}: {reason}");
                if cfg.echo != Echo::None {
                    println!("ironvirt-lab: L1 died ({msg}); retrying");
                }
                retried.push(msg);
                attempt += 1;
            }
            _ => return Ok(run),
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn run_once(
    cfg: &L1Config,
    mut log: File,
) -> Result<(String, String, Option<DeadReason>), RunError> {
    let mut child = cfg
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            qemu: cfg.qemu.display().to_string(),
            source,
        })?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    let reader = thread::spawn(move || {
        let Some(out) = stdout else { return };
        let mut out = BufReader::new(out);
        let mut buf = Vec::new();
        // Split on '\n' ourselves: the console is not guaranteed to be UTF-8.
        while matches!(out.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).replace('\r', "");
            if tx.send(line).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let stderr = child.stderr.take();
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let mut bytes = Vec::new();
            let _ = e.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        s
    });

    let deadline = Instant::now() + cfg.timeout;
    let mut transcript = String::new();
    let mut dead = None;
    let mut done_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            dead = Some(DeadReason::Timeout(cfg.timeout));
            kill(&mut child);
            break;
        }
        // After l1-done, L1 only needs to power off: don't wait long for QEMU to exit.
        if done_at.is_some_and(|t| now.duration_since(t) > Duration::from_secs(20)) {
            kill(&mut child);
            break;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_secs(1))) {
            Ok(line) => {
                // Logging failures must not lose the run: the transcript is kept in memory too.
                let _ = log.write_all(line.as_bytes());
                cfg.echo.show(&line);
                if let Some(crash) = crash_line(&line) {
                    dead = Some(DeadReason::KernelCrash(crash.trim().to_string()));
                }
                if line.starts_with("IRONVIRT-LAB: l1-done") {
                    done_at = Some(Instant::now());
                }
                transcript.push_str(&line);
                if dead.is_some() {
                    // Give the panic report a moment to reach the log, then stop a hung L1.
                    thread::sleep(Duration::from_secs(2));
                    while let Ok(l) = rx.try_recv() {
                        let _ = log.write_all(l.as_bytes());
                        transcript.push_str(&l);
                    }
                    kill(&mut child);
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                break;
            }
        }
    }
    let _ = reader.join();
    let qemu_stderr = err_reader.join().unwrap_or_default();
    if !qemu_stderr.is_empty() {
        let _ = writeln!(log, "=== qemu stderr ===\n{qemu_stderr}");
    }
    let markers = Markers::parse(&transcript);
    if dead.is_none() {
        if !markers.contains("l1-ready") && !markers.contains("l1-no-kvm") {
            dead = Some(DeadReason::NoReadyMarker);
        } else if !markers.contains("l1-done") {
            dead = Some(DeadReason::NoDoneMarker);
        }
    }
    Ok((transcript, qemu_stderr, dead))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_l1_crashes_only() {
        assert!(crash_line("[   12.5] BUG: stack guard page was hit").is_some());
        assert!(crash_line("Kernel panic - not syncing: Fatal exception").is_some());
        assert!(crash_line("L2|ivm| Kernel panic - not syncing").is_none());
        assert!(crash_line("IRONVIRT-LAB: value BUG: x").is_none());
    }

    #[test]
    fn strips_guest_prefix() {
        assert_eq!(
            guest_part("L2|demo| hello | x\n", "L2|"),
            Some("hello | x\n")
        );
        assert_eq!(guest_part("L2ERR|demo| e\n", "L2|"), None);
    }
}
