//! Virtual networks for real, without a VM, entirely inside network namespaces this test creates:
//! `srv` runs the networks (bridges, nftables, dnsmasq), `cli` holds veth "guests" plugged into the
//! networks' bridges, `wan` stands for the outside world behind the NAT network. Nothing is sent
//! outside these namespaces and nothing on the machine's own interfaces is touched.
//!
//! The `ironvirt` binary runs in `srv` through `ip netns exec`, with a private store (IRONVIRT_ROOT).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IRONVIRT: &str = env!("CARGO_BIN_EXE_ironvirt");

/// A namespace deleted on drop (which also ends every process still inside it: a dnsmasq left by a
/// failed assertion dies with its last interface gone and is killed below).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("ivnet-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            ns.exec(&["sysctl", "-qw", key]);
        }
        ns
    }

    fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["netns", "exec", &self.0];
        args.extend_from_slice(cmd);
        Command::new("ip").args(&args).output().expect("running ip")
    }

    #[track_caller]
    fn ok(&self, cmd: &[&str]) -> String {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} in {}: {}{}",
            self.0,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[track_caller]
    fn ip(&self, args: &[&str]) {
        let mut cmd = vec!["ip"];
        cmd.extend_from_slice(args);
        self.ok(&cmd);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes left in the namespace (a dnsmasq after a failed assertion) go first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill has no memory-safety preconditions; these pids are in our namespace.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[track_caller]
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ironvirt ARGS` in the server namespace with the test's own store.
struct Virsh<'a> {
    ns: &'a Netns,
    root: PathBuf,
}

impl Virsh<'_> {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let root = self.root.display().to_string();
        let mut cmd = vec![
            "env",
            "IRONVIRT_ROOT=",
            IRONVIRT,
            "-c",
            "ironvirt:///system",
        ];
        let root_arg = format!("IRONVIRT_ROOT={root}");
        cmd[1] = &root_arg;
        cmd.extend_from_slice(args);
        let out = self.ns.exec(&cmd);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "ironvirt {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        out
    }
}

fn tool_missing(t: &str) -> bool {
    !["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(t).exists())
}

/// A veth "guest" in `cli` whose other end joins `bridge` in `srv`.
fn plug(srv: &Netns, cli: &Netns, name: &str, bridge: &str, mac: &str) {
    let peer = format!("{name}p");
    cli.ip(&[
        "link", "add", name, "type", "veth", "peer", "name", &peer, "netns", &srv.0,
    ]);
    cli.ip(&["link", "set", name, "address", mac, "up"]);
    srv.ip(&["link", "set", &peer, "master", bridge, "up"]);
}

/// Runs busybox udhcpc on `iface` in `cli`; returns (address, router) it was given, and configures
/// the address (and default route, if any) on the interface.
fn dhcp(cli: &Netns, dir: &Path, iface: &str, hostname: &str) -> (String, Option<String>) {
    let script = dir.join(format!("udhcpc-{iface}.sh"));
    let result = dir.join(format!("lease-{iface}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in bound|renew)\n  ip addr add \"$ip/$mask\" dev \"$interface\"\n  \
             [ -n \"$router\" ] && ip route add default via \"$router\" dev \"$interface\"\n  \
             echo \"$ip ${{router:-none}}\" > {}\n;; esac\nexit 0\n",
            result.display()
        ),
    )
    .unwrap();
    run("chmod", &["+x", &script.display().to_string()]);
    let host_opt = format!("hostname:{hostname}");
    cli.ok(&[
        "busybox",
        "udhcpc",
        "-i",
        iface,
        "-n",
        "-q",
        "-f",
        "-t",
        "10",
        "-T",
        "1",
        "-x",
        &host_opt,
        "-s",
        &script.display().to_string(),
    ]);
    let text = std::fs::read_to_string(&result).expect("udhcpc ran its script");
    let mut it = text.split_whitespace();
    let ip = it.next().unwrap().to_string();
    let router = it.next().filter(|r| *r != "none").map(str::to_string);
    (ip, router)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const ISOLATED: &str = "<network>
  <name>iso</name>
  <bridge name='ivbr-iso'/>
  <domain name='iso.test'/>
  <dns>
    <host ip='10.91.0.77'><hostname>pudding</hostname></host>
  </dns>
  <ip address='10.91.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.91.0.100' end='10.91.0.120'/>
      <host mac='52:54:00:91:00:05' name='fixed' ip='10.91.0.5'/>
    </dhcp>
  </ip>
</network>
";

const NAT: &str = "<network>
  <name>natnet</name>
  <forward mode='nat'/>
  <bridge name='ivbr-nat'/>
  <ip address='10.92.0.1' prefix='24'>
    <dhcp>
      <range start='10.92.0.50' end='10.92.0.60'/>
    </dhcp>
  </ip>
</network>
";

#[test]
fn isolated_and_nat_networks_serve_dhcp_and_dns_inside_namespaces() {
    if tool_missing("dnsmasq") || tool_missing("nft") || tool_missing("busybox") {
        panic!("this test needs dnsmasq (dnsmasq-base), nft (nftables) and busybox: run scripts/install-deps.sh");
    }
    let started = Instant::now();
    let scratch =
        Scratch(std::env::temp_dir().join(format!("ironvirt-netns-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let srv = Netns::new("srv");
    let cli = Netns::new("cli");
    let wan = Netns::new("wan");
    let v = Virsh {
        ns: &srv,
        root: scratch.0.join("root"),
    };

    // A fresh store has the default network, defined and inactive (never started here).
    let list = v.ok(&["net-list", "--all"]);
    assert_eq!(
        list,
        " Name      State      Autostart   Persistent\n\
         ----------------------------------------------\n \
         default   inactive   no          yes\n\n"
    );

    // "Outside world": srv reaches wan over 203.0.113.0/24; wan has no route to the guests'
    // subnets, so only masqueraded traffic can get answers.
    srv.ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", &wan.0,
    ]);
    srv.ip(&["addr", "add", "203.0.113.1/24", "dev", "up0"]);
    srv.ip(&["link", "set", "up0", "up"]);
    wan.ip(&["addr", "add", "203.0.113.2/24", "dev", "wan0"]);
    wan.ip(&["link", "set", "wan0", "up"]);

    for (file, xml) in [("iso.xml", ISOLATED), ("nat.xml", NAT)] {
        let path = scratch.0.join(file);
        std::fs::write(&path, xml).unwrap();
        let out = v.ok(&["net-define", &path.display().to_string()]);
        assert!(out.starts_with("Network "), "{out}");
    }
    assert_eq!(v.ok(&["net-start", "iso"]), "Network iso started\n\n");
    assert_eq!(v.ok(&["net-start", "natnet"]), "Network natnet started\n\n");
    let (code, _, err) = v.run(&["net-start", "iso"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: Failed to start network iso\nerror: Requested operation is not valid: network is already active\n"
    );
    let info = v.ok(&["net-info", "natnet"]);
    assert!(
        info.contains("Active:         yes\n") && info.contains("Bridge:         ivbr-nat\n"),
        "{info}"
    );

    // What the networks did to srv.
    let addrs = srv.ok(&["ip", "-4", "addr", "show", "dev", "ivbr-iso"]);
    assert!(addrs.contains("10.91.0.1/24"), "{addrs}");
    assert_eq!(
        srv.ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    let rules = srv.ok(&["nft", "list", "table", "ip", "ironvirt_ivbr_nat"]);
    assert!(
        rules.contains("masquerade") && rules.contains("10.92.0.0/24"),
        "{rules}"
    );
    let rules = srv.ok(&["nft", "list", "table", "ip", "ironvirt_ivbr_iso"]);
    assert!(
        rules.contains("reject") && !rules.contains("masquerade"),
        "{rules}"
    );

    // Isolated network: a dynamic lease in the range, no default route, the <dns><host> name
    // resolves, and a static host gets its fixed address.
    plug(&srv, &cli, "g1", "ivbr-iso", "52:54:00:91:00:01");
    plug(&srv, &cli, "g2", "ivbr-iso", "52:54:00:91:00:05");
    let (ip1, router1) = dhcp(&cli, &scratch.0, "g1", "guest-one");
    let last: u8 = ip1.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip1.starts_with("10.91.0.") && (100..=120).contains(&last),
        "{ip1}"
    );
    assert_eq!(router1, None, "an isolated network offers no router");
    let (ip2, _) = dhcp(&cli, &scratch.0, "g2", "ignored");
    assert_eq!(ip2, "10.91.0.5", "the static <host> gets its fixed address");
    let answer = cli.ok(&["busybox", "nslookup", "-type=a", "pudding", "10.91.0.1"]);
    assert!(answer.contains("10.91.0.77"), "{answer}");
    // Guests on one network reach the host's end and each other.
    cli.ok(&["busybox", "ping", "-c1", "-W2", "-I", "g1", "10.91.0.1"]);

    let leases = v.ok(&["net-dhcp-leases", "iso"]);
    let lines: Vec<&str> = leases.lines().collect();
    assert!(
        lines[0].starts_with(" Expiry Time ") && lines[0].contains("Client ID or DUID"),
        "{leases}"
    );
    let row1 = lines
        .iter()
        .find(|l| l.contains("52:54:00:91:00:01"))
        .expect("lease of g1");
    assert!(
        row1.contains(&format!("{ip1}/24")) && row1.contains("ipv4") && row1.contains("guest-one"),
        "{leases}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("52:54:00:91:00:05") && l.contains("10.91.0.5/24")),
        "{leases}"
    );
    let one = v.ok(&["net-dhcp-leases", "iso", "--mac", "52:54:00:91:00:05"]);
    assert_eq!(
        one.lines().filter(|l| l.contains("52:54:00")).count(),
        1,
        "{one}"
    );

    // net-update --live adds a static host that the running dnsmasq serves at once.
    v.ok(&[
        "net-update",
        "iso",
        "add",
        "ip-dhcp-host",
        "<host mac='52:54:00:91:00:09' ip='10.91.0.9'/>",
        "--live",
        "--config",
    ]);
    plug(&srv, &cli, "g3", "ivbr-iso", "52:54:00:91:00:09");
    let (ip3, _) = dhcp(&cli, &scratch.0, "g3", "three");
    assert_eq!(ip3, "10.91.0.9");

    // The isolated network keeps its guests in, even when both sides have routes.
    cli.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "10.91.0.1",
        "dev",
        "g1",
    ]);
    wan.ip(&["route", "add", "10.91.0.0/24", "via", "203.0.113.1"]);
    let out = cli.exec(&["busybox", "ping", "-c1", "-W1", "-I", "g1", "203.0.113.2"]);
    assert!(
        !out.status.success(),
        "an isolated guest reached the outside"
    );
    cli.ip(&["route", "del", "203.0.113.0/24"]);

    // NAT network: a lease with the gateway as router, and the outside answers a masqueraded ping.
    plug(&srv, &cli, "n1", "ivbr-nat", "52:54:00:92:00:01");
    let (ipn, routern) = dhcp(&cli, &scratch.0, "n1", "natguest");
    assert!(ipn.starts_with("10.92.0."), "{ipn}");
    assert_eq!(routern.as_deref(), Some("10.92.0.1"));
    // wan has no route to 10.92.0.0/24: only a masqueraded ping can be answered.
    cli.ok(&["busybox", "ping", "-c1", "-W2", "-I", "n1", "203.0.113.2"]);

    // Stopping removes bridge, rules and dnsmasq; the leases stay for the next start.
    let bridges_before = srv.ok(&["ip", "-o", "link", "show", "type", "bridge"]);
    assert!(bridges_before.contains("ivbr-iso") && bridges_before.contains("ivbr-nat"));
    assert_eq!(v.ok(&["net-destroy", "iso"]), "Network iso destroyed\n\n");
    assert_eq!(
        v.ok(&["net-destroy", "natnet"]),
        "Network natnet destroyed\n\n"
    );
    let bridges = srv.ok(&["ip", "-o", "link", "show", "type", "bridge"]);
    assert!(!bridges.contains("ivbr-"), "{bridges}");
    let tables = srv.ok(&["nft", "list", "tables"]);
    assert!(!tables.contains("ironvirt_"), "{tables}");
    wait_for("dnsmasq to exit", Duration::from_secs(5), || {
        let pids = run("ip", &["netns", "pids", &srv.0]);
        pids.split_whitespace().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim() != "dnsmasq")
                .unwrap_or(true)
        })
    });
    let (code, _, err) = v.run(&["net-dhcp-leases", "iso"]);
    assert_eq!(code, 1);
    assert!(err.contains("network 'iso' is not active"), "{err}");
    v.ok(&["net-start", "iso"]);
    let again = v.ok(&["net-dhcp-leases", "iso"]);
    assert!(
        again.contains(&format!("{ip1}/24")),
        "leases survive a restart:\n{again}"
    );
    v.ok(&["net-destroy", "iso"]);

    // A transient network disappears when destroyed.
    let t = scratch.0.join("t.xml");
    std::fs::write(
        &t,
        "<network><name>tmp</name><bridge name='ivbr-tmp'/><ip address='10.93.0.1' prefix='24'/></network>",
    )
    .unwrap();
    assert!(v
        .ok(&["net-create", &t.display().to_string()])
        .starts_with("Network tmp created from "));
    let l = v.ok(&["net-list", "--transient", "--name"]);
    assert_eq!(l, "tmp\n\n");
    v.ok(&["net-destroy", "tmp"]);
    let (code, _, err) = v.run(&["net-info", "tmp"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: failed to get network 'tmp'\nerror: Network not found: no network with matching name 'tmp'\n"
    );
    eprintln!("namespace network test took {:?}", started.elapsed());
}
