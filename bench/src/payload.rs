//! The scripts the VM-level benchmark runs — the guest's `/init` body and the payload that boots both VMMs in
//! turn and measures them — and the ironvirt domain matching QEMU's command line.
//!
//! The payload is the same script wherever it runs: in the lab's L1 or directly on a host with hardware KVM
//! (inside a private network namespace). The runner only supplies its environment ([`PayloadEnv`]).
//! Results come back as `IRONVIRT-LAB: <vmm>.<run>.<metric> <value>` markers.

/// The guest's network: the tap's side (where the iperf3 server listens) and the guest's address.
pub const HOST_IP: &str = "10.0.2.1";
pub const GUEST_IP: &str = "10.0.2.2";
pub const GUEST_MAC: &str = "52:54:00:00:00:42";
/// The tap both VMMs attach to (one at a time), created by the payload.
pub const TAP: &str = "ivbench0";
/// Guest RAM: small enough for four lab VMs' worth of L1 memory; fio and iperf3 need little.
pub const GUEST_MIB: u32 = 256;
pub const GUEST_CPUS: u32 = 2;
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Runs after the lab's L2 prelude (mounts, virtio modules). `@SECONDS@` is the fio/iperf3 duration.
///
/// fio and iperf3 (Debian's, with their shared libraries) come on a read-only ext4 disk, not in the
/// initramfs: fio's ~64 libraries are ~80 MB (LAB.md), which would make every boot unpack them and so
/// distort the boot-time figures. The dynamic loader on that disk runs them.
const GUEST_INIT: &str = r#"
read -r up _ < /proc/uptime
echo "BENCH-GUEST: init $up"
/bin/boot-timer
# Disks are found by the serial numbers both VMMs give them (raw, qcow2, tools), not by probe order.
disk() {
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2> /dev/null)" = "$1" ] && { echo "/dev/${b##*/}"; return 0; }
    done
    return 1
}
T=/mnt/tools
mkdir -p $T
tool() { n=$1; shift; "$T/lib/ld-linux-x86-64.so.2" --library-path "$T/lib" "$T/bin/$n" "$@"; }
# Results travel as one console line each: the tools' JSON without its indentation and line breaks.
oneline() { sed 's/^[[:space:]]*//' | tr -d '\r\n'; }
tools_error=
if ! td=$(disk tools); then
    tools_error="no virtio disk with serial 'tools' (fio and iperf3 live there)"
elif ! mount -t ext4 -o ro "$td" $T 2> /tmp/mount.err; then
    tools_error="mounting the tools disk $td failed: $(oneline < /tmp/mount.err)"
fi
# Writes first, so that the qcow2 reads hit allocated clusters (reading an empty qcow2 moves no data).
for d in raw qcow2; do
    dev=$(disk $d)
    for job in seqwrite:write:1m randwrite:randwrite:4k seqread:read:1m randread:randread:4k; do
        name=${job%%:*} rest=${job#*:}
        rw=${rest%%:*} bs=${rest#*:}
        if [ -n "$tools_error" ]; then
            echo "BENCH-FIO: $d-$name error: $tools_error"
            continue
        fi
        if [ -z "$dev" ]; then
            echo "BENCH-FIO: $d-$name error: no virtio disk with serial '$d'"
            continue
        fi
        out=$(tool fio --name="$d-$name" --filename="$dev" --rw=$rw --bs=$bs --direct=1 --ioengine=libaio \
            --iodepth=4 --size=64m --time_based --runtime=@SECONDS@ --output-format=json 2> /tmp/fio.err | oneline)
        case "$out" in
            *"{"*) echo "BENCH-FIO: $d-$name $out" ;;
            *) echo "BENCH-FIO: $d-$name error: fio: $(head -c 300 /tmp/fio.err | oneline)" ;;
        esac
    done
done
ip link set lo up
net_error=
if ! ip addr add @GUEST_IP@/24 dev eth0 2> /tmp/ip.err || ! ip link set eth0 up 2>> /tmp/ip.err; then
    net_error="configuring eth0 failed: $(oneline < /tmp/ip.err)"
else
    # The link needs a moment; iperf3 would fail instead of waiting.
    i=0
    while [ $i -lt 20 ] && ! ping -c 1 -W 1 @HOST_IP@ > /dev/null 2>&1; do i=$((i + 1)); done
