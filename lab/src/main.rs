//! `ironvirt-lab`: prepare the lab, run the demo, or run a developer's payload in L1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ironvirt_lab::initramfs::{L1Initramfs, L2Initramfs};
use ironvirt_lab::Lab;

const USAGE: &str = "usage:
  ironvirt-lab fetch
      download/cache the Debian kernel and busybox, print their paths
  ironvirt-lab demo --vmm PATH [--domain examples/demo.xml]
      boot the demo guest under ironvirt-vmm (directly on hardware KVM, else inside the lab)
  ironvirt-lab shell-run PAYLOAD.sh [--qemu] [--net] [--bin HOST[:DEST]]... [--timeout SECS]
      boot L1 and run PAYLOAD.sh in it (helpers from lab/src/sh/functions.sh available);
      --qemu adds QEMU (L2 baseline; see $LAB_QEMU_DATA, $LAB_QEMU_BIOS), --net loads tun/bridge/
      veth/nftables modules, --bin adds a binary (default DEST /bin/NAME); the L2 kernel and a demo
      initramfs are at $LAB_L2_BZIMAGE, $LAB_L2_VMLINUX, $LAB_L2_INITRD

environment: IRONVIRT_LAB_DIR overrides the cache/run directory (default <workspace>/target/lab)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fetch") => fetch(),
        Some("demo") => ironvirt_lab::demo::main(&args[1..]),
        Some("shell-run") => shell_run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => Err(format!("expected a subcommand\n{USAGE}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ironvirt-lab: {e}");
            ExitCode::from(2)
        }
    }
}

fn fetch() -> Result<u8, String> {
    let lab = Lab::prepare().map_err(|e| e.to_string())?;
    let a = &lab.artifacts;
    println!("lab dir:   {}", a.lab_dir.display());
    println!(
        "kernel:    {} {} ({})",
        a.kernel.package, a.kernel.version, a.kernel.release
    );
    println!("bzImage:   {}", a.kernel.bzimage.display());
    println!("vmlinux:   {}", a.kernel.vmlinux.display());
    println!("modules:   {}", a.kernel.modules_dir.display());
    println!(
        "busybox:   {} ({})",
        a.busybox.path.display(),
        a.busybox.version
    );
    Ok(0)
}

fn shell_run(args: &[String]) -> Result<u8, String> {
    let mut payload = None;
    let mut l1 = L1Initramfs::default();
    let mut timeout = Duration::from_secs(600);
    let mut guest_init = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--qemu" => l1.include_qemu = true,
            "--net" => l1.network_modules = true,
            "--bin" => {
                let spec = it.next().ok_or("--bin needs HOST[:DEST]")?;
                let (host, dest) = match spec.split_once(':') {
                    Some((h, d)) => (PathBuf::from(h), d.to_string()),
                    None => {
                        let host = PathBuf::from(spec);
                        let name = host
                            .file_name()
                            .ok_or_else(|| format!("--bin {spec}: not a file path"))?
                            .to_string_lossy()
                            .into_owned();
                        (host, format!("/bin/{name}"))
                    }
                };
                l1.binaries.push((host, dest));
            }
            "--guest-init" => {
                let path = it.next().ok_or("--guest-init needs a file")?;
                guest_init = Some(
                    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?,
                );
            }
            "--timeout" => {
                let secs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--timeout needs seconds")?;
                timeout = Duration::from_secs(secs);
            }
            p if payload.is_none() && !p.starts_with('-') => payload = Some(PathBuf::from(p)),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    let payload = payload.ok_or("shell-run needs a PAYLOAD.sh")?;
    l1.payload = std::fs::read_to_string(&payload)
        .map_err(|e| format!("reading {}: {e}", payload.display()))?;
    let lab = Lab::prepare().map_err(|e| e.to_string())?;
    // A default guest so payloads can boot L2 right away ($LAB_L2_INITRD).
    let l2 = L2Initramfs::with_prelude(
        guest_init
            .as_deref()
            .unwrap_or(ironvirt_lab::demo::DEMO_GUEST_BODY),
    );
    l1.l2_initramfs = Some(lab.build_l2("shell-run", &l2).map_err(|e| e.to_string())?);
    let run = lab
        .run("shell-run", &l1, |cfg| {
            cfg.echo = ironvirt_lab::run::Echo::All;
            cfg.timeout = timeout;
        })
        .map_err(|e| e.to_string())?;
    println!(
        "ironvirt-lab: L1 run took {:.1} s, {} attempt(s){}; log {}",
        run.elapsed.as_secs_f64(),
        run.attempts,
        if run.retried.is_empty() {
            String::new()
        } else {
            format!(" (retried: {})", run.retried.join("; "))
        },
        run.log.display()
    );
    match &run.dead {
        Some(reason) => Err(format!("L1 died: {reason}")),
        None => Ok(0),
    }
}
