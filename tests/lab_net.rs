//! Networking in the lab: inside L1 (never on this machine) the `default` NAT network is started with
//! `ironvirt net-start`, and a Debian guest defined with `<interface type='network'>` is started with
//! `ironvirt start`. The guest gets its address by DHCP (busybox udhcpc), pings its gateway, sees
//! carrier loss and return through `domif-setlink`, and runs iperf3 against L1 in both directions;
//! `domifaddr`, `net-dhcp-leases`, `domif-getlink` and `domifstat` are checked meanwhile. QEMU's
//! virtio-net (microvm, `-netdev tap` on the same bridge) runs the same guest in the same L1 boot as the
//! baseline for the iperf3 figures.

use std::path::PathBuf;
use std::time::Duration;

use ironvirt_lab::initramfs::{l1_paths, ExtraFile, L1Initramfs, L2Initramfs};
use ironvirt_lab::modules::ModuleIndex;
use ironvirt_lab::run::Echo;
use ironvirt_lab::tools;
use ironvirt_lab::Lab;

/// The guest: DHCP, then (only under ironvirt, told by `ivcarrier` on the command line) the carrier
/// check, then ping and iperf3 against the gateway. Results are `L2-GUEST: key value` lines.
const GUEST_INIT: &str = r#"
echo "L2-GUEST: init"
ip link set lo up
ip link set eth0 up
if grep -q ivquick /proc/cmdline; then
    echo "L2-GUEST: eth0 $(cat /sys/class/net/eth0/address)"
    echo "L2-GUEST: done"
    sleep 3
    poweroff -f
fi
if udhcpc -i eth0 -n -q -f -t 20 -T 2 -x hostname:labguest -s /etc/udhcpc.sh > /tmp/udhcpc.log 2>&1; then
    echo "L2-GUEST: ip $(cat /tmp/lease)"
else
    echo "L2-GUEST: ip none"
    cat /tmp/udhcpc.log
fi
gw=$(cut -d' ' -f2 /tmp/lease 2>/dev/null)
if grep -q ivcarrier /proc/cmdline; then
    want=0
    for i in $(seq 1 600); do
        c=$(cat /sys/class/net/eth0/carrier 2>/dev/null || echo 0)
        if [ "$c" = "$want" ]; then
            echo "L2-GUEST: carrier $c"
            [ "$want" = 1 ] && break
            want=1
        fi
        sleep 0.1
    done
fi
if ping -c 3 -W 3 "$gw" > /tmp/ping.log 2>&1; then
    echo "L2-GUEST: ping ok"
else
    echo "L2-GUEST: ping failed"
    cat /tmp/ping.log
fi
mbits() { grep receiver | tail -n1 | awk '{for (i = 1; i < NF; i++) if ($(i+1) == "Mbits/sec" || $(i+1) == "Gbits/sec" || $(i+1) == "Kbits/sec") { v = $i; if ($(i+1) == "Gbits/sec") v *= 1000; if ($(i+1) == "Kbits/sec") v /= 1000; print v } }'; }
echo "L2-GUEST: iperf-up $(iperf3 -c "$gw" -t 4 -f m 2>&1 | mbits)"
echo "L2-GUEST: iperf-down $(iperf3 -c "$gw" -t 4 -f m -R 2>&1 | mbits)"
echo "L2-GUEST: done"
sleep 4
poweroff -f
"#;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "$router" dev "$interface"
    echo "$ip $router" > /tmp/lease
    ;;
esac
exit 0
"#;

const PAYLOAD: &str = r#"
for m in nf_reject_ipv4 nft_reject nft_reject_ipv4; do
    insmod "/lab/mod/$m.ko" 2> /dev/null || lab_marker warn "insmod $m failed"
