//! Turning benchmark markers into medians, ironvirt/QEMU ratios, and the three outputs: a markdown table, a
//! JSON file and an SVG chart.

use std::fmt::Write as _;

use ironvirt_lab::markers::Markers;

use crate::results::{sample, FioUnit, IoDir, Source};

/// A reported metric: a key for the JSON file, what the table calls it, its unit, whether lower is better,
/// and where its samples come from.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub lower_is_better: bool,
    pub source: Source,
}

const fn marker(key: &'static str, label: &'static str, unit: &'static str) -> Metric {
    Metric {
        key,
        label,
        unit,
        lower_is_better: true,
        source: Source::Marker(key),
    }
}

const fn fio(key: &'static str, label: &'static str, dir: IoDir, unit: FioUnit) -> Metric {
    Metric {
        key,
        label,
        unit: match unit {
            FioUnit::Iops => "IOPS",
            FioUnit::MibPerSec => "MiB/s",
        },
        lower_is_better: false,
        source: Source::Fio {
            job: key,
            dir,
            unit,
        },
    }
}

const fn iperf(key: &'static str, label: &'static str, direction: &'static str) -> Metric {
    Metric {
        key,
        label,
        unit: "Mbit/s",
        lower_is_better: false,
        source: Source::Iperf(direction),
    }
}

/// The fio jobs the guest runs on each disk (`<disk>-<job>`), in the order of the table.
pub const METRICS: &[Metric] = &[
    marker("init-uptime", "boot to /init (guest uptime)", "s"),
    marker("wall", "process start to guest marker (wall)", "s"),
    marker("startup-ms", "VMM start-up: exec to first KVM_RUN", "ms"),
    marker(
        "rss-nonguest-kib",
        "VMM memory overhead (RSS minus guest RAM), idle",
        "KiB",
    ),
    marker("rss-total-kib", "VMM total RSS, idle", "KiB"),
    fio(
        "raw-randread",
        "raw: fio 4 KiB random read",
        IoDir::Read,
        FioUnit::Iops,
    ),
    fio(
        "raw-randwrite",
        "raw: fio 4 KiB random write",
        IoDir::Write,
        FioUnit::Iops,
    ),
    fio(
        "raw-seqread",
        "raw: fio 1 MiB sequential read",
        IoDir::Read,
        FioUnit::MibPerSec,
    ),
    fio(
        "raw-seqwrite",
        "raw: fio 1 MiB sequential write",
        IoDir::Write,
        FioUnit::MibPerSec,
    ),
    fio(
        "qcow2-randread",
        "qcow2: fio 4 KiB random read",
        IoDir::Read,
        FioUnit::Iops,
    ),
    fio(
        "qcow2-randwrite",
        "qcow2: fio 4 KiB random write",
        IoDir::Write,
        FioUnit::Iops,
    ),
    fio(
        "qcow2-seqread",
        "qcow2: fio 1 MiB sequential read",
        IoDir::Read,
        FioUnit::MibPerSec,
    ),
    fio(
        "qcow2-seqwrite",
        "qcow2: fio 1 MiB sequential write",
        IoDir::Write,
        FioUnit::MibPerSec,
    ),
    iperf("iperf-up", "iperf3 guest → host (TCP)", "up"),
    iperf("iperf-down", "iperf3 host → guest (TCP, -R)", "down"),
];

pub const VMMS: [&str; 2] = ["ironvirt", "qemu"];

pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// One metric's samples and medians for both VMMs, and why runs without a sample have none.
pub struct Row<'a> {
    pub metric: &'a Metric,
    pub samples: [Vec<f64>; 2],
    pub medians: [Option<f64>; 2],
    /// (run, reason) per VMM.
    pub missing: [Vec<(u32, String)>; 2],
}

