//! Serves the control protocol for one VM: one thread accepts, one thread per client answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ironvirt_devices::bus::lock;

use super::json::Value;
use super::protocol::{encode_reply, ControlError, Request};
use super::threads;
use crate::VmHandle;

/// A client line longer than this is refused (the protocol's requests are tiny).
const MAX_LINE: u64 = 64 * 1024;

/// Facts about the VM fixed at start-up that the handle does not carry.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// The serial console's pty, for `query-chardev`.
    pub pty: Option<PathBuf>,
}

struct Shared {
    handle: Mutex<VmHandle>,
    info: Mutex<ServerInfo>,
}

/// The listening socket; dropping it removes the socket file (the accept thread ends with the process).
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file left by a dead VMM) and starts serving.
    pub fn spawn(path: &Path, handle: VmHandle, info: ServerInfo) -> std::io::Result<Self> {
        if path.exists() {
            // A live VMM would still answer; only a stale file left by a killed one gets here,
            // because the manager serializes starts of one domain.
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let shared = Arc::new(Shared {
            handle: Mutex::new(handle),
            info: Mutex::new(info),
        });
        let serving = shared.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = serving.clone();
                    let _ = std::thread::Builder::new()
                        .name("control-client".into())
                        .spawn(move || serve_client(stream, &shared));
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, shared: &Shared) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let complete = line.ends_with('\n');
        let reply = if !complete {
            Err(ControlError::new("GenericError", "request line too long"))
        } else {
            Request::decode(line.trim_end()).and_then(|r| execute(&r, shared))
        };
        let mut out = encode_reply(&reply);
        out.push('\n');
        if writer.write_all(out.as_bytes()).is_err() || !complete {
            return;
        }
    }
}

fn execute(request: &Request, shared: &Shared) -> Result<Value, ControlError> {
    let generic = |e: String| ControlError::new("GenericError", e);
    let handle = lock(&shared.handle).clone();
    match request {
        Request::QueryStatus => Ok(Value::object()
            .with(
                "status",
                if handle.is_paused() {
                    "paused"
                } else {
                    "running"
                },
            )
            .with("pid", i64::from(std::process::id()))),
        Request::Stop => {
            handle.pause().map_err(|e| generic(e.to_string()))?;
            Ok(Value::object())
        }
        Request::Cont => {
            handle.resume();
            Ok(Value::object())
        }
        Request::SystemPowerdown => {
            handle
                .press_power_button()
                .map_err(|e| generic(format!("cannot press the power button: {e}")))?;
            Ok(Value::object())
        }
        Request::SystemReboot => {
            handle
                .reboot()
                .map_err(|e| generic(format!("cannot press the power button: {e}")))?;
            Ok(Value::object())
        }
        Request::SystemReset => {
            handle.reset();
            Ok(Value::object())
        }
        Request::Quit => {
            handle.stop();
            Ok(Value::object())
        }
        Request::QueryVcpus => {
            let vcpus: Vec<Value> = handle
                .vcpu_tids()
                .iter()
                .enumerate()
                .map(|(i, tid)| threads::vcpu_info(i as u32, *tid).to_value())
                .collect();
            Ok(Value::object().with("vcpus", vcpus))
        }
        Request::SetVcpuAffinity { vcpu, cpus } => {
            let tid = handle
                .vcpu_tids()
                .get(*vcpu as usize)
                .copied()
                .flatten()
                .ok_or_else(|| {
                    ControlError::new(
                        "InvalidParameter",
                        format!("vCPU {vcpu} does not exist or is not running"),
                    )
                })?;
            threads::set_affinity(tid, cpus).map_err(|e| generic(e.to_string()))?;
            Ok(Value::object())
        }
        Request::QueryChardev => Ok(match &lock(&shared.info).pty {
            Some(p) => Value::object().with("pty", p.display().to_string()),
            None => Value::object(),
        }),
        Request::Balloon { bytes } => {
            handle
                .set_memory(*bytes)
                .map_err(|e| generic(e.to_string()))?;
            Ok(Value::object())
        }
        Request::QueryBalloon => {
            let (actual, stats) = handle.memory_stats().map_err(|e| generic(e.to_string()))?;
            let mut values = Value::object();
            for (tag, value) in &stats.values {
                values = values.with(&tag.to_string(), i64::try_from(*value).unwrap_or(i64::MAX));
            }
            Ok(Value::object()
                .with("actual", i64::try_from(actual).unwrap_or(i64::MAX))
                .with(
                    "last_update",
                    i64::try_from(stats.last_update).unwrap_or(i64::MAX),
                )
                .with("stats", values))
        }
        Request::QueryBlockstats => {
            let num = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let disks: Vec<Value> = handle
                .block_stats()
                .into_iter()
                .map(|(dev, s)| {
                    Value::object()
                        .with("device", dev)
                        .with("rd_reqs", num(s.read_reqs))
                        .with("rd_bytes", num(s.read_bytes))
                        .with("wr_reqs", num(s.write_reqs))
                        .with("wr_bytes", num(s.write_bytes))
                        .with("flush_reqs", num(s.flush_reqs))
                        .with("errors", num(s.errors))
                })
                .collect();
            Ok(Value::object().with("disks", disks))
        }
        Request::QueryCpuStats => {
            let (user, system) = threads::process_times_ns();
            Ok(Value::object()
                .with("user_ns", i64::try_from(user).unwrap_or(i64::MAX))
                .with("system_ns", i64::try_from(system).unwrap_or(i64::MAX)))
        }
        Request::QueryNet => {
            let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let nets: Vec<Value> = handle
                .interfaces()
                .iter()
                .map(|n| {
                    let s = n.stats();
                    Value::object()
                        .with("name", n.tap.as_str())
                        .with("mac", format_mac(&n.mac))
                        .with("up", n.link_up())
                        .with("rx_bytes", big(s.rx_bytes))
                        .with("rx_packets", big(s.rx_packets))
                        .with("rx_errs", big(s.rx_errs))
                        .with("rx_drop", big(s.rx_drop))
                        .with("tx_bytes", big(s.tx_bytes))
                        .with("tx_packets", big(s.tx_packets))
                        .with("tx_errs", big(s.tx_errs))
                        .with("tx_drop", big(s.tx_drop))
                })
                .collect();
            Ok(Value::object().with("interfaces", nets))
        }
        Request::SetLink { name, up } => {
            let net = handle
                .interfaces()
                .iter()
                .find(|n| n.tap == *name || format_mac(&n.mac).eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    ControlError::new("DeviceNotFound", format!("Device '{name}' not found"))
                })?;
            net.set_link(*up).map_err(|e| generic(e.to_string()))?;
            Ok(Value::object())
        }
    }
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
