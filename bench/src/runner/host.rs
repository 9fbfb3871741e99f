//! The host runner, for machines with hardware KVM: the same payload runs here, under the lab's static
//! busybox (so the shell and tools behave exactly as in L1), inside a network namespace of its own made with
//! `unshare -n`. The tap, its address and the iperf3 server exist only in that namespace and vanish with it:
//! the host's interfaces, routes and firewall are never touched, and nothing is forwarded or NATed.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use ironvirt_lab::initramfs::{host_qemu_firmware, L1_FUNCTIONS};
use ironvirt_lab::markers::Markers;
use ironvirt_lab::tools;

use super::{Inputs, Outcome};
use crate::payload::{self, PayloadEnv, ToolsDisk};

pub struct HostRunner {
    /// Root needs no user namespace to own a network namespace; anyone else maps themselves to root in one.
    as_root: bool,
}

impl HostRunner {
    pub fn new() -> Self {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        HostRunner { as_root: euid == 0 }
    }

    pub fn run(&self, inputs: &Inputs) -> Result<Outcome, String> {
        println!(
            "ironvirt-bench: this host has hardware KVM; benchmarking directly on it (in a private network \
             namespace)"
        );
        let env = host_env(inputs)?;
        env.check()?;
        fs::create_dir_all(&env.lab_d).map_err(|e| format!("{}: {e}", env.lab_d))?;
        let xml = payload::domain_xml(&env, ToolsDisk::File);
        fs::write(&env.xml, xml).map_err(|e| format!("{}: {e}", env.xml))?;
        let script = inputs.work.join("payload.sh");
        fs::write(&script, script_text(&env, &inputs.payload))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let busybox = &inputs.lab.artifacts.busybox.path;
        let applets = inputs.work.join("busybox-bin");
        link_applets(busybox, &applets)?;
        let log = inputs.work.join("host-run.log");
        let cmd = command(busybox, &script, &applets, self.as_root);
        let markers = stream(
            cmd,
            &log,
            timeout(inputs.runs, inputs.io_seconds),
            inputs.echo,
        )?;
        Ok(Outcome { markers, log })
    }
}

/// The payload's view of this host: the built VMM, the host's QEMU, strace and iperf3, the lab's kernel
/// files, and `DIR/work` for everything the run writes.
fn host_env(inputs: &Inputs) -> Result<PayloadEnv, String> {
    let which = |tool: &str, package: &'static str| {
        tools::which(tool, package)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())
    };
    let bios = host_qemu_firmware("qboot.rom").ok_or(
        "QEMU's microvm firmware qboot.rom is not installed (looked in /usr/share/qemu, /usr/share/seabios, \
         /usr/share/qboot): install the Debian package qemu-system-x86",
    )?;
    let data = bios.parent().unwrap_or(Path::new("/usr/share/qemu"));
    let path = |p: &Path| p.display().to_string();
    let [xml, disks, consoles] = work_paths(&inputs.work);
    Ok(PayloadEnv {
        vmm: path(&inputs.vmm),
        qemu: which("qemu-system-x86_64", "qemu-system-x86")?,
        qemu_data: path(data),
        qemu_bios: path(&bios),
        strace: which("strace", "strace")?,
        iperf3: which("iperf3", "iperf3")?,
        vmlinux: path(&inputs.lab.artifacts.kernel.vmlinux),
        initrd: path(&inputs.l2_initrd),
        xml: path(&xml),
        work: path(&disks),
        lab_d: path(&consoles),
        tools: path(&inputs.tools_image),
        qcow2: path(&inputs.qcow2),
    })
}

/// The script the namespace's shell runs: the environment, the lab's helpers, the payload — what L1 runs.
pub fn script_text(env: &PayloadEnv, payload: &str) -> String {
    format!("{}{L1_FUNCTIONS}\n{payload}", env.exports())
}

/// `busybox unshare -n [-r] -- busybox sh SCRIPT`, with busybox's applets first on `PATH`. It stays in the
/// terminal's process group, so Ctrl+C stops the payload and its VMMs along with the benchmark.
pub fn command(busybox: &Path, script: &Path, applets: &Path, as_root: bool) -> Command {
    let mut c = Command::new(busybox);
    c.arg("unshare");
    if !as_root {
        c.arg("-r");
    }
    c.args(["-n", "--"]).arg(busybox).arg("sh").arg(script);
    let mut path = applets.as_os_str().to_owned();
    path.push(":/usr/sbin:/usr/bin:/sbin:/bin");
    c.env("PATH", path);
    c
}

/// `pid` and all its descendants, children first found from `/proc/*/stat`'s parent field.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // The field after the parenthesised command name (which may contain spaces) is the state, then ppid.
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// A directory of links to every busybox applet, as L1's `/bin` has.
fn link_applets(busybox: &Path, dir: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let list = tools::run_text(Command::new(busybox).arg("--list")).map_err(|e| e.to_string())?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let link = dir.join(applet);
        std::os::unix::fs::symlink(busybox, &link)
            .map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(())
}