impl Row<'_> {
    /// ironvirt / QEMU.
    pub fn ratio(&self) -> Option<f64> {
        match self.medians {
            [Some(a), Some(b)] if b != 0.0 => Some(a / b),
            _ => None,
        }
    }
}

pub fn rows(markers: &Markers, runs: u32) -> Vec<Row<'static>> {
    METRICS
        .iter()
        .map(|metric| {
            let mut samples = [Vec::new(), Vec::new()];
            let mut missing = [Vec::new(), Vec::new()];
            for (i, vmm) in VMMS.iter().enumerate() {
                for run in 1..=runs {
                    match sample(markers, vmm, run, metric.source) {
                        Ok(v) => samples[i].push(v),
                        Err(why) => missing[i].push((run, why)),
                    }
                }
            }
            let medians = [
                median(&mut samples[0].clone()),
                median(&mut samples[1].clone()),
            ];
            Row {
                metric,
                samples,
                medians,
                missing,
            }
        })
        .collect()
}

fn fmt(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "—".into(),
    }
}

/// A median cell; when some runs gave no sample, says of how many runs it is the median.
fn cell(median: Option<f64>, samples: usize, runs: u32) -> String {
    match median {
        Some(_) if samples < runs as usize => format!("{} ({samples} of {runs})", fmt(median)),
        _ => fmt(median),
    }
}

/// The VMM names as the table shows them.
const VMM_LABELS: [&str; 2] = ["ironvirt-vmm", "QEMU microvm"];

pub fn markdown(rows: &[Row], runs: u32, context: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{context}\n");
    let _ = writeln!(s, "Medians of {runs} alternating runs per VMM.\n");
    let _ = writeln!(
        s,
        "| metric | unit | ironvirt-vmm | QEMU microvm | ironvirt / QEMU |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|");
    for r in rows {
        let ratio = r
            .ratio()
            .map(|x| format!("{x:.2}×"))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.metric.label,
            r.metric.unit,
            cell(r.medians[0], r.samples[0].len(), runs),
            cell(r.medians[1], r.samples[1].len(), runs),
            ratio
        );
    }
    let notes = missing_notes(rows);
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNot measured (no number was made up for these):\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// One line per (metric, VMM, reason), listing the runs it applies to.
fn missing_notes(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in rows {
        for (i, missing) in r.missing.iter().enumerate() {
            let mut reasons: Vec<(&str, Vec<u32>)> = Vec::new();
            for (run, why) in missing {
                match reasons.iter_mut().find(|(w, _)| w == why) {
                    Some((_, runs)) => runs.push(*run),
                    None => reasons.push((why, vec![*run])),
                }
            }
            for (why, runs) in reasons {
                let runs: Vec<String> = runs.iter().map(u32::to_string).collect();
                notes.push(format!(
                    "{}, {} run{} {}: {why}",
                    r.metric.label,
                    VMM_LABELS[i],
                    if runs.len() > 1 { "s" } else { "" },
                    runs.join(", ")
                ));
            }
        }
    }
    notes
}

pub fn json(rows: &[Row], runs: u32, context: &str) -> String {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    let metrics: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let side = |i: usize| {
                serde_json::json!({
                    "median": finite(r.medians[i]),
                    "samples": r.samples[i],
                    "missing": r.missing[i]
                        .iter()
                        .map(|(run, why)| serde_json::json!({"run": run, "reason": why}))
                        .collect::<Vec<_>>(),
                })
            };
            serde_json::json!({
                "key": r.metric.key,
                "label": r.metric.label,
                "unit": r.metric.unit,
                "lower_is_better": r.metric.lower_is_better,
                "ironvirt": side(0),
                "qemu": side(1),
                "ratio": finite(r.ratio()),
            })
        })
        .collect();
    let doc = serde_json::json!({ "context": context, "runs": runs, "metrics": metrics });
    // Serializing a Value built from strings and finite numbers cannot fail; fall back to compact if it did.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string()) + "\n"
}

