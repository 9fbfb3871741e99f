//! The `ironvirt` CLI as a new user would use it, with Debian's stock cloud kernel inside the lab:
//! define, start, list, dominfo, the console showing the guest's marker, suspend and resume, an
//! ACPI shutdown that ends in `shut off`, start again and destroy, undefine. One L1 boot runs it all
//! (the `ironvirt` and `ironvirt-vmm` binaries are bundled into L1); each step reports a marker
//! `IRONVIRT-LAB: cli.<step> ok|<what went wrong>` and the test lists every failure at once.
//!
//! The L2 guest runs busybox `acpid` (with the kernel's `button` and `evdev` modules) so the power
//! button `ironvirt shutdown` presses powers it off, as systemd-logind or acpid would in a real
//! distribution; then it prints `L2-GUEST: tick N` every second on its serial console.

use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::run::Echo;
use ironvirt_lab::Lab;

const GUEST_INIT: &str = r#"
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho "L2-GUEST: power button"\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
# In the foreground (backgrounded by the shell), logging to stderr: a daemonized busybox acpid
# wants /var/log and /var/run, which this initramfs does not have.
acpid -d -c /etc/acpi -p /tmp/acpid.pid > /tmp/acpid.log 2>&1 &
sleep 1
echo "L2-GUEST: diag input=$(ls /dev/input 2>&1 | tr '\n' ' ') acpid=$(pidof acpid) devices=$(grep -h Name /proc/bus/input/devices | tr '\n' ' ')"
n=0
while :; do
    n=$((n + 1))
    echo "L2-GUEST: tick $n"
    sleep 1
done
"#;

const PAYLOAD: &str = r#"
cd /tmp
# step NAME CMD...: run an ironvirt command, keep its output in /tmp/NAME.out.
step() {
    _n=$1
    shift
    "$@" > "/tmp/$_n.out" 2>&1
    _rc=$?
    if [ "$_rc" != 0 ]; then
        lab_marker "cli.$_n" "exit $_rc: $(tr '\n' '|' < "/tmp/$_n.out")"
        return 1
    fi
    return 0
}
# expect NAME TEXT: the output of step NAME contains TEXT.
expect() {
    if grep -qF -- "$2" "/tmp/$1.out"; then
        lab_marker "cli.$1" ok
    else
        lab_marker "cli.$1" "missing '$2' in: $(tr '\n' '|' < "/tmp/$1.out")"
    fi
}
# wait_state NAME STATE SECS: poll domstate until it prints STATE.
wait_state() {
    _end=$(($(lab_secs) + $3))
    while [ "$(lab_secs)" -lt "$_end" ]; do
        [ "$(ironvirt domstate guest 2>/dev/null | head -1)" = "$2" ] && { lab_marker "cli.$1" ok; return 0; }
        sleep 1
    done
    lab_marker "cli.$1" "still '$(ironvirt domstate --reason guest 2>&1 | head -1)' after $3 s, not '$2'"
    return 1
}

step define ironvirt define /lab/guest.xml && expect define "Domain 'guest' defined from /lab/guest.xml"
step start ironvirt start guest && expect start "Domain 'guest' started"
step list ironvirt list && expect list " 1    guest   running"
step dominfo ironvirt dominfo guest && expect dominfo "State:          running"

# The console: attach, wait for the guest's marker, detach with Ctrl+].
mkfifo /tmp/console.in
ironvirt console guest < /tmp/console.in > /tmp/console.out 2>&1 &
console_pid=$!
exec 8> /tmp/console.in
end=$(($(lab_secs) + 150))
while [ "$(lab_secs)" -lt "$end" ] && ! grep -q 'L2-GUEST: tick' /tmp/console.out; do sleep 1; done
# In a subshell: if the console already ended, SIGPIPE must not kill the payload.
(printf '\035' >&8) 2> /dev/null
exec 8>&-
wait $console_pid
console_rc=$?
if grep -q 'L2-GUEST: tick' /tmp/console.out && grep -q "Connected to domain 'guest'" /tmp/console.out; then
    lab_marker cli.console ok
