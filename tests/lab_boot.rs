//! Debian's stock cloud kernel booted by ironvirt-vmm (bzImage and ELF vmlinux) inside the lab, with
//! QEMU microvm as the baseline, all in ONE L1 boot (each L1 boot costs tens of seconds under TCG).
//!
//! Scenarios: `ivm-bzimage` (bzImage, powered off by `poweroff -f`), `ivm-vmlinux` (ELF vmlinux,
//! `reboot -f` with `on_reboot='destroy'`), `ivm-restart` (bzImage, `reboot -f` with
//! `on_reboot='restart'`, then `poweroff -f` in the second boot), `qemu-vmlinux` (the baseline).
//!
//! The guest's `/init` reports what it sees on its console (`L2-GUEST: ...`) and then obeys commands
//! typed on the console: `echo TEXT`, `reboot`, `poweroff`. Typing the power action, instead of
//! deciding it inside the guest, is what makes the reboot test robust: a guest keeps no state across a
//! reboot and both boots get the same command line, so the L1 payload — which sees every boot — decides:
//! with `on_reboot='restart'` it answers boot 1 with `reboot` and boot 2 with `poweroff`; with
//! `on_reboot='destroy'` it sends `reboot` once and expects the VMM to exit. The payload sends a line
//! only after the guest printed `ready-for-input`, since bytes sent before the tty is open are lost.
//!
//! The payload turns what it saw into `IRONVIRT-LAB: <scenario>.<key> <value>` markers; this test parses
//! them, prints a table of boot times and checks everything, listing all failures at once.
//! Set IRONVIRT_LAB_ECHO=1 to watch L1's console live (with --nocapture).

use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::markers::Markers;
use ironvirt_lab::run::Echo;
use ironvirt_lab::Lab;

const VCPUS: u32 = 2;
const MEMORY_MIB: u64 = 256;
const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// The L2 guest's `/init` body (after the lab's standard prelude).
const GUEST_INIT: &str = r#"
read -r up _ < /proc/uptime
echo "L2-GUEST: init $up"
echo "L2-GUEST: cpus $(grep -c '^processor' /proc/cpuinfo)"
echo "L2-GUEST: memtotal-kib $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
# Boot-timer port: magic 123 at 0x3f0 makes ironvirt-vmm log "guest boot completed" (QEMU ignores it).
/bin/boot-timer
while :; do
    echo "L2-GUEST: ready-for-input"
    IFS= read -r cmd || { sleep 1; continue; }
    case "$cmd" in
        echo\ *) echo "L2-GUEST: echo ${cmd#echo }" ;;
        poweroff) poweroff -f ;;
        reboot) reboot -f ;;
        *) echo "L2-GUEST: unknown command: $cmd" ;;
    esac
done
"#;

/// The L1 payload: one scenario per VMM configuration, one after the other.
const PAYLOAD: &str = r#"
# guest_field NAME KEY BOOT: the value of the BOOT-th "L2-GUEST: KEY value" line.
guest_field() {
    tr -d '\r' < "$LAB_D/$1.out" | grep "^L2-GUEST: $2 " | sed -n "${3}p" | cut -d' ' -f3-
}