done
export IRONVIRT_ROOT=/tmp/iv
iv() { ironvirt -c ironvirt:///system "$@"; }
# The default network is defined on first use; starting it is safe here, inside the lab VM.
lab_marker net-list-fresh "$(iv net-list --all | grep default | tr -s ' ' | sed 's/^ //')"
iv net-start default > /tmp/net-start.log 2>&1
lab_marker net-start "$(head -n1 /tmp/net-start.log)"
sed 's/^/L1|net-start| /' /tmp/net-start.log
lab_marker bridge "$(ip -4 addr show dev virbr0 | grep -o 'inet [0-9./]*')"
lab_marker ip-forward "$(cat /proc/sys/net/ipv4/ip_forward)"
lab_marker nft-masquerade "$(nft list ruleset | grep -c masquerade)"
iperf3 -s -D -B 192.168.122.1 > /dev/null 2>&1

# ironvirt: domain on the default network.
iv define /lab/netguest.xml > /dev/null
T0=$(lab_now)
iv start netguest > /tmp/start.log 2>&1 || { lab_marker start-error "$(cat /tmp/start.log)"; }
lab_marker start "$(head -n1 /tmp/start.log)"
lab_marker domiflist "$(iv domiflist netguest | grep network | tr -s ' ' | sed 's/^ //')"
OUT=/tmp/lab/netguest.out
# Without a running guest there is nothing to wait for.
iv domstate netguest | grep -q running || OUT=/dev/null
wait_line() {
    [ "$OUT" = /dev/null ] && return 1
    _d=$(($(lab_secs) + $2))
    while ! tr -d '\r' < "$OUT" 2> /dev/null | grep -q "$1"; do
        [ "$(lab_secs)" -ge "$_d" ] && return 1
        sleep 0.2
    done
    return 0
}
field() { tr -d '\r' < "$OUT" | grep "^L2-GUEST: $1 " | tail -n1 | cut -d' ' -f3-; }
if wait_line '^L2-GUEST: ip ' 180; then
    lab_marker ivm.boot-to-ip "$(lab_elapsed "$T0" "$(lab_now)")"
    lab_marker ivm.ip "$(field ip)"
    lab_marker domifaddr "$(iv domifaddr netguest | grep ipv4 | tr -s ' ' | sed 's/^ //')"
    lab_marker dhcp-leases "$(iv net-dhcp-leases default | grep 52:54:00:00:00:10 | tr -s ' ' | sed 's/^ //')"
    lab_marker getlink-before "$(iv domif-getlink netguest 52:54:00:00:00:10 | head -n1)"
    lab_marker setlink-down "$(iv domif-setlink netguest 52:54:00:00:00:10 down | head -n1)"
    lab_marker getlink-down "$(iv domif-getlink netguest 52:54:00:00:00:10 | head -n1)"
    if wait_line '^L2-GUEST: carrier 0' 30; then lab_marker carrier-lost yes; fi
    iv domif-setlink netguest 52:54:00:00:00:10 up > /dev/null
    if wait_line '^L2-GUEST: carrier 1' 30; then lab_marker carrier-back yes; fi
    wait_line '^L2-GUEST: ping ' 60 && lab_marker ivm.ping "$(field ping)"
    if wait_line '^L2-GUEST: iperf-down ' 120; then
        lab_marker ivm.iperf-up "$(field iperf-up)"
        lab_marker ivm.iperf-down "$(field iperf-down)"
        iv domifstat netguest 52:54:00:00:00:10 > /tmp/ifstat 2>&1
        for k in rx_bytes rx_packets tx_bytes tx_packets; do
            lab_marker "domifstat.$k" "$(grep " $k " /tmp/ifstat | awk '{print $3}')"
        done
    fi
fi
wait_line '^L2-GUEST: done' 60
tr -d '\r' < "$OUT" 2> /dev/null | sed 's/^/L2|netguest| /'
for i in $(seq 1 50); do
    iv domstate netguest 2> /dev/null | grep -q 'shut off' && break
    sleep 0.2
done
lab_marker ivm.final-state "$(iv domstate netguest 2>&1 | head -n1)"
[ -s /tmp/iv/var/log/ironvirt/qemu/netguest.log ] && sed 's/^/L2ERR|netguest| /' /tmp/iv/var/log/ironvirt/qemu/netguest.log

# <interface type='direct'>: a macvtap device on a host interface (here the bridge, as the lab VM
# has no spare NIC), made by ironvirt-vmm for the guest and removed with it.
for m in macvlan tap macvtap; do
    insmod "/lab/mod/$m.ko" 2> /dev/null || lab_marker warn "insmod $m failed"
done
iv define /lab/directguest.xml > /dev/null
iv start directguest > /tmp/dstart.log 2>&1
lab_marker direct.start "$(head -n1 /tmp/dstart.log)"
sed 's/^/L1|direct-start| /' /tmp/dstart.log
lab_marker direct.link "$(cat /sys/class/net/macvtap0/address) $(ls /sys/class/net/macvtap0/macvtap) lower=$(ls -d /sys/class/net/macvtap0/lower_* | sed 's/.*lower_//')"
OUT=/tmp/lab/directguest.out
iv domstate directguest | grep -q running || OUT=/dev/null
wait_line '^L2-GUEST: done' 120 && lab_marker direct.eth0 "$(field eth0)"
for i in $(seq 1 50); do
    iv domstate directguest 2> /dev/null | grep -q 'shut off' && break
    sleep 0.2
done
lab_marker direct.state "$(iv domstate --reason directguest 2>&1 | head -n1)"
sleep 1
lab_marker direct.after "$(ls -d /sys/class/net/macvtap* 2> /dev/null | wc -l)"
sed 's/^/L2ERR|directguest| /' /tmp/iv/var/log/ironvirt/qemu/directguest.log 2> /dev/null

# The baseline: QEMU microvm with virtio-net on a tap in the same bridge.
lab_vm_start qemu qemu-system-x86_64 -L "$LAB_QEMU_DATA" -bios "$LAB_QEMU_BIOS" \
    -enable-kvm -M microvm,x-option-roms=off,isa-serial=on,rtc=off -cpu host -m 256 -smp 2 \
    -nographic -nodefaults -serial stdio -kernel "$LAB_L2_VMLINUX" -initrd "$LAB_L2_INITRD" \
    -netdev tap,id=n0,ifname=qvnet0,script=/lab/qemu-ifup,downscript=no \
    -device virtio-net-device,netdev=n0,mac=52:54:00:00:00:20 \
    -append "console=ttyS0 quiet panic=-1" -no-reboot
T0=$LAB_VM_T0
if lab_vm_wait_for qemu '^L2-GUEST: ip ' 180; then
    lab_marker qemu.boot-to-ip "$(lab_elapsed "$T0" "$LAB_WAIT_T")"
fi
if lab_vm_wait_for qemu '^L2-GUEST: done' 180; then
    for k in ip ping iperf-up iperf-down; do
        lab_marker "qemu.$k" "$(tr -d '\r' < "$LAB_D/qemu.out" | grep "^L2-GUEST: $k " | tail -n1 | cut -d' ' -f3-)"
    done
fi
lab_vm_wait_exit qemu 60
lab_marker qemu.exit "$LAB_VM_RC"
[ "$LAB_VM_RC" = 0 ] || lab_vm_stderr qemu
lab_marker qemu-lease "$(iv net-dhcp-leases default | grep -c 52:54:00:00:00:20)"

iv net-destroy default > /dev/null 2>&1
lab_marker bridge-after "$(ip link show virbr0 2>&1 | grep -c 'virbr0:')"
lab_marker nft-after "$(nft list tables | grep -c ironvirt)"
lab_marker dnsmasq-after "$(pidof dnsmasq | wc -w)"
"#;

const QEMU_IFUP: &str = "#!/bin/sh\nip link set \"$1\" master virbr0\nip link set \"$1\" up\n";

fn domain_xml() -> String {
    guest_xml(
        "netguest",
        "ivcarrier",
        "<interface type='network'>
      <mac address='52:54:00:00:00:10'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>",
    )
}

fn direct_xml() -> String {
    guest_xml(
        "directguest",
        "ivquick",
        "<interface type='direct'>
      <mac address='52:54:00:00:00:30'/>
      <source dev='virbr0' mode='bridge'/>
      <model type='virtio'/>
    </interface>",
    )
}

fn guest_xml(name: &str, flag: &str, interface: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 {flag}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    {interface}
    <serial type='file'>
      <source path='/tmp/lab/{name}.out'/>
    </serial>
  </devices>
</domain>
",
        kernel = l1_paths::VMLINUX,
        initrd = l1_paths::L2_INITRD,
    )
}

