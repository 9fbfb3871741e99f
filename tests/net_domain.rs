//! Domain interfaces through the `ironvirt` CLI with a tiny guest on this machine's `/dev/kvm`, all in
//! a private network namespace: `<interface type='network'>` needs an active network and then joins
//! its bridge; the MAC generated at define is kept; domiflist/domif-getlink/domif-setlink/domifstat
//! work on the running VM; attach-interface/detach-interface change the persistent definition, and
//! refuse `--live` until hotplug exists.

mod cli;
mod support;

use std::process::Command;

use cli::*;

/// A namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("ivdom-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test needs root to create a network namespace"
        );
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill has no memory-safety preconditions; the pids are in our namespace.
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

/// `ironvirt ARGS` inside the namespace, with the host's hermetic store.
fn iv(host: &Host, ns: &Netns, args: &[&str]) -> Run {
    let c = host.command();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0]).arg(c.get_program());
    cmd.args(args);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const NET: &str = "<network><name>lan</name><bridge name='ivbr-lan'/>\
    <ip address='10.95.0.1' prefix='24'/></network>";

#[test]
fn interfaces_on_a_network_through_the_cli() {
    let host = Host::new("net-domain");
    let ns = Netns::new();
    let net = host.dir.join("lan.xml");
    std::fs::write(&net, NET).unwrap();
    iv(&host, &ns, &["net-define", net.to_str().unwrap()]).ok();

    let kernel = service_guest(&host.dir, "up");
    let xml = domain_xml("nic", &kernel, 1).replace(
        "  <devices>\n",
        "  <devices>\n    <interface type='network'>\n      <source network='lan'/>\n      \
         <model type='virtio'/>\n    </interface>\n",
    );
    let file = host.dir.join("nic.xml");
    std::fs::write(&file, xml).unwrap();
    iv(&host, &ns, &["define", file.to_str().unwrap()]).ok();
    // The MAC generated at define is in the definition from then on.
    let dumped = iv(&host, &ns, &["dumpxml", "nic"]).ok().stdout;
    let mac = dumped
        .split("<mac address='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a generated <mac>")
        .to_string();
    assert!(mac.starts_with("52:54:00:"), "{mac}");
    assert_eq!(iv(&host, &ns, &["dumpxml", "nic"]).ok().stdout, dumped);

    // The network must be active.
    let r = iv(&host, &ns, &["start", "nic"]).fails();
    assert_eq!(
        r.stderr,
        "error: Failed to start domain 'nic'\nerror: Requested operation is not valid: network 'lan' is not active\n"
    );
    iv(&host, &ns, &["net-start", "lan"]).ok();
    iv(&host, &ns, &["start", "nic"]).ok();

    // The guest's TAP is on the network's bridge.
    let list = iv(&host, &ns, &["domiflist", "nic"]).ok().stdout;
    let row = list.lines().nth(2).unwrap_or_default().to_string();
    let tap = row
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(tap.starts_with("vnet"), "{list}");
    assert_eq!(
        row.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["network", "lan", "virtio", mac.as_str()]
    );
    let master = Command::new("ip")
        .args(["netns", "exec", &ns.0, "cat"])
        .arg(format!("/sys/class/net/{tap}/master/uevent"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&master.stdout).contains("INTERFACE=ivbr-lan"),
        "{tap} is not on the bridge"
    );
    let live = iv(&host, &ns, &["dumpxml", "nic"]).ok().stdout;
    assert!(
        live.contains("<source network='lan' bridge='ivbr-lan'/>"),
        "{live}"
    );

    // Link state, live.
    assert_eq!(
        iv(&host, &ns, &["domif-getlink", "nic", &tap]).ok().stdout,
        format!("{tap} up\n\n")
    );
    assert_eq!(
        iv(&host, &ns, &["domif-setlink", "nic", &mac, "down"])
            .ok()
            .stdout,
        "Device updated successfully\n\n"
    );
    assert_eq!(
        iv(&host, &ns, &["domif-getlink", "nic", &mac]).ok().stdout,
        format!("{mac} down\n\n")
    );
    let r = iv(&host, &ns, &["domif-setlink", "nic", "vnet999", "up"]).fails();
    assert!(r.stderr.contains("vnet999"), "{}", r.stderr);

    // Counters, by TAP name or MAC.
    let stats = iv(&host, &ns, &["domifstat", "nic", &tap]).ok().stdout;
    let keys: Vec<&str> = stats
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        keys,
        [
            "rx_bytes",
            "rx_packets",
            "rx_errs",
            "rx_drop",
            "tx_bytes",
            "tx_packets",
            "tx_errs",
            "tx_drop"
        ]
    );
    assert!(stats.starts_with(&format!("{tap} rx_bytes ")), "{stats}");
    iv(&host, &ns, &["domifstat", "nic", &mac]).ok();

    // No leases on a network without DHCP: the table is empty.
    let addr = iv(&host, &ns, &["domifaddr", "nic"]).ok().stdout;
    assert_eq!(addr.lines().count(), 3, "{addr}");
    let r = iv(&host, &ns, &["domifaddr", "nic", "--source", "agent"]).fails();
    assert!(r.stderr.contains("Operation not supported"), "{}", r.stderr);

    // Hotplug is not there yet; the persistent definition can change.
    let r = iv(
        &host,
        &ns,
        &["attach-interface", "nic", "network", "lan", "--live"],
    )
    .fails();
    assert!(
        r.stderr.starts_with("error: Failed to attach interface\nerror: Operation not supported: live attach of device 'interface' is not supported"),
        "{}",
        r.stderr
    );
    assert_eq!(
        iv(
            &host,
            &ns,
            &[
                "attach-interface",
                "nic",
                "bridge",
                "ivbr-lan",
                "--mac",
                "52:54:00:aa:bb:01",
                "--config"
            ]
        )
        .ok()
        .stdout,
        "Interface attached successfully\n\n"
    );
    let inactive = iv(&host, &ns, &["domiflist", "nic", "--inactive"])
        .ok()
        .stdout;
    assert!(
        inactive.contains("bridge    ivbr-lan   virtio   52:54:00:aa:bb:01"),
        "{inactive}"
    );
    let r = iv(
        &host,
        &ns,
        &["detach-interface", "nic", "network", "--live"],
    )
    .fails();
    assert!(r.stderr.contains("live detach"), "{}", r.stderr);
    iv(
        &host,
        &ns,
        &[
            "detach-interface",
            "nic",
            "bridge",
            "--mac",
            "52:54:00:aa:bb:01",
            "--config",
        ],
    )
    .ok();
    let inactive = iv(&host, &ns, &["domiflist", "nic", "--inactive"])
        .ok()
        .stdout;
    assert!(!inactive.contains("52:54:00:aa:bb:01"), "{inactive}");

    iv(&host, &ns, &["destroy", "nic"]).ok();
    // The TAP went with the VM.
    let links = Command::new("ip")
        .args(["-n", &ns.0, "-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("vnet"));
    iv(&host, &ns, &["net-destroy", "lan"]).ok();
}
