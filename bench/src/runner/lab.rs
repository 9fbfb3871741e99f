//! The lab runner: L1 (QEMU TCG, emulated AMD-V) gets the VMM, QEMU, strace, iperf3 (the server side), the
//! guest kernel and initramfs, the empty qcow2 image, and the tools disk as its own virtio disk `/dev/vda`
//! (so L1 does not unpack it from its initramfs), and runs the payload.

use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs};
use ironvirt_lab::run::Echo;
use ironvirt_lab::tools;

use super::{Inputs, Outcome};
use crate::payload::{self, PayloadEnv, ToolsDisk};

/// The payload's view of L1.
pub fn env() -> PayloadEnv {
    PayloadEnv {
        vmm: "/bin/ironvirt-vmm".into(),
        qemu: l1_paths::QEMU.into(),
        qemu_data: l1_paths::QEMU_DATA.into(),
        qemu_bios: l1_paths::QEMU_BIOS.into(),
        strace: "/bin/strace".into(),
        iperf3: "/usr/bin/iperf3".into(),
        vmlinux: l1_paths::VMLINUX.into(),
        initrd: l1_paths::L2_INITRD.into(),
        xml: "/lab/bench.xml".into(),
        // L1's /tmp is tmpfs: the disks live in RAM, as the lab always had them.
        work: "/tmp/bench".into(),
        lab_d: "/tmp/lab".into(),
        // The first (and only) disk L0's QEMU gives L1.
        tools: "/dev/vda".into(),
        qcow2: "/lab/empty.qcow2".into(),
    }
}

/// How long L1 may take: its boot, then per round two start-up probes and two benchmark boots.
fn timeout(runs: u32, io_seconds: u32) -> Duration {
    let boot = 120 + payload::guest_timeout_secs(io_seconds) / 2 + 60;
    Duration::from_secs(240 + u64::from(runs) * 2 * (30 + boot))
}

pub fn run(inputs: &Inputs) -> Result<Outcome, String> {
    println!(
        "ironvirt-bench: this machine's /dev/kvm cannot run a stock kernel; benchmarking inside the lab \
         (QEMU TCG with emulated AMD-V)"
    );
    let env = env();
    env.check()?;
    let strace = tools::which("strace", "strace").map_err(|e| e.to_string())?;
    let iperf3 = tools::which("iperf3", "iperf3").map_err(|e| e.to_string())?;
    let mut l1 = L1Initramfs::new(format!("{}{}", env.exports(), inputs.payload));
    l1.binaries = vec![
        (inputs.vmm.clone(), env.vmm.clone()),
        (strace, env.strace.clone()),
        (iperf3, env.iperf3.clone()),
    ];
    l1.include_qemu = true;
    // tun for the tap; the storage modules for the tools disk.
    l1.network_modules = true;
    l1.storage_modules = true;
    l1.l2_initramfs = Some(inputs.l2_initrd.clone());
    l1.extra_files = vec![
        ExtraFile::text(&env.xml, 0o644, payload::domain_xml(&env, ToolsDisk::Block)),
        ExtraFile::host(&env.qcow2, 0o644, &inputs.qcow2),
    ];
    let result = inputs
        .lab
        .run("bench", &l1, |cfg| {
            cfg.timeout = timeout(inputs.runs, inputs.io_seconds);
            cfg.echo = if inputs.echo { Echo::All } else { Echo::None };
            // L1 sometimes dies under nested load (LAB.md), and here mostly while QEMU's guest runs fio: L1's
            // kernel overflows its stack in QEMU's vCPU thread (__svm_vcpu_run). A retry starts the whole
            // benchmark again in a fresh L1 and only the last attempt's figures are used, so nothing mixes.
            cfg.retries = 2;
            cfg.drives = vec![inputs.tools_image.clone()];
        })
        .map_err(|e| e.to_string())?;
    if let Some(reason) = &result.dead {
        return Err(format!(
            "the lab died: {reason}; log {}",
            result.log.display()
        ));
    }
    for why in &result.retried {
        eprintln!("ironvirt-bench: the lab was restarted from scratch ({why}); figures are from the last attempt");
    }
    Ok(Outcome {
        markers: result.markers,
        log: result.log,
    })
}