else
    lab_marker cli.console "rc $console_rc, no tick in: $(tail -c 300 /tmp/console.out | tr '\n\r' '||')"
fi

step suspend ironvirt suspend guest && expect suspend "Domain 'guest' suspended"
step paused ironvirt domstate guest && expect paused "paused"
step resume ironvirt resume guest && expect resume "Domain 'guest' resumed"
step running ironvirt domstate --reason guest && expect running "running (unpaused)"

lab_marker cli.diag "$(grep -a 'L2-GUEST: diag' /tmp/console.out | tr -d '\r' | head -1)"
step shutdown ironvirt shutdown guest && expect shutdown "Domain 'guest' is being shutdown"
wait_state shutoff "shut off" 120
step reason ironvirt domstate --reason guest && expect reason "shut off (shutdown)"

step start2 ironvirt start guest && expect start2 "Domain 'guest' started"
step list2 ironvirt list && expect list2 " 2    guest   running"
step destroy ironvirt destroy guest && expect destroy "Domain 'guest' destroyed"
step destroyed ironvirt domstate --reason guest && expect destroyed "shut off (destroyed)"
step undefine ironvirt undefine guest && expect undefine "Domain 'guest' has been undefined"
step gone ironvirt list --all && expect gone "--------------------"
lab_marker cli.log "$(tr '\n' '|' < /var/log/ironvirt/qemu/guest.log | tail -c 400)"
lab_marker cli.done 1
"#;

const STEPS: &[&str] = &[
    "define",
    "start",
    "list",
    "dominfo",
    "console",
    "suspend",
    "paused",
    "resume",
    "running",
    "shutdown",
    "shutoff",
    "reason",
    "start2",
    "list2",
    "destroy",
    "destroyed",
    "undefine",
    "gone",
];

fn guest_xml() -> String {
    format!(
        "<domain type='kvm'>
  <name>guest</name>
  <memory unit='MiB'>256</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
",
        l1_paths::BZIMAGE,
        l1_paths::L2_INITRD
    )
}

#[test]
fn a_new_user_manages_a_debian_guest_with_ironvirt() {
    let lab = Lab::prepare().expect("preparing the lab (Debian kernel + busybox)");
    let mut l2 = L2Initramfs::with_prelude(GUEST_INIT);
    l2.modules.push("button".into());
    l2.modules.push("evdev".into());
    let l2 = lab
        .build_l2("lab_cli", &l2)
        .expect("building the L2 initramfs");
    let mut l1 = L1Initramfs::new(PAYLOAD);
    l1.binaries.push((
        env!("CARGO_BIN_EXE_ironvirt").into(),
        "/bin/ironvirt".into(),
    ));
    l1.binaries.push((
        env!("CARGO_BIN_EXE_ironvirt-vmm").into(),
        "/bin/ironvirt-vmm".into(),
    ));
    l1.l2_initramfs = Some(l2);
    l1.extra_files = vec![ExtraFile::text("/lab/guest.xml", 0o644, guest_xml())];
    let echo = std::env::var_os("IRONVIRT_LAB_ECHO").is_some();
    let run = lab
        .run("lab_cli", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(600);
            cfg.echo = if echo { Echo::All } else { Echo::None };
        })
        .expect("running the lab");
    println!(
        "lab: L1 run {:.1} s, {} attempt(s); console log {}",
        run.elapsed.as_secs_f64(),
        run.attempts,
        run.log.display()
    );
    if let Some(reason) = &run.dead {
        panic!("L1 died, last: {reason}; see {}", run.log.display());
    }
    let m = &run.markers;
    let failures: Vec<String> = STEPS
        .iter()
        .filter_map(|s| match m.get(&format!("cli.{s}")) {
            Some("ok") => None,
            Some(other) => Some(format!("{s}: {other}")),
            None => Some(format!("{s}: no result")),
        })
        .collect();
    if !failures.is_empty() {
        panic!(
            "{} step(s) failed:\n  {}\nVMM log: {}\nfull console log: {}",
            failures.len(),
            failures.join("\n  "),
            m.get("cli.log").unwrap_or("-"),
            run.log.display()
        );
    }
}