fi
for dir in up down; do
    if [ -n "$tools_error$net_error" ]; then
        echo "BENCH-IPERF: $dir error: $tools_error$net_error"
        continue
    fi
    flag=
    [ $dir = down ] && flag=-R
    out=$(tool iperf3 -c @HOST_IP@ -t @SECONDS@ -i 0 --connect-timeout 10000 --json $flag 2>&1 | oneline)
    case "$out" in
        "{"*) echo "BENCH-IPERF: $dir $out" ;;
        *) echo "BENCH-IPERF: $dir error: iperf3: $(echo "$out" | head -c 300)" ;;
    esac
done
echo "BENCH-GUEST: idle"
sleep 4
poweroff -f
"#;

/// The measuring side (L1, or the host inside its private network namespace), sourced after the lab's
/// `functions.sh`. `@RUNS@` is the number of alternating rounds, `@GUEST_TIMEOUT@` how long a guest may
/// take from /init to idle. Everything it needs is in the `BENCH_*` and `LAB_*` variables ([`PayloadEnv`]).
const PAYLOAD: &str = r#"
FIO_KEYS="raw-seqwrite raw-randwrite raw-seqread raw-randread qcow2-seqwrite qcow2-randwrite qcow2-seqread qcow2-randread"
IRONVIRT_CMD="$BENCH_VMM --domain $BENCH_XML"
QEMU_CMD="$BENCH_QEMU -L $LAB_QEMU_DATA -bios $LAB_QEMU_BIOS -enable-kvm \
 -M microvm,x-option-roms=off,isa-serial=on,rtc=off -cpu host -m @MIB@ -smp @CPUS@ -nographic -nodefaults \
 -serial stdio -kernel $LAB_L2_VMLINUX -initrd $LAB_L2_INITRD -append '@CMDLINE@' -no-reboot \
 -drive id=d0,file=$BENCH_WORK/disk.raw,format=raw,if=none,cache=writeback,aio=threads \
 -device virtio-blk-device,drive=d0,serial=raw \
 -drive id=d1,file=$BENCH_WORK/disk.qcow2,format=qcow2,if=none,cache=writeback,aio=threads \
 -device virtio-blk-device,drive=d1,serial=qcow2 \
 -drive id=d2,file=$BENCH_TOOLS,format=raw,if=none,readonly=on -device virtio-blk-device,drive=d2,serial=tools \
 -netdev tap,id=n0,ifname=@TAP@,script=no,downscript=no,vhost=off \
 -device virtio-net-device,netdev=n0,mac=@MAC@"

mkdir -p "$BENCH_WORK"
# The tools disk may still be probing when the payload starts (in L1 it is a virtio disk of L1's own).
i=0
while [ $i -lt 50 ] && [ ! -e "$BENCH_TOOLS" ]; do sleep 0.2; i=$((i + 1)); done
[ -e "$BENCH_TOOLS" ] || lab_marker bench-error "the tools disk $BENCH_TOOLS is missing"

# The network: one persistent tap with the host side's address; no bridge, no NAT, no forwarding. Each VMM
# attaches to it in turn; the iperf3 server listens on it for the whole run.
ip link set lo up
IPERF_PID=
if tunctl -t @TAP@ > /dev/null && ip addr add @HOST_IP@/24 dev @TAP@ && ip link set @TAP@ up; then
    "$BENCH_IPERF3" -s -B @HOST_IP@ > "$BENCH_WORK/iperf3-server.log" 2>&1 &
    IPERF_PID=$!
else
    lab_marker bench-error "could not create the tap @TAP@ with @HOST_IP@"
fi

fresh_disks() {
    rm -f "$BENCH_WORK/disk.raw" "$BENCH_WORK/disk.qcow2"
    head -c 268435456 /dev/zero > "$BENCH_WORK/disk.raw"
    cp "$BENCH_QCOW2" "$BENCH_WORK/disk.qcow2"
}

# RSS of the VMM that is not guest RAM: every mapping but the guest's memory (the one >= 200 MiB).
nonguest_rss() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / { big = 0 } /^Size:/ { if ($2 >= 204800) big = 1 } /^Rss:/ { if (!big) s += $2 } END { print s + 0 }' "/proc/$1/smaps"
}