/// Per round: two start-up probes and two boots, at hardware speed with room to spare.
fn timeout(runs: u32, io_seconds: u32) -> Duration {
    let boot = 60 + payload::guest_timeout_secs(io_seconds) / 2;
    Duration::from_secs(60 + u64::from(runs) * 2 * (30 + boot))
}

/// Runs `cmd`, copying its output to `log` (and stdout with `echo`) as it comes; stops it at `timeout`.
fn stream(mut cmd: Command, log: &Path, timeout: Duration, echo: bool) -> Result<Markers, String> {
    let mut log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the payload ({cmd:?}): {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut transcript = String::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            // Take the VMMs and the iperf3 server down with the payload: exactly its process tree.
            for pid in process_tree(child.id()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                // The transcript is kept in memory too, so a failing log write loses nothing.
                let _ = log_file.write_all(line.as_bytes());
                if echo {
                    print!("{line}");
                }
                transcript.push_str(&line);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the payload: {e}"))?;
    if timed_out {
        return Err(format!(
            "the payload did not finish within {} s and was stopped; log {}",
            timeout.as_secs(),
            log.display()
        ));
    }
    if !status.success() {
        return Err(format!(
            "the payload failed ({status}); if `unshare` was refused, run as root or enable unprivileged user \
             namespaces (sysctl kernel.unprivileged_userns_clone=1); log {}",
            log.display()
        ));
    }
    Ok(Markers::parse(&transcript))
}

/// The domain XML, the disks' directory and the consoles' directory under `DIR/work`.
fn work_paths(work: &Path) -> [PathBuf; 3] {
    [
        work.join("bench.xml"),
        work.join("disks"),
        work.join("consoles"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_payload_in_its_own_network_namespace() {
        let c = command(
            Path::new("/lab/busybox"),
            Path::new("/out/work/payload.sh"),
            Path::new("/out/work/busybox-bin"),
            true,
        );
        assert_eq!(c.get_program(), "/lab/busybox");
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "unshare",
                "-n",
                "--",
                "/lab/busybox",
                "sh",
                "/out/work/payload.sh"
            ]
        );
        let path = c
            .get_envs()
            .find(|(k, _)| *k == "PATH")
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().into_owned());
        assert_eq!(
            path.as_deref(),
            Some("/out/work/busybox-bin:/usr/sbin:/usr/bin:/sbin:/bin")
        );
        // Not root: a user namespace maps the user to root, who may then own the network namespace.
        let c = command(Path::new("/b"), Path::new("/s"), Path::new("/a"), false);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["unshare", "-r", "-n", "--", "/b", "sh", "/s"]);
    }

    #[test]
    fn finds_a_process_tree() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let tree = process_tree(child.id());
        let _ = child.kill();
        for pid in &tree[1..] {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        let _ = child.wait();
        assert_eq!(tree[0], child.id());
        assert_eq!(tree.len(), 2, "sh and its sleep: {tree:?}");
    }

    #[test]
    fn the_script_is_the_lab_payload_with_host_paths() {
        let [xml, disks, consoles] = work_paths(Path::new("/out/work"));
        let env = PayloadEnv {
            vmm: "/t/release/ironvirt-vmm".into(),
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            qemu_data: "/usr/share/qemu".into(),
            qemu_bios: "/usr/share/qemu/qboot.rom".into(),
            strace: "/usr/bin/strace".into(),
            iperf3: "/usr/bin/iperf3".into(),
            vmlinux: "/lab/kernel/vmlinux".into(),
            initrd: "/lab/runs/bench/l2.cpio".into(),
            xml: xml.display().to_string(),
            work: disks.display().to_string(),
            lab_d: consoles.display().to_string(),
            tools: "/out/work/tools.ext4".into(),
            qcow2: "/out/work/empty.qcow2".into(),
        };
        let body = payload::payload(3, 5);
        let s = script_text(&env, &body);
        // The environment comes first, so functions.sh keeps the consoles under DIR/work, not /tmp/lab.
        let exports = s.find("export LAB_D='/out/work/consoles'").unwrap();
        let helpers = s.find("LAB_D=${LAB_D:-/tmp/lab}").unwrap();
        assert!(exports < helpers && s.ends_with(&body));
        assert!(s.contains("export BENCH_VMM='/t/release/ironvirt-vmm'"));
        // The tap is made inside the namespace by the payload itself; nothing routes or NATs.
        assert!(s.contains("tunctl -t ivbench0"));
        for forbidden in ["iptables", "nft ", "ip_forward", "masquerade", "ip netns"] {
            assert!(!s.contains(forbidden), "payload mentions {forbidden}");
        }
        let xml = payload::domain_xml(&env, ToolsDisk::File);
        assert!(xml.contains("<source file='/out/work/disks/disk.raw'/>"));
        assert!(xml.contains("<source file='/out/work/tools.ext4'/>"));
    }
}
