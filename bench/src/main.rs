//! `ironvirt-bench vm`: boots the same Debian kernel and initramfs under ironvirt-vmm and QEMU microvm (same
//! vCPUs, memory and disks), alternating, N times each, and reports boot time, VMM start-up, VMM memory
//! overhead and in-guest disk I/O as a markdown table, a JSON file and an SVG chart.
//!
//! On a machine whose KVM cannot run a stock kernel (like the project's CI machines) everything runs inside
//! the lab; absolute figures are then TCG times and only the ratios mean something.

mod payload;
mod report;
mod tiny;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use ironvirt_devices::block::{qcow2, ImageFormat};
use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::run::Echo;
use ironvirt_lab::Lab;

const USAGE: &str = "usage: ironvirt-bench vm [--runs N] [--io-seconds S] [--out DIR] [--vmm PATH] [--echo]

Boots the same kernel and initramfs under ironvirt-vmm and QEMU microvm, N >= 3 times each, alternating,
and writes DIR/results.md, DIR/results.json and DIR/ratios.svg (default DIR: target/bench).";

struct Options {
    runs: u32,
    io_seconds: u32,
    out: PathBuf,
    vmm: Option<PathBuf>,
    echo: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        io_seconds: 5,
        out: workspace_root().join("target/bench"),
        vmm: None,
        echo: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .map_err(|_| "--runs takes a number")?
            }
            "--io-seconds" => {
                o.io_seconds = value("--io-seconds")?
                    .parse()
                    .map_err(|_| "--io-seconds takes a number")?
            }
            "--out" => o.out = PathBuf::from(value("--out")?),
            "--vmm" => o.vmm = Some(PathBuf::from(value("--vmm")?)),
            "--echo" => o.echo = true,
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    if o.runs < 3 {
        return Err("--runs must be at least 3: medians of fewer runs say little with ±25% run-to-run spread".into());
    }
    Ok(o)
}

fn cargo(args: &[&str], rustflags: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(workspace_root());
    if let Some(flags) = rustflags {
        cmd.env("RUSTFLAGS", flags);
    }
    let st = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("cargo {} failed", args.join(" ")))
}

/// The static guest tool and the VMM under test, built in release mode.
fn build_binaries(o: &Options) -> Result<(PathBuf, PathBuf), String> {
    const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
    // A separate --target keeps the static-linking flag off the host build scripts.
    cargo(
        &[
            "build",
            "--release",
            "-q",
            "-p",
            "ironvirt-bench",
            "--bin",
            "guest-io",
            "--target",
            GUEST_TARGET,
        ],
        Some("-C target-feature=+crt-static"),
    )?;
    let guest_io = workspace_root()
        .join("target")
        .join(GUEST_TARGET)
        .join("release/guest-io");
    let vmm = match &o.vmm {
        Some(v) => v.clone(),
        None => build_release_vmm()?,
    };
    Ok((guest_io, vmm))
}

/// ironvirt-vmm as users run it: a release build.
fn build_release_vmm() -> Result<PathBuf, String> {
    cargo(
        &[
            "build",
            "--release",
            "-q",
            "-p",
            "ironvirt",
            "--bin",
            "ironvirt-vmm",
        ],
        None,
    )?;
    Ok(workspace_root().join("target/release/ironvirt-vmm"))
}

fn run(o: &Options) -> Result<(), String> {
    if ironvirt_lab::demo::host_kvm_runs_linux() {
        return Err("this host has hardware KVM; running the benchmark directly on it is not implemented yet \
                    (only the lab path is): run it on a machine without vmx/svm, or add the direct path"
            .into());
    }
    println!("ironvirt-bench: this machine's /dev/kvm cannot run a stock kernel; benchmarking inside the lab");
    let (guest_io, vmm) = build_binaries(o)?;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let empty_qcow2 = o.out.join("empty.qcow2");
    let _ = std::fs::remove_file(&empty_qcow2);
    qcow2::create(
        &empty_qcow2,
        &qcow2::CreateOptions {
            size: 256 << 20,
            ..Default::default()
        },
    )
    .map_err(|e| format!("creating the qcow2 test image: {e}"))?;
    let _ = ImageFormat::Qcow2;

    let lab = Lab::prepare().map_err(|e| e.to_string())?;
    let mut l2 = L2Initramfs::with_prelude(&payload::guest_init(o.io_seconds));
    l2.binaries.push((guest_io, "/bin/guest-io".into()));
    let l2 = lab.build_l2("bench", &l2).map_err(|e| e.to_string())?;
    let mut l1 = L1Initramfs::new(payload::payload(o.runs));
    l1.binaries.push((vmm, "/bin/ironvirt-vmm".into()));
    l1.binaries
        .push(("/usr/bin/strace".into(), "/bin/strace".into()));
    l1.include_qemu = true;
    l1.l2_initramfs = Some(l2);
    l1.extra_files = vec![
        ExtraFile::text(
            "/lab/bench.xml",
            0o644,
            payload::domain_xml(l1_paths::VMLINUX, l1_paths::L2_INITRD),
        ),
        ExtraFile::host("/lab/empty.qcow2", 0o644, &empty_qcow2),
    ];
    // Under nested emulation one round (two start-up probes, two boots with six I/O tests each) took up to
    // ~3 minutes on a busy 2-core machine; allow twice that.
    let per_run = 2 * (90 + 2 * 6 * u64::from(o.io_seconds) + 60);
    let result = lab
        .run("bench", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(180 + per_run * u64::from(o.runs));
            cfg.echo = if o.echo { Echo::All } else { Echo::None };
            // A retry would double an already long run and mix two L1 boots' figures.
            cfg.retries = 0;
        })
        .map_err(|e| e.to_string())?;
    if let Some(reason) = &result.dead {
        return Err(format!(
            "the lab died: {reason}; log {}",
            result.log.display()
        ));
    }
    if !result.markers.contains("bench-done") {
        return Err(format!(
            "the benchmark did not finish; log {}",
            result.log.display()
        ));
    }
    let rows = report::rows(&result.markers, o.runs);
    let context = format!(
        "ironvirt-vmm vs QEMU microvm in the lab (QEMU-TCG L1 with emulated AMD-V; L2: Debian cloud kernel {}, \
         vmlinux via PVH, 2 vCPUs, 256 MiB, virtio-blk raw + qcow2 on L1 tmpfs, cache=writeback). \
         Absolute times are TCG times: compare ratios.",
        lab.artifacts.kernel.release
    );
    let md = report::markdown(&rows, o.runs, &context);
    let write = |name: &str, text: &str| {
        let p = o.out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("results.md", &md)?;
    write("results.json", &report::json(&rows, o.runs, &context))?;
    write("ratios.svg", &report::svg(&rows))?;
    println!("{md}");
    println!(
        "ironvirt-bench: wrote {}/results.md, results.json and ratios.svg; lab log {}",
        o.out.display(),
        result.log.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("vm") => parse(&args[1..]).and_then(|o| run(&o)),
        Some("tiny") => tiny::run(&args[1..], build_release_vmm),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}\n\n{}", tiny::USAGE);
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironvirt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
