//! Where the benchmark's VMs run: in the lab (L1 under QEMU TCG with emulated AMD-V, on machines whose
//! `/dev/kvm` cannot boot a stock kernel) or directly on a host with hardware KVM. Both run the same payload
//! script on the same kernel, initramfs and tools disk, and hand back its markers; everything after that
//! (parsing, medians, reports) is shared.

mod host;
mod lab;

use std::path::PathBuf;

use ironvirt_lab::markers::Markers;
use ironvirt_lab::Lab;

pub use host::HostRunner;

/// `--where`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Lab,
    Host,
    Auto,
}

impl std::str::FromStr for Where {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lab" => Ok(Where::Lab),
            "host" => Ok(Where::Host),
            "auto" => Ok(Where::Auto),
            other => Err(format!("--where takes lab, host or auto, not '{other}'")),
        }
    }
}

/// What both runners start from, prepared on this machine.
pub struct Inputs {
    pub lab: Lab,
    /// The ironvirt-vmm binary under test.
    pub vmm: PathBuf,
    /// The guest initramfs (the lab's L2 initramfs with the benchmark's `/init`).
    pub l2_initrd: PathBuf,
    /// The read-only ext4 disk with fio and iperf3 ([`crate::tools_disk`]).
    pub tools_image: PathBuf,
    /// An empty qcow2 image, copied before every boot.
    pub qcow2: PathBuf,
    /// The payload body ([`crate::payload::payload`]).
    pub payload: String,
    pub runs: u32,
    pub io_seconds: u32,
    /// `DIR/work`: scratch space of this run.
    pub work: PathBuf,
    pub echo: bool,
}

/// The payload's markers and where its full transcript is.
pub struct Outcome {
    pub markers: Markers,
    pub log: PathBuf,
}

pub enum Runner {
    Lab,
    Host(HostRunner),
}

impl Runner {
    /// Picks the runner for `--where`; `hardware_kvm` says whether this host's `/dev/kvm` can run a stock
    /// kernel (vmx/svm and an openable `/dev/kvm`).
    pub fn choose(place: Where, hardware_kvm: bool) -> Result<Runner, String> {
        match (place, hardware_kvm) {
            (Where::Lab, _) | (Where::Auto, false) => Ok(Runner::Lab),
            (Where::Host, true) | (Where::Auto, true) => Ok(Runner::Host(HostRunner::new())),
            (Where::Host, false) => Err(
                "--where host needs hardware KVM: this machine's CPU shows no vmx/svm flag in /proc/cpuinfo or \
                 /dev/kvm does not open (load kvm_intel/kvm_amd, check permissions), so a stock kernel cannot \
                 boot on it; use --where lab (or auto)"
                    .into(),
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Runner::Lab => "lab",
            Runner::Host(_) => "host",
        }
    }

    /// One sentence on where the figures come from, for the report.
    pub fn context(&self, kernel_release: &str) -> String {
        let machine = format!(
            "L2 guest: Debian cloud kernel {kernel_release}, vmlinux via PVH, {} vCPUs, {} MiB, virtio-blk raw + \
             qcow2 (cache=writeback) + a read-only tools disk, virtio-net on a tap (QEMU vhost=off); fio \
             (libaio, O_DIRECT, iodepth 4) and iperf3 in the guest",
            crate::payload::GUEST_CPUS,
            crate::payload::GUEST_MIB
        );
        match self {
            Runner::Lab => format!(
                "ironvirt-vmm vs QEMU microvm in the lab (QEMU-TCG L1 with emulated AMD-V; disks on L1's tmpfs). \
                 {machine}. Absolute times are TCG times: compare ratios."
            ),
            Runner::Host(_) => format!(
                "ironvirt-vmm vs QEMU microvm directly on this host's hardware KVM (taps in a private network \
                 namespace). {machine}."
            ),
        }
    }

    pub fn run(&self, inputs: &Inputs) -> Result<Outcome, String> {
        match self {
            Runner::Lab => lab::run(inputs),
            Runner::Host(h) => h.run(inputs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_the_host_only_with_hardware_kvm() {
        assert!(matches!(
            Runner::choose(Where::Auto, false),
            Ok(Runner::Lab)
        ));
        assert!(matches!(
            Runner::choose(Where::Auto, true),
            Ok(Runner::Host(_))
        ));
        assert!(matches!(Runner::choose(Where::Lab, true), Ok(Runner::Lab)));
        assert!(Runner::choose(Where::Host, false)
            .err()
            .is_some_and(|e| e.contains("--where lab")));
        assert_eq!("host".parse::<Where>(), Ok(Where::Host));
        assert!("l4b".parse::<Where>().is_err());
    }
}
