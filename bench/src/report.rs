//! Turning benchmark markers into medians, ironvirt/QEMU ratios, and the three outputs: a markdown table, a
//! JSON file and an SVG chart.

use std::fmt::Write as _;

use ironvirt_lab::markers::Markers;

/// A reported metric: its marker suffix, what the table calls it, its unit, and whether lower is better.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub lower_is_better: bool,
}

pub const METRICS: &[Metric] = &[
    Metric {
        key: "init-uptime",
        label: "boot to /init (guest uptime)",
        unit: "s",
        lower_is_better: true,
    },
    Metric {
        key: "wall",
        label: "process start to guest marker (L1 wall)",
        unit: "s",
        lower_is_better: true,
    },
    Metric {
        key: "startup-ms",
        label: "VMM start-up: exec to first KVM_RUN",
        unit: "ms",
        lower_is_better: true,
    },
    Metric {
        key: "rss-nonguest-kib",
        label: "VMM memory overhead (RSS minus guest RAM), idle",
        unit: "KiB",
        lower_is_better: true,
    },
    Metric {
        key: "rss-total-kib",
        label: "VMM total RSS, idle",
        unit: "KiB",
        lower_is_better: true,
    },
    Metric {
        key: "vda-randread",
        label: "raw: 4 KiB random read",
        unit: "IOPS",
        lower_is_better: false,
    },
    Metric {
        key: "vda-randwrite",
        label: "raw: 4 KiB random write",
        unit: "IOPS",
        lower_is_better: false,
    },
    Metric {
        key: "vda-seqread",
        label: "raw: 1 MiB sequential read",
        unit: "MiB/s",
        lower_is_better: false,
    },
    Metric {
        key: "vdb-randread",
        label: "qcow2: 4 KiB random read",
        unit: "IOPS",
        lower_is_better: false,
    },
    Metric {
        key: "vdb-randwrite",
        label: "qcow2: 4 KiB random write",
        unit: "IOPS",
        lower_is_better: false,
    },
    Metric {
        key: "vdb-seqread",
        label: "qcow2: 1 MiB sequential read",
        unit: "MiB/s",
        lower_is_better: false,
    },
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

/// One metric's samples and medians for both VMMs.
pub struct Row<'a> {
    pub metric: &'a Metric,
    pub samples: [Vec<f64>; 2],
    pub medians: [Option<f64>; 2],
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
            let samples = VMMS.map(|vmm| {
                (1..=runs)
                    .filter_map(|r| markers.number(&format!("{vmm}.{r}.{}", metric.key)))
                    .collect::<Vec<f64>>()
            });
            let medians = [
                median(&mut samples[0].clone()),
                median(&mut samples[1].clone()),
            ];
            Row {
                metric,
                samples,
                medians,
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
            fmt(r.medians[0]),
            fmt(r.medians[1]),
            ratio
        );
    }
    s
}

fn json_num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x}"))
        .unwrap_or_else(|| "null".into())
}

pub fn json(rows: &[Row], runs: u32, context: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\n  \"context\": {:?},\n  \"runs\": {runs},\n  \"metrics\": [\n",
        context
    );
    for (i, r) in rows.iter().enumerate() {
        let samples = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "    {{\"key\": {:?}, \"label\": {:?}, \"unit\": {:?}, \"lower_is_better\": {}, \
             \"ironvirt\": {{\"median\": {}, \"samples\": [{}]}}, \"qemu\": {{\"median\": {}, \"samples\": [{}]}}, \
             \"ratio\": {}}}{}",
            r.metric.key,
            r.metric.label,
            r.metric.unit,
            r.metric.lower_is_better,
            json_num(r.medians[0]),
            samples(&r.samples[0]),
            json_num(r.medians[1]),
            samples(&r.samples[1]),
            json_num(r.ratio()),
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    s.push_str("  ]\n}\n");
    s
}

/// A horizontal bar chart of the ironvirt/QEMU ratio per metric, with the 1.0 line (parity) marked.
pub fn svg(rows: &[Row]) -> String {
    let bar_h = 22.0;
    let left = 330.0;
    let width = 420.0;
    let rows_with: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|r| r.ratio().map(|x| (r, x)))
        .collect();
    let max = rows_with
        .iter()
        .map(|(_, x)| *x)
        .fold(1.5f64, f64::max)
        .min(10.0);
    let height = 50.0 + bar_h * rows_with.len() as f64;
    let scale = |x: f64| left + width * (x.min(max) / max);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{height}' font-family='sans-serif' font-size='12'>\n",
        left + width + 70.0
    );
    let _ = writeln!(
        s,
        "<text x='10' y='18' font-weight='bold'>ironvirt-vmm / QEMU microvm (medians)</text>"
    );
    for (i, (r, x)) in rows_with.iter().enumerate() {
        let y = 30.0 + bar_h * i as f64;
        let better = if r.metric.lower_is_better {
            *x <= 1.0
        } else {
            *x >= 1.0
        };
        let color = if better { "#2e8b57" } else { "#cd5c5c" };
        let _ = writeln!(s, "<text x='10' y='{}'>{}</text>", y + 15.0, r.metric.label);
        let _ = writeln!(
            s,
            "<rect x='{left}' y='{}' width='{:.1}' height='{}' fill='{color}'/>",
            y + 3.0,
            scale(*x) - left,
            bar_h - 6.0
        );
        let _ = writeln!(
            s,
            "<text x='{:.1}' y='{}'>{x:.2}×</text>",
            scale(*x) + 4.0,
            y + 15.0
        );
    }
    let one = scale(1.0);
    let _ = writeln!(s, "<line x1='{one:.1}' y1='26' x2='{one:.1}' y2='{height}' stroke='black' stroke-dasharray='4 3'/>");
    s.push_str("</svg>\n");
    s
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
        assert!(json(&rows, 2, "t").contains("\"ratio\": 0.29411764705882354"));
        assert!(svg(&rows).starts_with("<svg"));
    }
}