/// A horizontal bar chart of the ironvirt/QEMU ratio per metric, with the 1.0 line (parity) marked; a metric
/// without a ratio gets a "not measured" line instead of a bar.
pub fn svg(rows: &[Row], title: &str) -> String {
    let bar_h = 22.0;
    let left = 330.0;
    let width = 420.0;
    let max = rows
        .iter()
        .filter_map(Row::ratio)
        .fold(1.5f64, f64::max)
        .min(10.0);
    let height = 50.0 + bar_h * rows.len() as f64;
    let scale = |x: f64| left + width * (x.min(max) / max);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{height}' font-family='sans-serif' font-size='12'>\n",
        left + width + 70.0
    );
    let _ = writeln!(
        s,
        "<text x='10' y='18' font-weight='bold'>{}</text>",
        xml_escape(title)
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 30.0 + bar_h * i as f64;
        let _ = writeln!(
            s,
            "<text x='10' y='{}'>{}</text>",
            y + 15.0,
            xml_escape(r.metric.label)
        );
        let Some(x) = r.ratio() else {
            let _ = writeln!(
                s,
                "<text x='{}' y='{}' fill='gray'>not measured (see results.md)</text>",
                left + 4.0,
                y + 15.0
            );
            continue;
        };
        let better = if r.metric.lower_is_better {
            x <= 1.0
        } else {
            x >= 1.0
        };
        let color = if better { "#2e8b57" } else { "#cd5c5c" };
        let _ = writeln!(
            s,
            "<rect x='{left}' y='{}' width='{:.1}' height='{}' fill='{color}'/>",
            y + 3.0,
            scale(x) - left,
            bar_h - 6.0
        );
        let _ = writeln!(
            s,
            "<text x='{:.1}' y='{}'>{x:.2}×</text>",
            scale(x) + 4.0,
            y + 15.0
        );
    }
    let one = scale(1.0);
    let _ = writeln!(s, "<line x1='{one:.1}' y1='26' x2='{one:.1}' y2='{height}' stroke='black' stroke-dasharray='4 3'/>");
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_ratios_and_outputs() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        let m = Markers::parse(
            "IRONVIRT-LAB: ironvirt.1.init-uptime 2.0\nIRONVIRT-LAB: qemu.1.init-uptime 8.0\n\
             IRONVIRT-LAB: ironvirt.2.init-uptime 3.0\nIRONVIRT-LAB: qemu.2.init-uptime 9.0\n",
        );
        let rows = rows(&m, 2);
        let boot = &rows[0];
        assert_eq!(boot.medians, [Some(2.5), Some(8.5)]);
        assert!((boot.ratio().unwrap() - 2.5 / 8.5).abs() < 1e-9);
        let md = markdown(&rows, 2, "test");
        assert!(
            md.contains("| boot to /init (guest uptime) | s | 2.50 | 8.50 | 0.29× |"),
            "{md}"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&rows, 2, "t")).unwrap();
        assert_eq!(j["metrics"][0]["ratio"], 0.29411764705882354);
        assert_eq!(j["metrics"][0]["qemu"]["samples"][1], 9.0);
        // Nothing else was measured: every other metric is missing, with the reason, in all three outputs.
        assert_eq!(
            j["metrics"][1]["ironvirt"]["median"],
            serde_json::Value::Null
        );
        assert!(j["metrics"][1]["ironvirt"]["missing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("never finished"));
        assert!(
            md.contains("| iperf3 guest → host (TCP) | Mbit/s | — | — | — |"),
            "{md}"
        );
        assert!(md.contains("- VMM start-up: exec to first KVM_RUN, QEMU microvm runs 1, 2: the payload never finished"), "{md}");
        let chart = svg(&rows, "a < b");
        assert!(chart.starts_with("<svg") && chart.contains("a &lt; b"));
        assert_eq!(chart.matches("not measured").count(), METRICS.len() - 1);
    }
}
