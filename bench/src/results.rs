//! Turning the payload's markers into one number per (VMM, run, metric), or the reason there is none.
//!
//! Plain markers carry a number (`ironvirt.2.wall 6.15`). fio and iperf3 results travel as their own JSON
//! output squeezed onto one console line (`ironvirt.2.fio.raw-randread {...}`, `qemu.1.iperf.up {...}`),
//! or as `error: <why>` when the guest could not run the tool; the JSON is parsed here, on the host.

use ironvirt_lab::markers::Markers;
use serde_json::Value;

/// Where a metric's value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// A numeric marker `<vmm>.<run>.<key>` written by the payload.
    Marker(&'static str),
    /// One fio job's JSON (`<vmm>.<run>.fio.<job>`): its IOPS or throughput in MiB/s.
    Fio {
        job: &'static str,
        dir: IoDir,
        unit: FioUnit,
    },
    /// One iperf3 client's JSON (`<vmm>.<run>.iperf.<direction>`): the receiver's Mbit/s.
    Iperf(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDir {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FioUnit {
    Iops,
    MibPerSec,
}

/// The value of `source` for `vmm`'s run `run`, or why it is missing.
pub fn sample(markers: &Markers, vmm: &str, run: u32, source: Source) -> Result<f64, String> {
    let key = match source {
        Source::Marker(k) => format!("{vmm}.{run}.{k}"),
        Source::Fio { job, .. } => format!("{vmm}.{run}.fio.{job}"),
        Source::Iperf(dir) => format!("{vmm}.{run}.iperf.{dir}"),
    };
    let Some(raw) = markers.get(&key) else {
        return Err(absent_reason(markers, vmm, run));
    };
    match source {
        Source::Marker(_) => raw
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("not a number: '{raw}'")),
        Source::Fio { dir, unit, .. } => fio_value(raw, dir, unit),
        Source::Iperf(_) => iperf_mbits(raw),
    }
}

/// Why a run has no marker at all for a metric: the most useful thing the other markers tell.
fn absent_reason(markers: &Markers, vmm: &str, run: u32) -> String {
    if !markers.contains(&format!("{vmm}.{run}.exit")) {
        return "the payload never finished this run (see the log)".into();
    }
    if !markers.contains(&format!("{vmm}.{run}.init-uptime")) {
        return "the guest never reached /init (see the log)".into();
    }
    if let Some(why) = markers.get(&format!("{vmm}.{run}.stopped")) {
        return why.to_string();
    }
    "the guest or the payload reported nothing for it (see the log)".into()
}

/// Parses a tool's one-line result: JSON, or `error: <why>` from the guest script.
fn json_of(raw: &str, tool: &str) -> Result<Value, String> {
    let raw = raw.trim();
    if let Some(why) = raw.strip_prefix("error:") {
        return Err(why.trim().to_string());
    }
    // Anything a tool printed before its JSON (a warning on stdout) is skipped.
    let start = raw
        .find('{')
        .ok_or_else(|| format!("{tool} printed no JSON: '{}'", clip(raw)))?;
    serde_json::from_str(&raw[start..])
        .map_err(|e| format!("{tool}'s JSON does not parse ({e}): '{}'", clip(raw)))
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// IOPS or MiB/s of the first job of fio's `--output-format=json` output.
pub fn fio_value(raw: &str, dir: IoDir, unit: FioUnit) -> Result<f64, String> {
    let v = json_of(raw, "fio")?;
    let job = v
        .get("jobs")
        .and_then(|j| j.get(0))
        .ok_or("fio's JSON has no jobs")?;
    let error = job.get("error").and_then(Value::as_i64).unwrap_or(0);
    if error != 0 {
        return Err(format!("fio job failed with error {error}"));
    }
    let side = job
        .get(match dir {
            IoDir::Read => "read",
            IoDir::Write => "write",
        })
        .ok_or("fio's job has no read/write section")?;
    let number = |field: &str| {
        side.get(field)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("fio's JSON has no {field}"))
    };
    if number("io_bytes")? <= 0.0 {
        return Err("fio did no I/O in that direction".into());
    }
    Ok(match unit {
        FioUnit::Iops => number("iops")?,
        FioUnit::MibPerSec => number("bw_bytes")? / (1024.0 * 1024.0),
    })
}

/// Mbit/s at the receiving end of iperf3's `--json` output (TCP: `end.sum_received`).
pub fn iperf_mbits(raw: &str) -> Result<f64, String> {
    let v = json_of(raw, "iperf3")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {e}"));
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(Value::as_f64)
        .map(|b| b / 1e6)
        .ok_or_else(|| "iperf3's JSON has no end.sum_received.bits_per_second".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of fio 3.33's JSON (Debian 12), cut down to what is read, on one line as the guest sends it.
    const FIO: &str = r#"{"fio version" : "fio-3.33","jobs" : [{"jobname" : "raw-randread","error" : 0,"read" : {"io_bytes" : 138530816,"bw_bytes" : 138392423,"iops" : 33787.212787},"write" : {"io_bytes" : 0,"bw_bytes" : 0,"iops" : 0.0}}]}"#;

    #[test]
    fn reads_fio_iops_and_throughput() {
        let iops = fio_value(FIO, IoDir::Read, FioUnit::Iops).unwrap();
        assert!((iops - 33787.212787).abs() < 1e-6);
        let mib = fio_value(FIO, IoDir::Read, FioUnit::MibPerSec).unwrap();
        assert!((mib - 138392423.0 / 1048576.0).abs() < 1e-9);
        assert_eq!(
            fio_value(FIO, IoDir::Write, FioUnit::Iops).unwrap_err(),
            "fio did no I/O in that direction"
        );
        let failed = FIO.replace("\"error\" : 0", "\"error\" : 5");
        assert!(fio_value(&failed, IoDir::Read, FioUnit::Iops)
            .unwrap_err()
            .contains("error 5"));
        assert_eq!(
            fio_value("error: fio: no such file", IoDir::Read, FioUnit::Iops).unwrap_err(),
            "fio: no such file"
        );
        assert!(fio_value("{\"jobs\": [", IoDir::Read, FioUnit::Iops)
            .unwrap_err()
            .contains("does not parse"));
    }

    #[test]
    fn reads_iperf3_receiver_rate() {
        let ok = r#"{"start": {}, "intervals": [], "end": {"sum_sent": {"bits_per_second": 9.5e8}, "sum_received": {"bits_per_second": 9.4e8}}}"#;
        assert!((iperf_mbits(ok).unwrap() - 940.0).abs() < 1e-9);
        let refused = r#"{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server: Connection refused"}"#;
        assert_eq!(
            iperf_mbits(refused).unwrap_err(),
            "iperf3: unable to connect to server: Connection refused"
        );
    }

    #[test]
    fn explains_missing_samples() {
        let m = Markers::parse(
            "IRONVIRT-LAB: qemu.1.wall 7.5\nIRONVIRT-LAB: qemu.1.exit 0\nIRONVIRT-LAB: qemu.1.init-uptime 3\n\
             IRONVIRT-LAB: qemu.1.fio.raw-randread error: fio: boom\nIRONVIRT-LAB: ironvirt.1.exit 1\n\
             IRONVIRT-LAB: qemu.3.init-uptime 3\nIRONVIRT-LAB: qemu.3.stopped the VM ended early\n\
             IRONVIRT-LAB: qemu.3.exit 0\n",
        );
        assert_eq!(sample(&m, "qemu", 1, Source::Marker("wall")), Ok(7.5));
        let fio = Source::Fio {
            job: "raw-randread",
            dir: IoDir::Read,
            unit: FioUnit::Iops,
        };
        assert_eq!(sample(&m, "qemu", 1, fio), Err("fio: boom".into()));
        assert!(sample(&m, "qemu", 1, Source::Iperf("up"))
            .unwrap_err()
            .contains("reported nothing"));
        assert!(sample(&m, "ironvirt", 1, Source::Marker("wall"))
            .unwrap_err()
            .contains("never reached /init"));
        assert_eq!(
            sample(&m, "qemu", 3, Source::Iperf("up")),
            Err("the VM ended early".into())
        );
        assert!(sample(&m, "qemu", 2, Source::Marker("wall"))
            .unwrap_err()
            .contains("never finished"));
    }
}