# guest_line NAME PREFIX KEY: the rest of the guest's first "PREFIX KEY ..." line.
guest_line() { tr -d '\r' < "$LAB_D/$1.out" | grep -m1 "^$2 $3 " | cut -d' ' -f3-; }

# measure VMM RUN: one benchmark boot.
measure() {
    vmm=$1 run=$2 name="$1-$2"
    fresh_disks
    if [ "$vmm" = ironvirt ]; then
        lab_vm_start "$name" env IRONVIRT_LOG=info $IRONVIRT_CMD
    else
        lab_vm_start "$name" sh -c "exec $QEMU_CMD"
    fi
    if lab_vm_wait_for "$name" '^BENCH-GUEST: init ' 180; then
        lab_marker "$vmm.$run.wall" "$(lab_elapsed "$LAB_VM_T0" "$LAB_WAIT_T")"
        lab_marker "$vmm.$run.init-uptime" "$(guest_line "$name" BENCH-GUEST: init)"
    else
        # Say why in the log: the guest's last words and the VMM's stderr.
        tail -n 20 "$LAB_D/$name.out" | tr -d '\r' | sed "s/^/L2TAIL|$name| /"
        lab_vm_stderr "$name"
    fi
    # When the guest does not get to idle, say why its later results are missing, for the report.
    lab_vm_wait_for "$name" '^BENCH-GUEST: idle' @GUEST_TIMEOUT@
    case $? in
        0)
            sleep 2
            pid=$(cat "$LAB_D/$name.pid")
            lab_marker "$vmm.$run.rss-nonguest-kib" "$(nonguest_rss "$pid")"
            lab_marker "$vmm.$run.rss-total-kib" "$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)"
            ;;
        1) lab_marker "$vmm.$run.stopped" "the VM ended (VMM exit status $(cat "$LAB_D/$name.rc")) before the guest finished its tests; its last line: $(tr -d '\r' < "$LAB_D/$name.out" | tail -n 1 | cut -c1-100)" ;;
        *) lab_marker "$vmm.$run.stopped" "the guest did not finish its tests within @GUEST_TIMEOUT@ s" ;;
    esac
    for k in $FIO_KEYS; do
        v=$(guest_line "$name" BENCH-FIO: "$k")
        [ -n "$v" ] && lab_marker "$vmm.$run.fio.$k" "$v"
    done
    for k in up down; do
        v=$(guest_line "$name" BENCH-IPERF: "$k")
        [ -n "$v" ] && lab_marker "$vmm.$run.iperf.$k" "$v"
    done
    lab_vm_wait_exit "$name" 60
    lab_marker "$vmm.$run.exit" "$LAB_VM_RC"
    t=$(grep -m1 'guest boot completed' "$LAB_D/$name.err" | sed 's/.*completed \([0-9.]*\) ms.*/\1/')
    [ -n "$t" ] && lab_marker "$vmm.$run.boot-timer-ms" "$t"
    [ "$LAB_VM_RC" = 0 ] || lab_vm_stderr "$name"
}

# startup VMM RUN: process start to the first KVM_RUN, from strace timestamps (the same tool for both VMMs).
startup() {
    vmm=$1 run=$2 trace="$BENCH_WORK/startup.trace"
    fresh_disks
    if [ "$vmm" = ironvirt ]; then cmd=$IRONVIRT_CMD; else cmd=$QEMU_CMD; fi
    rm -f "$trace"
    sh -c "exec $BENCH_STRACE -f -ttt -e trace=execve,ioctl -o $trace $cmd" < /dev/null > /dev/null 2>&1 &
    spid=$!
    i=0
    while [ $i -lt 300 ] && ! grep -q 'KVM_RUN' "$trace" 2> /dev/null; do sleep 0.1; i=$((i + 1)); done
    # Kill exactly the traced VMM (the pid on strace's first execve line) and strace: nothing else runs
    # a VM here in the lab, but on a host other VMs may.
    vpid=$(awk '/execve\(/ { print $1; exit }' "$trace" 2> /dev/null)
    kill -9 $vpid $spid 2> /dev/null
    wait $spid 2> /dev/null
    t0=$(awk '/execve\(/ { print $2; exit }' "$trace")
    t1=$(awk '/KVM_RUN/ { print $2; exit }' "$trace")
    [ -n "$t0" ] && [ -n "$t1" ] && lab_marker "$vmm.$run.startup-ms" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }')"
}

