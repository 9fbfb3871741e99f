//! The control protocol: one JSON object per line in each direction, named after QMP's commands so
//! that anyone who knows QEMU's monitor can read a trace.
//!
//! Request: `{"execute":"query-status"}` or `{"execute":"set-vcpu-affinity","arguments":{"vcpu":0,"cpus":[1]}}`.
//! Reply: `{"return":{...}}` or `{"error":{"class":"...","desc":"..."}}`.

use super::json::Value;

/// What a client can ask of a running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `running` or `paused`, and the VMM's pid.
    QueryStatus,
    /// Pause every vCPU.
    Stop,
    /// Resume after `Stop`.
    Cont,
    /// Press the ACPI power button.
    SystemPowerdown,
    /// Hard reset; the guest boots again.
    SystemReset,
    /// Press the power button, and boot the guest again once it has powered off (libvirt's ACPI
    /// reboot; the VMM process stays).
    SystemReboot,
    /// End the VM (like pulling the power cord); the VMM process exits.
    Quit,
    /// Per-vCPU thread id, host CPU, CPU time and affinity.
    QueryVcpus,
    /// Pins one vCPU thread to a set of host CPUs.
    SetVcpuAffinity { vcpu: u32, cpus: Vec<u32> },
    /// Where the serial console is (a pty path for `<serial type='pty'>`).
    QueryChardev,
    /// User and system CPU time of the whole VMM process.
    QueryCpuStats,
    /// Every virtio-net interface: TAP name, MAC, link state and counters.
    QueryNet,
    /// Sets the guest-visible link state of the interface with this TAP name or MAC (QMP's `set_link`).
    SetLink { name: String, up: bool },
    /// Sets the balloon so the guest keeps `bytes` of memory (QMP's `balloon`, argument `value`).
    Balloon { bytes: u64 },
    /// The guest's memory as the balloon sees it, and its last statistics.
    QueryBalloon,
    /// Per-disk I/O counters.
    QueryBlockstats,
}

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct ControlError {
    /// `GenericError`, `CommandNotFound`, `InvalidParameter` (QMP's classes).
    pub class: String,
    pub desc: String,
}

impl ControlError {
    pub fn new(class: &str, desc: impl Into<String>) -> Self {
        ControlError {
            class: class.to_string(),
            desc: desc.into(),
        }
    }
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::QueryStatus => "query-status",
            Request::Stop => "stop",
            Request::Cont => "cont",
            Request::SystemPowerdown => "system_powerdown",
            Request::SystemReset => "system_reset",
            Request::SystemReboot => "system_reboot",
            Request::Quit => "quit",
            Request::QueryVcpus => "query-vcpus",
            Request::SetVcpuAffinity { .. } => "set-vcpu-affinity",
            Request::QueryChardev => "query-chardev",
            Request::QueryCpuStats => "query-cpu-stats",
            Request::QueryNet => "query-net",
            Request::SetLink { .. } => "set_link",
            Request::Balloon { .. } => "balloon",
            Request::QueryBalloon => "query-balloon",
            Request::QueryBlockstats => "query-blockstats",
        }
    }

    pub fn encode(&self) -> String {
        let mut v = Value::object().with("execute", self.name());
        if let Request::SetVcpuAffinity { vcpu, cpus } = self {
            let cpus: Vec<Value> = cpus.iter().map(|&c| Value::from(c)).collect();
            v = v.with(
                "arguments",
                Value::object().with("vcpu", *vcpu).with("cpus", cpus),
            );
        }
        if let Request::SetLink { name, up } = self {
            v = v.with(
                "arguments",
                Value::object().with("name", name.as_str()).with("up", *up),
            );
        }
        if let Request::Balloon { bytes } = self {
            v = v.with(
                "arguments",
                Value::object().with("value", i64::try_from(*bytes).unwrap_or(i64::MAX)),
            );
        }
        v.encode()
    }

    pub fn decode(line: &str) -> Result<Request, ControlError> {
        let v = Value::parse(line).map_err(|e| ControlError::new("GenericError", e.to_string()))?;
        let name = v
            .get("execute")
            .and_then(Value::as_str)
            .ok_or_else(|| ControlError::new("GenericError", "missing 'execute'"))?;
        let args = v.get("arguments");
        Ok(match name {
            "query-status" => Request::QueryStatus,
            "stop" => Request::Stop,
            "cont" => Request::Cont,
            "system_powerdown" => Request::SystemPowerdown,
            "system_reset" => Request::SystemReset,
            "system_reboot" => Request::SystemReboot,
            "quit" => Request::Quit,
            "query-vcpus" => Request::QueryVcpus,
            "query-chardev" => Request::QueryChardev,
            "query-cpu-stats" => Request::QueryCpuStats,
            "query-net" => Request::QueryNet,
            "set_link" => {
                let bad = || ControlError::new("InvalidParameter", "expected {name, up}");
                let name = args
                    .and_then(|a| a.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?
                    .to_string();
                let up = args
                    .and_then(|a| a.get("up"))
                    .and_then(Value::as_bool)
                    .ok_or_else(bad)?;
                Request::SetLink { name, up }
            }
            "query-balloon" => Request::QueryBalloon,
            "query-blockstats" => Request::QueryBlockstats,
            "balloon" => {
                let bytes = args
                    .and_then(|a| a.get("value"))
                    .and_then(Value::as_i64)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| {
                        ControlError::new("InvalidParameter", "expected {value: bytes}")
                    })?;
                Request::Balloon { bytes }
            }
            "set-vcpu-affinity" => {
                let bad = || ControlError::new("InvalidParameter", "expected {vcpu, cpus}");
                let vcpu = args
                    .and_then(|a| a.get("vcpu"))
                    .and_then(Value::as_i64)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(bad)?;
                let cpus = args
                    .and_then(|a| a.get("cpus"))
                    .and_then(Value::as_array)
                    .ok_or_else(bad)?
                    .iter()
                    .map(|c| c.as_i64().and_then(|i| u32::try_from(i).ok()))
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(bad)?;
                Request::SetVcpuAffinity { vcpu, cpus }
            }
            other => {
                return Err(ControlError::new(
                    "CommandNotFound",
                    format!("the command {other} has not been found"),
                ))
            }
        })
    }
}