fn which(tool: &str) -> PathBuf {
    let package = match tool {
        "dnsmasq" => "dnsmasq-base",
        "nft" => "nftables",
        _ => "iperf3",
    };
    tools::which(tool, package)
        .unwrap_or_else(|e| panic!("{e} (scripts/install-deps.sh installs it)"))
}

#[test]
fn guest_on_the_default_nat_network() {
    let lab = Lab::prepare().expect("preparing the lab");
    let iperf3 = which("iperf3");
    let mut l2 = L2Initramfs::with_prelude(GUEST_INIT);
    l2.binaries.push((iperf3.clone(), "/usr/bin/iperf3".into()));
    l2.extra_files = vec![ExtraFile::text("/etc/udhcpc.sh", 0o755, UDHCPC_SCRIPT)];
    let l2 = lab
        .build_l2("lab_net", &l2)
        .expect("building the L2 initramfs");

    let mut l1 = L1Initramfs::new(PAYLOAD);
    l1.binaries = vec![
        (
            env!("CARGO_BIN_EXE_ironvirt-vmm").into(),
            "/bin/ironvirt-vmm".into(),
        ),
        (
            env!("CARGO_BIN_EXE_ironvirt").into(),
            "/bin/ironvirt".into(),
        ),
        (which("dnsmasq"), "/usr/sbin/dnsmasq".into()),
        (which("nft"), "/usr/sbin/nft".into()),
        (iperf3, "/usr/bin/iperf3".into()),
    ];
    l1.l2_initramfs = Some(l2);
    l1.include_qemu = true;
    l1.network_modules = true;
    let mods = ModuleIndex::load(&lab.artifacts.kernel.modules_dir).expect("modules.dep");
    l1.extra_files = vec![
        ExtraFile::text("/lab/netguest.xml", 0o644, domain_xml()),
        ExtraFile::text("/lab/directguest.xml", 0o644, direct_xml()),
        ExtraFile::text("/lab/qemu-ifup", 0o755, QEMU_IFUP),
        // dnsmasq switches to an unprivileged user, which it looks up by name.
        ExtraFile::text(
            "/etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ExtraFile::text("/etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"),
    ];
    for m in [
        "nf_reject_ipv4",
        "nft_reject",
        "nft_reject_ipv4",
        "macvlan",
        "tap",
        "macvtap",
    ] {
        l1.extra_files.push(ExtraFile::host(
            &format!("/lab/mod/{m}.ko"),
            0o644,
            mods.path_of(m).expect("lab kernel module"),
        ));
    }
    let echo = std::env::var_os("IRONVIRT_LAB_ECHO").is_some();
    let result = lab
        .run("lab_net", &l1, |cfg| {
            cfg.timeout = Duration::from_secs(600);
            cfg.echo = if echo { Echo::All } else { Echo::None };
        })
        .expect("running the lab");
    println!(
        "lab: L1 run {:.1} s, {} attempt(s){}; log {}",
        result.elapsed.as_secs_f64(),
        result.attempts,
        if result.retried.is_empty() {
            String::new()
        } else {
            format!(" (retried: {})", result.retried.join("; "))
        },
        result.log.display()
    );
    if let Some(reason) = &result.dead {
        panic!("L1 died: {reason}\n{}", result.transcript);
    }
    let m = &result.markers;
    let get = |k: &str| m.get(k).map(str::to_string).unwrap_or_default();
    let num = |k: &str| m.number(k).unwrap_or(0.0);
    let ctx = || result.transcript.clone();

    println!("\n  iperf3 over virtio-net in the lab (Mbit/s, TCG-nested: compare ratios only)");
    println!(
        "  {:<22} {:>12} {:>12} {:>8}",
        "direction", "ironvirt", "QEMU", "ratio"
    );
    for (label, key) in [
        ("guest -> host", "iperf-up"),
        ("host -> guest", "iperf-down"),
    ] {
        let (i, q) = (num(&format!("ivm.{key}")), num(&format!("qemu.{key}")));
        let ratio = if q > 0.0 { i / q } else { 0.0 };
        println!("  {label:<22} {i:>12.1} {q:>12.1} {ratio:>8.2}");
    }
    println!(
        "  boot to DHCP address: ironvirt {} s, QEMU {} s\n",
        get("ivm.boot-to-ip"),
        get("qemu.boot-to-ip")
    );

    assert_eq!(
        get("net-list-fresh"),
        "default inactive no yes",
        "{}",
        ctx()
    );
    assert_eq!(get("net-start"), "Network default started", "{}", ctx());
    assert_eq!(get("bridge"), "inet 192.168.122.1/24", "{}", ctx());
    assert_eq!(get("ip-forward"), "1");
    assert_ne!(get("nft-masquerade"), "0", "no masquerade rule\n{}", ctx());
    assert_eq!(get("start"), "Domain 'netguest' started", "{}", ctx());
    let ip = get("ivm.ip");
    assert!(
        ip.starts_with("192.168.122."),
        "guest got no DHCP address: '{ip}'\n{}",
        ctx()
    );
    let guest_ip = ip.split_whitespace().next().unwrap_or_default().to_string();
    assert!(
        ip.ends_with(" 192.168.122.1"),
        "router should be the gateway: {ip}"
    );
    assert!(
        get("domifaddr").contains(&format!("52:54:00:00:00:10 ipv4 {guest_ip}/24")),
        "domifaddr: {}\n{}",
        get("domifaddr"),
        ctx()
    );
    assert!(
        get("dhcp-leases").contains(&format!("ipv4 {guest_ip}/24 labguest")),
        "net-dhcp-leases: {}",
        get("dhcp-leases")
    );
    assert!(
        get("domiflist").contains("network default virtio 52:54:00:00:00:10"),
        "{}",
        get("domiflist")
    );
    assert_eq!(get("getlink-before"), "52:54:00:00:00:10 up");
    assert_eq!(get("setlink-down"), "Device updated successfully");
    assert_eq!(get("getlink-down"), "52:54:00:00:00:10 down");
    assert_eq!(
        get("carrier-lost"),
        "yes",
        "guest never saw carrier loss\n{}",
        ctx()
    );
    assert_eq!(
        get("carrier-back"),
        "yes",
        "guest never saw the carrier return\n{}",
        ctx()
    );
    assert_eq!(
        get("ivm.ping"),
        "ok",
        "guest could not ping its gateway\n{}",
        ctx()
    );
    assert!(
        num("ivm.iperf-up") > 0.0 && num("ivm.iperf-down") > 0.0,
        "iperf3 under ironvirt\n{}",
        ctx()
    );
    // iperf3 moved megabytes each way: the counters must show it.
    assert!(
        num("domifstat.rx_bytes") > 1e6 && num("domifstat.tx_bytes") > 1e6,
        "domifstat\n{}",
        ctx()
    );
    assert!(num("domifstat.rx_packets") > 100.0 && num("domifstat.tx_packets") > 100.0);
    assert!(
        get("ivm.final-state").contains("shut off"),
        "{}",
        get("ivm.final-state")
    );
    // A direct interface: a macvtap in bridge mode with the guest's MAC, gone with the guest.
    assert_eq!(
        get("direct.start"),
        "Domain 'directguest' started",
        "{}",
        ctx()
    );
    assert!(
        get("direct.link").starts_with("52:54:00:00:00:30 tap")
            && get("direct.link").ends_with("lower=virbr0"),
        "macvtap0: {}",
        get("direct.link")
    );
    assert_eq!(get("direct.eth0"), "52:54:00:00:00:30", "{}", ctx());
    assert_eq!(get("direct.after"), "0", "macvtap0 outlived its guest");
    // The baseline ran on the same network.
    assert_eq!(get("qemu.exit"), "0", "{}", ctx());
    assert!(get("qemu.ip").starts_with("192.168.122."), "{}", ctx());
    assert_eq!(get("qemu-lease"), "1");
    // net-destroy removed the bridge, the rules and dnsmasq.
    assert_eq!(get("bridge-after"), "0");
    assert_eq!(get("nft-after"), "0");
    assert_eq!(get("dnsmasq-after"), "0");
}