run=1
while [ $run -le @RUNS@ ]; do
    # Alternate who goes first, so neither VMM always gets the warmer machine.
    if [ $((run % 2)) = 1 ]; then order="ironvirt qemu"; else order="qemu ironvirt"; fi
    for vmm in $order; do startup "$vmm" "$run"; done
    for vmm in $order; do measure "$vmm" "$run"; done
    run=$((run + 1))
done
[ -n "$IPERF_PID" ] && kill "$IPERF_PID" 2> /dev/null
tunctl -d @TAP@ > /dev/null 2>&1
lab_marker bench-done 1
"#;

fn network(s: &str) -> String {
    s.replace("@HOST_IP@", HOST_IP)
        .replace("@GUEST_IP@", GUEST_IP)
        .replace("@TAP@", TAP)
        .replace("@MAC@", GUEST_MAC)
}

pub fn guest_init(io_seconds: u32) -> String {
    network(GUEST_INIT).replace("@SECONDS@", &io_seconds.to_string())
}

/// How long one guest may take from /init to idle: 8 fio jobs and 2 iperf3 runs of `io_seconds` each, with
/// generous room for start-up under nested emulation.
pub fn guest_timeout_secs(io_seconds: u32) -> u64 {
    120 + 10 * (u64::from(io_seconds) + 15)
}

/// The payload body (without its environment).
pub fn payload(runs: u32, io_seconds: u32) -> String {
    network(PAYLOAD)
        .replace("@RUNS@", &runs.to_string())
        .replace(
            "@GUEST_TIMEOUT@",
            &guest_timeout_secs(io_seconds).to_string(),
        )
        .replace("@MIB@", &GUEST_MIB.to_string())
        .replace("@CPUS@", &GUEST_CPUS.to_string())
        .replace("@CMDLINE@", CMDLINE)
}

/// What a runner gives the payload, as shell variables. Paths must not contain whitespace or commas: they
/// are spliced into QEMU's command line and option syntax ([`PayloadEnv::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadEnv {
    pub vmm: String,
    pub qemu: String,
    pub qemu_data: String,
    pub qemu_bios: String,
    pub strace: String,
    pub iperf3: String,
    pub vmlinux: String,
    pub initrd: String,
    /// The ironvirt domain (see [`domain_xml`]).
    pub xml: String,
    /// Where the payload keeps its disks and traces.
    pub work: String,
    /// The console files of the VMs (`functions.sh`'s `LAB_D`).
    pub lab_d: String,
    /// The read-only ext4 disk with fio and iperf3.
    pub tools: String,
    /// An empty qcow2 image, copied before every boot.
    pub qcow2: String,
}

impl PayloadEnv {
    pub fn vars(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("BENCH_VMM", &self.vmm),
            ("BENCH_QEMU", &self.qemu),
            ("LAB_QEMU_DATA", &self.qemu_data),
            ("LAB_QEMU_BIOS", &self.qemu_bios),
            ("BENCH_STRACE", &self.strace),
            ("BENCH_IPERF3", &self.iperf3),
            ("LAB_L2_VMLINUX", &self.vmlinux),
            ("LAB_L2_INITRD", &self.initrd),
            ("BENCH_XML", &self.xml),
            ("BENCH_WORK", &self.work),
            ("LAB_D", &self.lab_d),
            ("BENCH_TOOLS", &self.tools),
            ("BENCH_QCOW2", &self.qcow2),
        ]
    }

    /// Refuses paths the payload cannot splice into a command line.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in self.vars() {
            if value.is_empty()
                || value.contains(|c: char| c.is_whitespace() || c == ',' || c == '\'')
            {
                return Err(format!(
                    "{name}='{value}': the benchmark's paths must be non-empty and free of spaces, commas \
                     and quotes (they go into QEMU's command line); use --out with a plain path"
                ));
            }
        }
        Ok(())
    }

    /// `export` lines for the top of a script.
    pub fn exports(&self) -> String {
        self.vars()
            .iter()
            .map(|(k, v)| format!("export {k}='{v}'\n"))
            .collect()
    }
}

/// How the tools disk reaches the VMMs: a block device (L1's own virtio disk) or an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolsDisk {
    Block,
    File,
}