/// Encodes a reply line.
pub fn encode_reply(reply: &Result<Value, ControlError>) -> String {
    match reply {
        Ok(v) => Value::object().with("return", v.clone()).encode(),
        Err(e) => Value::object()
            .with(
                "error",
                Value::object()
                    .with("class", e.class.as_str())
                    .with("desc", e.desc.as_str()),
            )
            .encode(),
    }
}

/// Decodes a reply line.
pub fn decode_reply(line: &str) -> Result<Value, ControlError> {
    let v = Value::parse(line).map_err(|e| ControlError::new("GenericError", e.to_string()))?;
    if let Some(r) = v.get("return") {
        return Ok(r.clone());
    }
    if let Some(e) = v.get("error") {
        return Err(ControlError::new(
            e.get("class")
                .and_then(Value::as_str)
                .unwrap_or("GenericError"),
            e.get("desc")
                .and_then(Value::as_str)
                .unwrap_or("unknown error"),
        ));
    }
    Err(ControlError::new(
        "GenericError",
        "reply has neither 'return' nor 'error'",
    ))
}

/// One vCPU as `query-vcpus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuInfo {
    pub index: u32,
    /// Kernel thread id; `None` while the vCPU has not started.
    pub tid: Option<i32>,
    /// Host CPU the thread last ran on.
    pub cpu: Option<u32>,
    /// CPU time the vCPU thread consumed, in nanoseconds.
    pub time_ns: u64,
    /// Host CPUs the thread may run on.
    pub affinity: Vec<u32>,
}

impl VcpuInfo {
    pub fn to_value(&self) -> Value {
        let mut v = Value::object().with("index", self.index);
        if let Some(tid) = self.tid {
            v = v.with("tid", i64::from(tid));
        }
        if let Some(cpu) = self.cpu {
            v = v.with("cpu", cpu);
        }
        v.with("time_ns", i64::try_from(self.time_ns).unwrap_or(i64::MAX))
            .with(
                "affinity",
                self.affinity
                    .iter()
                    .map(|&c| Value::from(c))
                    .collect::<Vec<_>>(),
            )
    }

    pub fn from_value(v: &Value) -> Option<VcpuInfo> {
        let u32_of = |v: &Value| v.as_i64().and_then(|i| u32::try_from(i).ok());
        Some(VcpuInfo {
            index: v.get("index").and_then(u32_of)?,
            tid: v
                .get("tid")
                .and_then(Value::as_i64)
                .and_then(|i| i32::try_from(i).ok()),
            cpu: v.get("cpu").and_then(u32_of),
            time_ns: v
                .get("time_ns")
                .and_then(Value::as_i64)
                .and_then(|i| u64::try_from(i).ok())
                .unwrap_or(0),
            affinity: v
                .get("affinity")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(u32_of).collect())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::QueryStatus,
            Request::Stop,
            Request::Cont,
            Request::SystemPowerdown,
            Request::SystemReset,
            Request::SystemReboot,
            Request::Quit,
            Request::QueryVcpus,
            Request::QueryChardev,
            Request::QueryCpuStats,
            Request::QueryNet,
            Request::SetLink {
                name: "vnet0".into(),
                up: false,
            },
            Request::SetVcpuAffinity {
                vcpu: 1,
                cpus: vec![0, 3],
            },
        ] {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        assert_eq!(
            Request::decode(r#"{"execute":"frobnicate"}"#)
                .unwrap_err()
                .class,
            "CommandNotFound"
        );
    }

    #[test]
    fn replies_round_trip() {
        let ok = Ok(Value::object().with("status", "running"));
        assert_eq!(decode_reply(&encode_reply(&ok)), ok);
        let err = Err(ControlError::new("GenericError", "nope"));
        assert_eq!(decode_reply(&encode_reply(&err)), err);
    }

    #[test]
    fn vcpu_info_round_trips() {
        let v = VcpuInfo {
            index: 2,
            tid: Some(1234),
            cpu: Some(1),
            time_ns: 5_000_000,
            affinity: vec![0, 1],
        };
        assert_eq!(VcpuInfo::from_value(&v.to_value()), Some(v));
    }
}
