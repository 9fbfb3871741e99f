//! `ironvirt-lab demo`: boot the README's demo guest under ironvirt-vmm — directly when the host's KVM
//! can run a stock Linux kernel, otherwise inside the lab with the guest's console streamed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use crate::run::Echo;
use crate::Lab;

/// The demo guest's `/init` body (after [`crate::initramfs::L2_PRELUDE`]).
pub const DEMO_GUEST_BODY: &str = r#"
ncpu=$(grep -c '^processor' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
read -r up _ < /proc/uptime
echo "ironvirt demo guest: Linux $(uname -r), $ncpu CPUs, $mem MiB (reached /init after $up s)"
# Tell the VMM's boot-timer port that boot is complete (magic 123 at 0x3f0).
/bin/boot-timer
poweroff -f
"#;

/// Placeholders in `examples/demo.xml`.
pub const KERNEL_PLACEHOLDER: &str = "@KERNEL@";
pub const INITRD_PLACEHOLDER: &str = "@INITRD@";

/// Where the example domain lives in the source tree.
pub fn default_domain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.xml")
}

/// True if `/dev/kvm` is backed by hardware virtualization (vmx/svm in /proc/cpuinfo) and opens.
/// PVM (software nested KVM) passes the second test but not the first, and cannot boot stock Linux.
pub fn host_kvm_runs_linux() -> bool {
    let flags = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    hw && fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Fills the demo XML's placeholders.
pub fn render_domain(template: &str, kernel: &str, initrd: &str) -> String {
    template
        .replace(KERNEL_PLACEHOLDER, kernel)
        .replace(INITRD_PLACEHOLDER, initrd)
}

/// Runs the demo; returns the process exit code.
pub fn main(args: &[String]) -> Result<u8, String> {
    let mut vmm = None;
    let mut domain = default_domain();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vmm" => vmm = it.next().map(PathBuf::from),
            "--domain" => {
                domain = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--domain needs a file")?
            }
            other => return Err(format!("demo: unexpected argument {other:?}")),
        }
    }
    let vmm = vmm.ok_or("demo needs --vmm PATH (e.g. target/debug/ironvirt-vmm)")?;
    if !vmm.is_file() {
        return Err(format!(
            "{} does not exist: build it with `cargo build --bin ironvirt-vmm`",
            vmm.display()
        ));
    }
    let template =
        fs::read_to_string(&domain).map_err(|e| format!("reading {}: {e}", domain.display()))?;
    let lab = Lab::prepare().map_err(|e| e.to_string())?;
    let l2 = lab
        .build_l2("demo", &L2Initramfs::with_prelude(DEMO_GUEST_BODY))
        .map_err(|e| e.to_string())?;
    let run_dir = lab.run_dir("demo");

    if host_kvm_runs_linux() {
        let xml = render_domain(
            &template,
            &lab.artifacts.kernel.bzimage.to_string_lossy(),
            &l2.to_string_lossy(),
        );
        let path = run_dir.join("demo.xml");
        fs::write(&path, xml).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let status = Command::new(&vmm)
            .arg("--domain")
            .arg(&path)
            .status()
            .map_err(|e| format!("running {}: {e}", vmm.display()))?;
        return Ok(status.code().map_or(1, |c| c.clamp(0, 255) as u8));
    }

    println!(
        "ironvirt-lab: this machine's /dev/kvm cannot run a stock Linux kernel (no vmx/svm in \
         /proc/cpuinfo: nested software KVM), so the same VM runs inside the lab (a QEMU-TCG VM with \
         emulated AMD-V); booting it takes from ten seconds to a minute..."
    );
    let xml = render_domain(&template, l1_paths::BZIMAGE, l1_paths::L2_INITRD);
    let mut l1 = L1Initramfs::new(
        "lab_vm_start demo ironvirt-vmm --domain /lab/demo.xml\n\
         lab_vm_wait_exit demo 300\n\
         lab_vm_stderr demo\n\
         lab_marker demo-exit \"$LAB_VM_RC\"\n",
    );
    l1.binaries.push((vmm, "/bin/ironvirt-vmm".into()));
    l1.l2_initramfs = Some(l2);
    l1.extra_files
        .push(ExtraFile::text("/lab/demo.xml", 0o644, xml));
    let run = lab
        .run("demo", &l1, |cfg| {
            cfg.echo = Echo::Guest;
            cfg.timeout = Duration::from_secs(480);
        })
        .map_err(|e| e.to_string())?;
    if let Some(reason) = &run.dead {
        return Err(format!(
            "the lab VM died: {reason} (log: {})",
            run.log.display()
        ));
    }
    let code = run
        .markers
        .get("demo-exit")
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(1);
    println!(
        "ironvirt-lab: ironvirt-vmm exited with status {code} (lab run {:.0} s; log {})",
        run.elapsed.as_secs_f64(),
        run.log.display()
    );
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_domain_has_placeholders() {
        let xml = fs::read_to_string(default_domain()).unwrap();
        let out = render_domain(&xml, "/k", "/i");
        assert!(out.contains("<kernel>/k</kernel>") && out.contains("<initrd>/i</initrd>"));
        assert!(!out.contains('@'));
    }
}
