//! Starting an `ironvirt-vmm` process for a domain and waiting until its VM runs.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironvirt_vmm::control::{Client, Request, Value, VcpuInfo};

use super::runtime::{ExitStatus, RunFiles};
use super::DriverError;

/// How long a VMM may take to build its VM before `start` gives up and kills it.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout on the control socket.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a successful start observed.
pub(crate) struct Started {
    pub pid: i32,
    /// The console pty, when the serial is a pty.
    pub pty: Option<String>,
    /// The VM already ended (a guest that powers off at once); the caller cleans up.
    pub ended: Option<ExitStatus>,
}

pub(crate) struct Spawn<'a> {
    pub vmm: &'a Path,
    pub files: &'a RunFiles,
    pub log: &'a Path,
    pub name: &'a str,
    pub paused: bool,
    pub vcpus: u32,
}

impl Spawn<'_> {
    /// Spawns the VMM detached (its own session, stdio to the log) and waits until its vCPUs run,
    /// it fails (with its own error), or it ends.
    pub fn run(&self) -> Result<Started, DriverError> {
        let files = self.files;
        for p in [files.pidfile(), files.control(), files.exit()] {
            let _ = std::fs::remove_file(p);
        }
        super::ensure_parent(self.log)?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .map_err(DriverError::io("cannot open log file", self.log))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(
            log,
            "{}: starting up ironvirt {} for domain {}",
            timestamp(),
            env!("CARGO_PKG_VERSION"),
            self.name
        );
        let stderr = log
            .try_clone()
            .map_err(DriverError::io("cannot open log file", self.log))?;
        let mut cmd = Command::new(self.vmm);
        cmd.arg("--domain")
            .arg(files.vmm_def())
            .arg("--control-socket")
            .arg(files.control())
            .arg("--pidfile")
            .arg(files.pidfile())
            .arg("--exit-status")
            .arg(files.exit());
        if self.paused {
            cmd.arg("--paused");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        // SAFETY: setsid is async-signal-safe; the VM must not share our session, so it survives
        // this CLI and the terminal it runs in.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| DriverError::Spawn {
            vmm: self.vmm.display().to_string(),
            source,
        })?;
        self.wait_ready(child, log_start)
    }

    fn wait_ready(&self, mut child: Child, log_start: u64) -> Result<Started, DriverError> {
        let pid = child.id() as i32;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_status)) = child.try_wait() {
                return self.ended(pid, log_start);
            }
            if let Some(started) = self.probe(pid)? {
                reap_in_background(child);
                return Ok(started);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DriverError::Timeout(format!(
                    "the VM did not start within {}s (see {})",
                    START_TIMEOUT.as_secs(),
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ready once every vCPU that boots online has a thread (with `--paused` they park at once).
    fn probe(&self, pid: i32) -> Result<Option<Started>, DriverError> {
        let Ok(mut client) = Client::connect(&self.files.control(), CONTROL_TIMEOUT) else {
            return Ok(None);
        };
        let Ok(reply) = client.call(&Request::QueryVcpus) else {
            return Ok(None);
        };
        let running = reply
            .get("vcpus")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(VcpuInfo::from_value)
                    .filter(|i| i.tid.is_some())
                    .count()
            })
            .unwrap_or(0);
        if running < self.vcpus as usize {
            return Ok(None);
        }
        let pty = client
            .call(&Request::QueryChardev)
            .ok()
            .and_then(|v| v.get("pty").and_then(Value::as_str).map(str::to_string));
        Ok(Some(Started {
            pid,
            pty,
            ended: None,
        }))
    }

    fn ended(&self, pid: i32, log_start: u64) -> Result<Started, DriverError> {
        match self.files.read_exit() {
            Some(ExitStatus::Failed(msg)) => Err(DriverError::Vmm(msg)),
            Some(other) => Ok(Started {
                pid,
                pty: None,
                ended: Some(other),
            }),
            None => Err(DriverError::VmmDied(log_tail(self.log, log_start))),
        }
    }
}

/// Waits for the child on a thread so a long-lived caller (the interactive shell) collects it.
fn reap_in_background(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("vmm-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// What the VMM wrote to its log since `from`, trimmed, for an error message.
fn log_tail(log: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.take(64 * 1024).read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("starting up ironvirt"))
        .collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n");
    if tail.is_empty() {
        "the VMM exited without a message".into()
    } else {
        tail
    }
}

/// UTC time as libvirt's logs print it: `2024-01-31 12:34:56.789+0000`.
pub(crate) fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
