//! `ironvirt-bench vm`: boots the same Debian kernel and initramfs under ironvirt-vmm and QEMU microvm (same
//! vCPUs, memory, disks and network), alternating, N times each, and reports boot time, VMM start-up, VMM
//! memory overhead, fio in the guest and iperf3 between guest and host as a markdown table, a JSON file and an
//! SVG chart.
//!
//! On a host with hardware KVM the VMs run directly on it; on a machine whose KVM cannot run a stock kernel
//! (like the project's CI machines) everything runs inside the lab, where absolute figures are TCG times and
//! only the ratios mean something (`--where`, [`runner`]).

mod payload;
mod report;
mod results;
mod runner;
mod tiny;
mod tools_disk;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use ironvirt_devices::block::qcow2;
use ironvirt_lab::initramfs::L2Initramfs;
use ironvirt_lab::Lab;

use runner::{Inputs, Runner, Where};

const USAGE: &str = "usage: ironvirt-bench vm [--runs N] [--io-seconds S] [--out DIR] [--where lab|host|auto] [--vmm PATH] [--echo]

Boots the same kernel and initramfs under ironvirt-vmm and QEMU microvm, N >= 3 times each, alternating,
and writes DIR/results.md, DIR/results.json and DIR/ratios.svg (default DIR: target/bench).
--where: host runs the VMs directly on this machine's hardware KVM, lab inside the lab (QEMU TCG with
emulated AMD-V); auto (the default) picks host when /dev/kvm can run a stock kernel (vmx/svm).";

struct Options {
    runs: u32,
    io_seconds: u32,
    out: PathBuf,
    place: Where,
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
        place: Where::Auto,
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
            "--where" => o.place = value("--where")?.parse()?,
            "--vmm" => o.vmm = Some(PathBuf::from(value("--vmm")?)),
            "--echo" => o.echo = true,
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    if o.runs < 3 {
        return Err("--runs must be at least 3: medians of fewer runs say little with ±25% run-to-run spread".into());
    }
    if o.io_seconds == 0 {
        return Err("--io-seconds must be at least 1".into());
    }
    Ok(o)
}

/// The VMM under test: `--vmm`, or ironvirt-vmm as it is deployed (the static release build).
fn build_vmm(o: &Options) -> Result<PathBuf, String> {
    match &o.vmm {
        Some(v) => Ok(v.clone()),
        None => build_release_vmm(),
    }
}

/// The static release build of `scripts/build-vmm.sh`, which prints the binary's path.
fn build_release_vmm() -> Result<PathBuf, String> {
    let script = workspace_root().join("scripts/build-vmm.sh");
    let out = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Everything both runners start from: the VMM, the tools disk, an empty qcow2, the guest initramfs.
fn prepare(o: &Options, runner: &Runner) -> Result<Inputs, String> {
    let vmm = build_vmm(o)?;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let out = o
        .out
        .canonicalize()
        .map_err(|e| format!("{}: {e}", o.out.display()))?;
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let qcow2_path = work.join("empty.qcow2");
    let _ = std::fs::remove_file(&qcow2_path);
    qcow2::create(
        &qcow2_path,
        &qcow2::CreateOptions {
            size: 256 << 20,
            ..Default::default()
        },
    )
    .map_err(|e| format!("creating the qcow2 test image: {e}"))?;
    let tools_image = work.join("tools.ext4");
    tools_disk::build(&tools_image, &work.join("tools.d"))?;
    let lab = Lab::prepare().map_err(|e| e.to_string())?;
    let l2 = L2Initramfs::with_prelude(&payload::guest_init(o.io_seconds));
    let l2_initrd = lab
        .build_l2(&format!("bench-{}", runner.name()), &l2)
        .map_err(|e| e.to_string())?;
    Ok(Inputs {
        lab,
        vmm,
        l2_initrd,
        tools_image,
        qcow2: qcow2_path,
        payload: payload::payload(o.runs, o.io_seconds),
        runs: o.runs,
        io_seconds: o.io_seconds,
        work,
        echo: o.echo,
    })
}

fn run(o: &Options) -> Result<(), String> {
    let runner = Runner::choose(o.place, ironvirt_lab::demo::host_kvm_runs_linux())?;
    let inputs = prepare(o, &runner)?;
    let outcome = runner.run(&inputs)?;
    if !outcome.markers.contains("bench-done") {
        return Err(format!(
            "the benchmark did not finish; log {}",
            outcome.log.display()
        ));
    }
    for e in outcome.markers.all("bench-error") {
        eprintln!("ironvirt-bench: the payload reported: {e}");
    }
    let rows = report::rows(&outcome.markers, o.runs);
    let context = runner.context(&inputs.lab.artifacts.kernel.release);
    let md = report::markdown(&rows, o.runs, &context);
    let write = |name: &str, text: &str| {
        let p = o.out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("results.md", &md)?;
    write("results.json", &report::json(&rows, o.runs, &context))?;
    let title = format!(
        "ironvirt-vmm / QEMU microvm (medians, {} runs, {})",
        o.runs,
        runner.name()
    );
    write("ratios.svg", &report::svg(&rows, &title))?;
    println!("{md}");
    println!(
        "ironvirt-bench: wrote {}/results.md, results.json and ratios.svg; log {}",
        o.out.display(),
        outcome.log.display()
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