/// The ironvirt side of the comparison: the same kernel, initramfs, vCPUs, memory, disks (with the same
/// serials) and network as QEMU's command in [`PAYLOAD`].
pub fn domain_xml(env: &PayloadEnv, tools: ToolsDisk) -> String {
    let (tools_type, tools_attr) = match tools {
        ToolsDisk::Block => ("block", "dev"),
        ToolsDisk::File => ("file", "file"),
    };
    format!(
        "<domain type='kvm'>
  <name>bench</name>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>{cpus}</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{CMDLINE}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='{work}/disk.raw'/>
      <target dev='vda' bus='virtio'/>
      <serial>raw</serial>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback'/>
      <source file='{work}/disk.qcow2'/>
      <target dev='vdb' bus='virtio'/>
      <serial>qcow2</serial>
    </disk>
    <disk type='{tools_type}' device='disk'>
      <driver name='qemu' type='raw'/>
      <source {tools_attr}='{tools_path}'/>
      <target dev='vdc' bus='virtio'/>
      <readonly/>
      <serial>tools</serial>
    </disk>
    <interface type='ethernet'>
      <mac address='{GUEST_MAC}'/>
      <target dev='{TAP}' managed='no'/>
      <model type='virtio'/>
    </interface>
    <serial type='stdio'/>
  </devices>
</domain>
",
        mib = GUEST_MIB,
        cpus = GUEST_CPUS,
        kernel = env.vmlinux,
        initrd = env.initrd,
        work = env.work,
        tools_path = env.tools,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn env() -> PayloadEnv {
        PayloadEnv {
            vmm: "/b/ironvirt-vmm".into(),
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            qemu_data: "/usr/share/qemu".into(),
            qemu_bios: "/usr/share/qemu/qboot.rom".into(),
            strace: "/usr/bin/strace".into(),
            iperf3: "/usr/bin/iperf3".into(),
            vmlinux: "/k/vmlinux".into(),
            initrd: "/k/l2.cpio".into(),
            xml: "/w/bench.xml".into(),
            work: "/w".into(),
            lab_d: "/w/lab".into(),
            tools: "/w/tools.ext4".into(),
            qcow2: "/w/empty.qcow2".into(),
        }
    }

    /// An `@NAME@` left in a script (`"$@"` is shell, not a placeholder).
    fn has_placeholder(s: &str) -> bool {
        s.split('@').skip(1).any(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
    }

    #[test]
    fn both_vmms_get_the_same_machine() {
        let p = payload(3, 5);
        assert!(!has_placeholder(&p), "unreplaced placeholder:\n{p}");
        for want in [
            "-m 256 -smp 2",
            "serial=raw",
            "serial=qcow2",
            "serial=tools",
            "readonly=on",
            "-netdev tap,id=n0,ifname=ivbench0,script=no,downscript=no,vhost=off",
            "mac=52:54:00:00:00:42",
            "-append 'console=ttyS0 quiet panic=-1'",
        ] {
            assert!(p.contains(want), "QEMU command lacks {want}");
        }
        let xml = domain_xml(&env(), ToolsDisk::File);
        for want in [
            "<memory unit='MiB'>256</memory>",
            "<vcpu>2</vcpu>",
            "<serial>raw</serial>",
            "<serial>qcow2</serial>",
            "<source file='/w/tools.ext4'/>",
            "<readonly/>",
            "<target dev='ivbench0' managed='no'/>",
            "<mac address='52:54:00:00:00:42'/>",
            "<cmdline>console=ttyS0 quiet panic=-1</cmdline>",
        ] {
            assert!(xml.contains(want), "domain lacks {want}:\n{xml}");
        }
        let xml = domain_xml(&env(), ToolsDisk::Block);
        assert!(
            xml.contains("<disk type='block' device='disk'>")
                && xml.contains("<source dev='/w/tools.ext4'/>")
        );
        let g = guest_init(7);
        assert!(!has_placeholder(&g) && g.contains("--runtime=7") && g.contains("-t 7"));
    }

    #[test]
    fn env_paths_are_checked() {
        assert!(env().check().is_ok());
        let mut e = env();
        e.work = "/my dir".into();
        assert!(e.check().unwrap_err().contains("BENCH_WORK"));
        e.work = "/a,b".into();
        assert!(e.check().is_err());
        assert!(env()
            .exports()
            .contains("export BENCH_TOOLS='/w/tools.ext4'\n"));
    }
}