# scenario NAME "ACTIONS" CMD...: run CMD; for each action (one per expected boot) wait for /init,
# check the console echo, then type the action. Reports markers NAME.*.
scenario() {
    name=$1 actions=$2
    shift 2
    lab_vm_start "$name" "$@"
    boot=0 ready=0 since=$LAB_VM_T0 ok=1
    for action in $actions; do
        boot=$((boot + 1))
        # The first boot may include a slow VMM start; a reboot should be as quick as a boot (~10 s).
        limit=120
        [ "$boot" -gt 1 ] && limit=60
        if ! lab_vm_wait_for "$name" '^L2-GUEST: init ' "$limit" "$boot"; then
            lab_marker "$name.error" "boot $boot: no /init within $limit s (vmm exited or hung)"
            ok=0
            break
        fi
        lab_marker "$name.boot$boot.wall" "$(lab_elapsed "$since" "$LAB_WAIT_T")"
        lab_marker "$name.boot$boot.init-uptime" "$(guest_field "$name" init "$boot")"
        ready=$((ready + 1))
        if ! lab_vm_wait_for "$name" '^L2-GUEST: ready-for-input' 30 "$ready"; then
            lab_marker "$name.error" "boot $boot: guest never became ready for input"
            ok=0
            break
        fi
        lab_marker "$name.boot$boot.cpus" "$(guest_field "$name" cpus "$boot")"
        lab_marker "$name.boot$boot.memtotal-kib" "$(guest_field "$name" memtotal-kib "$boot")"
        lab_vm_send "$name" "echo hello-from-l1-boot$boot"
        if lab_vm_wait_for "$name" "^L2-GUEST: echo hello-from-l1-boot$boot" 30; then
            lab_marker "$name.boot$boot.echo" ok
        else
            lab_marker "$name.boot$boot.echo" missing
        fi
        ready=$((ready + 1))
        lab_vm_wait_for "$name" '^L2-GUEST: ready-for-input' 30 "$ready"
        since=$(lab_now)
        lab_vm_send "$name" "$action"
    done
    if [ "$ok" = 1 ]; then lab_vm_wait_exit "$name" 60; else lab_vm_wait_exit "$name" 3; fi
    lab_marker "$name.exit" "$LAB_VM_RC"
    lab_marker "$name.boots" "$(tr -d '\r' < "$LAB_D/$name.out" | grep -c '^L2-GUEST: init ')"
    timer=$(grep -m1 'guest boot completed' "$LAB_D/$name.err" | tr -d '\r')
    lab_marker "$name.boot-timer" "${timer:-none}"
    [ "$LAB_VM_RC" = 0 ] || lab_vm_stderr "$name"
}

scenario ivm-bzimage "poweroff" ironvirt-vmm --domain /lab/ivm-bzimage.xml
scenario ivm-vmlinux "reboot" ironvirt-vmm --domain /lab/ivm-vmlinux.xml
scenario ivm-restart "reboot poweroff" ironvirt-vmm --domain /lab/ivm-restart.xml
scenario qemu-vmlinux "poweroff" qemu-system-x86_64 -L "$LAB_QEMU_DATA" -bios "$LAB_QEMU_BIOS" \
    -enable-kvm -M microvm,x-option-roms=off,isa-serial=on,rtc=off -cpu host -m 256 -smp 2 \
    -nographic -nodefaults -serial stdio -kernel "$LAB_L2_VMLINUX" -initrd "$LAB_L2_INITRD" \
    -append "console=ttyS0 quiet panic=-1" -no-reboot
"#;

fn domain_xml(name: &str, kernel: &str, on_reboot: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>{VCPUS}</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{GUEST_CMDLINE}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>{on_reboot}</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='stdio'>
      <target port='0'/>
    </serial>
  </devices>
</domain>
",
        initrd = l1_paths::L2_INITRD
    )
}

/// One scenario's results, read from the markers.
struct Scenario<'a> {
    name: &'a str,
    expected_boots: u32,
    ironvirt: bool,
}

impl Scenario<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.name)
    }

    fn table_row(&self, m: &Markers) -> String {
        let get = |k: &str| m.get(&self.key(k)).unwrap_or("-").to_string();
        format!(
            "{:<14} {:>6} {:>16} {:>15} {:>6}",
            self.name,
            get("boots"),
            get("boot1.init-uptime"),
            get("boot1.wall"),
            get("exit")
        )
    }

    fn check(&self, m: &Markers, failures: &mut Vec<String>) {
        let mut fail = |what: String| failures.push(format!("{}: {what}", self.name));
        if let Some(e) = m.get(&self.key("error")) {
            fail(e.to_string());
        }
        for boot in 1..=self.expected_boots {
            let k = |s: &str| self.key(&format!("boot{boot}.{s}"));
            if m.get(&k("init-uptime")).is_none() {
                fail(format!("boot {boot} never reached /init"));
                continue;
            }
            match m.number(&k("cpus")) {
                Some(n) if n == f64::from(VCPUS) => {}
                other => fail(format!(
                    "boot {boot}: guest saw {other:?} CPUs, configured {VCPUS}"
                )),
            }
            let configured_kib = (MEMORY_MIB * 1024) as f64;
            match m.number(&k("memtotal-kib")) {
                Some(kib) if kib <= configured_kib && kib > 0.8 * configured_kib => {}
                other => fail(format!(
                    "boot {boot}: MemTotal {other:?} KiB is not within 80-100% of {MEMORY_MIB} MiB"
                )),
            }
            if m.get(&k("echo")) != Some("ok") {
                fail(format!(
                    "boot {boot}: the line typed on the serial console was not echoed"
                ));
            }
        }
        match m.number(&self.key("boots")) {
            Some(n) if n == f64::from(self.expected_boots) => {}
            other => fail(format!(
                "expected {} boot(s), saw {other:?}",
                self.expected_boots
            )),
        }
        if m.get(&self.key("exit")) != Some("0") {
            fail(format!(
                "VMM exit status {:?}, expected 0",
                m.get(&self.key("exit"))
            ));
        }
        if self.ironvirt {
            match m.get(&self.key("boot-timer")) {
                Some(l) if l.contains("guest boot completed") => {}
                other => fail(format!(
                    "no `guest boot completed` line on ironvirt-vmm's stderr (got {other:?})"
                )),
            }
        }
    }
}

