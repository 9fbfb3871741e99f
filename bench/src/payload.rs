//! The scripts the VM-level benchmark runs: the guest's `/init` body and the L1 payload that boots both VMMs
//! in turn and measures them. Results come back as `IRONVIRT-LAB: <vmm>.<run>.<metric> <value>` markers.

/// Runs after the lab's L2 prelude (mounts, virtio modules). `@SECONDS@` is replaced by the I/O duration.
pub const GUEST_INIT: &str = r#"
read -r up _ < /proc/uptime
echo "BENCH-GUEST: init $up"
/bin/boot-timer
for d in vda vdb; do
    for mode in randread randwrite; do
        v=$(/bin/guest-io $mode /dev/$d @SECONDS@ 4 | cut -d' ' -f3)
        echo "BENCH-GUEST: $d-$mode ${v:-failed}"
    done
    v=$(/bin/guest-io seqread /dev/$d @SECONDS@ | cut -d' ' -f3)
    echo "BENCH-GUEST: $d-seqread ${v:-failed}"
done
echo "BENCH-GUEST: idle"
sleep 4
poweroff -f
"#;

/// The L1 side. `@RUNS@` is the number of alternating rounds.
pub const PAYLOAD: &str = r#"
IRONVIRT_CMD="ironvirt-vmm --domain /lab/bench.xml"
QEMU_CMD="qemu-system-x86_64 -L $LAB_QEMU_DATA -bios $LAB_QEMU_BIOS -enable-kvm \
 -M microvm,x-option-roms=off,isa-serial=on,rtc=off -cpu host -m 256 -smp 2 -nographic -nodefaults \
 -serial stdio -kernel $LAB_L2_VMLINUX -initrd $LAB_L2_INITRD -append 'console=ttyS0 quiet panic=-1' -no-reboot \
 -drive id=d0,file=/tmp/disk.raw,format=raw,if=none,cache=writeback,aio=threads -device virtio-blk-device,drive=d0 \
 -drive id=d1,file=/tmp/disk.qcow2,format=qcow2,if=none,cache=writeback,aio=threads -device virtio-blk-device,drive=d1"

fresh_disks() {
    rm -f /tmp/disk.raw /tmp/disk.qcow2
    head -c 268435456 /dev/zero > /tmp/disk.raw
    cp /lab/empty.qcow2 /tmp/disk.qcow2
}

# RSS of the VMM that is not guest RAM: every mapping but the guest's memory (the one >= 200 MiB).
nonguest_rss() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / { big = 0 } /^Size:/ { if ($2 >= 204800) big = 1 } /^Rss:/ { if (!big) s += $2 } END { print s + 0 }' "/proc/$1/smaps"
}

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
        lab_marker "$vmm.$run.init-uptime" "$(tr -d '\r' < "$LAB_D/$name.out" | grep -m1 '^BENCH-GUEST: init ' | cut -d' ' -f3)"
    else
        # Say why in the log: the guest's last words and the VMM's stderr.
        tail -n 20 "$LAB_D/$name.out" | tr -d '\r' | sed "s/^/L2TAIL|$name| /"
        lab_vm_stderr "$name"
    fi
    if lab_vm_wait_for "$name" '^BENCH-GUEST: idle' 600; then
        sleep 2
        pid=$(cat "$LAB_D/$name.pid")
        lab_marker "$vmm.$run.rss-nonguest-kib" "$(nonguest_rss "$pid")"
        lab_marker "$vmm.$run.rss-total-kib" "$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)"
    fi
    for k in vda-randread vda-randwrite vda-seqread vdb-randread vdb-randwrite vdb-seqread; do
        lab_marker "$vmm.$run.$k" "$(tr -d '\r' < "$LAB_D/$name.out" | grep -m1 "^BENCH-GUEST: $k " | cut -d' ' -f3)"
    done
    lab_vm_wait_exit "$name" 60
    lab_marker "$vmm.$run.exit" "$LAB_VM_RC"
    t=$(grep -m1 'guest boot completed' "$LAB_D/$name.err" | sed 's/.*completed \([0-9.]*\) ms.*/\1/')
    [ -n "$t" ] && lab_marker "$vmm.$run.boot-timer-ms" "$t"
    [ "$LAB_VM_RC" = 0 ] || lab_vm_stderr "$name"
}

# startup VMM RUN: process start to the first KVM_RUN, from strace timestamps (the same tool for both VMMs).
startup() {
    vmm=$1 run=$2
    fresh_disks
    if [ "$vmm" = ironvirt ]; then cmd=$IRONVIRT_CMD; else cmd=$QEMU_CMD; fi
    rm -f /tmp/st.trace
    sh -c "exec strace -f -ttt -e trace=execve,ioctl -o /tmp/st.trace $cmd" < /dev/null > /dev/null 2>&1 &
    spid=$!
    i=0
    while [ $i -lt 300 ] && ! grep -q 'KVM_RUN' /tmp/st.trace 2> /dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -9 $spid 2> /dev/null
    pkill -9 -f 'ironvirt-vmm|qemu-system' 2> /dev/null
    wait $spid 2> /dev/null
    t0=$(awk '/execve\(/ { print $2; exit }' /tmp/st.trace)
    t1=$(awk '/KVM_RUN/ { print $2; exit }' /tmp/st.trace)
    [ -n "$t0" ] && [ -n "$t1" ] && lab_marker "$vmm.$run.startup-ms" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }')"
}

run=1
while [ $run -le @RUNS@ ]; do
    # Alternate who goes first, so neither VMM always gets the warmer L1.
    if [ $((run % 2)) = 1 ]; then order="ironvirt qemu"; else order="qemu ironvirt"; fi
    for vmm in $order; do startup "$vmm" "$run"; done
    for vmm in $order; do measure "$vmm" "$run"; done
    run=$((run + 1))
done
lab_marker bench-done 1
"#;

pub fn guest_init(io_seconds: u32) -> String {
    GUEST_INIT.replace("@SECONDS@", &io_seconds.to_string())
}

pub fn payload(runs: u32) -> String {
    PAYLOAD.replace("@RUNS@", &runs.to_string())
}

/// The ironvirt side of the comparison: the same kernel, initramfs, vCPUs, memory and disks as QEMU's command.
pub fn domain_xml(kernel: &str, initrd: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>bench</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='/tmp/disk.raw'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback'/>
      <source file='/tmp/disk.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='stdio'/>
  </devices>
</domain>
"
    )
}