#[test]
fn stock_debian_kernel_boots_under_ironvirt_vmm_in_the_lab() {
    let lab = Lab::prepare().expect("preparing the lab (Debian kernel + busybox)");
    let l2 = lab
        .build_l2("lab_boot", &L2Initramfs::with_prelude(GUEST_INIT))
        .expect("building the L2 initramfs");
    let mut l1 = L1Initramfs::new(PAYLOAD);
    l1.binaries.push((
        env!("CARGO_BIN_EXE_ironvirt-vmm").into(),
        "/bin/ironvirt-vmm".into(),
    ));
    l1.include_qemu = true;
    l1.l2_initramfs = Some(l2);
    l1.extra_files = vec![
        ExtraFile::text(
            "/lab/ivm-bzimage.xml",
            0o644,
            domain_xml("ivm-bzimage", l1_paths::BZIMAGE, "destroy"),
        ),
        ExtraFile::text(
            "/lab/ivm-restart.xml",
            0o644,
            domain_xml("ivm-restart", l1_paths::BZIMAGE, "restart"),
        ),
        ExtraFile::text(
            "/lab/ivm-vmlinux.xml",
            0o644,
            domain_xml("ivm-vmlinux", l1_paths::VMLINUX, "destroy"),
        ),
    ];
    let echo = std::env::var_os("IRONVIRT_LAB_ECHO").is_some();
    let run = lab
        .run("lab_boot", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(330);
            cfg.echo = if echo { Echo::All } else { Echo::None };
        })
        .expect("running the lab");

    println!(
        "lab: L1 run {:.1} s, {} attempt(s){}; console log {}",
        run.elapsed.as_secs_f64(),
        run.attempts,
        if run.retried.is_empty() {
            String::new()
        } else {
            format!(" (retried after: {})", run.retried.join("; "))
        },
        run.log.display()
    );
    if let Some(reason) = &run.dead {
        panic!(
            "L1 died twice, last: {reason}; see {}\n{}",
            run.log.display(),
            run.transcript
        );
    }
    let m = &run.markers;
    let scenarios = [
        // bzImage, `poweroff -f` -> exit 0.
        Scenario {
            name: "ivm-bzimage",
            expected_boots: 1,
            ironvirt: true,
        },
        // ELF vmlinux, `reboot -f` with on_reboot='destroy' -> exit 0 after one boot.
        Scenario {
            name: "ivm-vmlinux",
            expected_boots: 1,
            ironvirt: true,
        },
        // bzImage, `reboot -f` with on_reboot='restart' -> a second boot, then `poweroff -f` -> exit 0.
        Scenario {
            name: "ivm-restart",
            expected_boots: 2,
            ironvirt: true,
        },
        Scenario {
            name: "qemu-vmlinux",
            expected_boots: 1,
            ironvirt: false,
        },
    ];
    println!(
        "{:<14} {:>6} {:>16} {:>15} {:>6}",
        "scenario", "boots", "L2 /init up (s)", "L1 wall (s)", "exit"
    );
    for s in &scenarios {
        println!("{}", s.table_row(m));
    }
    for s in scenarios.iter().filter(|s| s.ironvirt) {
        if let Some(t) = m.get(&s.key("boot-timer")) {
            println!("{} boot timer: {t}", s.name);
        }
    }
    let mut failures = Vec::new();
    for s in &scenarios {
        s.check(m, &mut failures);
    }
    if !failures.is_empty() {
        let guest_lines: String = run
            .transcript
            .lines()
            .filter(|l| l.starts_with("L2ERR|") || l.contains("IRONVIRT-LAB:"))
            .map(|l| format!("  {l}\n"))
            .collect();
        panic!(
            "{} check(s) failed:\n  {}\nmarkers and VMM stderr:\n{guest_lines}full console log: {}",
            failures.len(),
            failures.join("\n  "),
            run.log.display()
        );
    }
}
