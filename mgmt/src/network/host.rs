//! What starting a virtual network does to the host (in the network namespace of the caller): the
//! bridge with its addresses, IP forwarding, and the firewall rules of the forward mode. Every step
//! has an undo that tolerates the step never having happened, so a failed start and a stop share
//! one teardown.
//!
//! Firewall rules live in one nftables table per network (`ip ironvirt_BRIDGE` and its `ip6` twin),
//! so removing a network's rules is deleting its tables, and nothing else on the host is touched.

use std::io::Write;
use std::process::{Command, Stdio};

use ironvirt_devices::net::netlink::{self, BridgeOptions};

use super::xml::{ForwardMode, IpDef, Network};
use super::NetworkError;

fn host_err(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Host(e.to_string())
}

/// Creates the bridge, gives it the network's addresses and brings it up.
pub fn create_bridge(net: &Network, bridge: &str) -> Result<(), NetworkError> {
    if netlink::exists(bridge) {
        return Err(NetworkError::Host(format!(
            "Network is already in use by interface {bridge}"
        )));
    }
    let opts = BridgeOptions {
        mac: net
            .mac
            .as_deref()
            .and_then(crate::launch::interfaces::parse_mac),
        mtu: net.mtu,
        stp: net.bridge.stp.unwrap_or(true),
        delay_secs: net.bridge.delay.unwrap_or(0),
    };
    netlink::create_bridge(bridge, &opts).map_err(host_err)?;
    for ip in &net.ips {
        netlink::add_address(bridge, ip.address, ip.prefix).map_err(host_err)?;
    }
    netlink::set_up(bridge, true).map_err(host_err)
}

pub fn delete_bridge(bridge: &str) {
    if netlink::exists(bridge) {
        // Best effort: a stop must remove whatever else it can.
        let _ = netlink::delete_link(bridge);
    }
}

/// Turns on IPv4 (and, with an IPv6 `<ip>`, IPv6) forwarding, as libvirt does for nat and route
/// networks. The sysctl belongs to the caller's network namespace.
pub fn enable_forwarding(net: &Network) -> Result<(), NetworkError> {
    let mut knobs = vec!["/proc/sys/net/ipv4/ip_forward"];
    if net.ips.iter().any(|i| !i.is_ipv4()) {
        knobs.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for k in knobs {
        std::fs::write(k, "1\n")
            .map_err(|e| NetworkError::Host(format!("cannot enable forwarding ({k}): {e}")))?;
    }
    Ok(())
}

fn table(family: &str, bridge: &str) -> String {
    format!("{family} ironvirt_{}", bridge.replace(['-', '.'], "_"))
}

/// The nftables ruleset of one address family for `net`, or `None` when the mode needs no rules.
pub fn ruleset(net: &Network, bridge: &str, v6: bool) -> Option<String> {
    let ips: Vec<&IpDef> = net.ips.iter().filter(|i| i.is_ipv4() != v6).collect();
    let mode = net.forward.mode;
    if !matches!(
        mode,
        ForwardMode::Nat | ForwardMode::Route | ForwardMode::None
    ) {
        return None;
    }
    if ips.is_empty() && mode != ForwardMode::None {
        return None;
    }
    let fam = if v6 { "ip6" } else { "ip" };
    let mut fwd = Vec::new();
    let mut post = Vec::new();
    let out_dev = net
        .forward
        .dev
        .as_deref()
        .map(|d| format!("oifname \"{d}\" "))
        .unwrap_or_default();
    let in_dev = net
        .forward
        .dev
        .as_deref()
        .map(|d| format!("iifname \"{d}\" "))
        .unwrap_or_default();
    match mode {
        ForwardMode::Nat | ForwardMode::Route => {
            for ip in &ips {
                let subnet = format!("{}/{}", ip.network(), ip.prefix);
                // Out: only from the network's own subnet.
                fwd.push(format!(
                    "iifname \"{bridge}\" {out_dev}{fam} saddr {subnet} accept"
                ));
                // In: for NAT only replies; a routed network is reachable from outside.
                if mode == ForwardMode::Nat {
                    fwd.push(format!(
                        "{in_dev}oifname \"{bridge}\" {fam} daddr {subnet} ct state related,established accept"
                    ));
                } else {
                    fwd.push(format!(
                        "{in_dev}oifname \"{bridge}\" {fam} daddr {subnet} accept"
                    ));
                }
                if mode == ForwardMode::Nat && !v6 {
                    // Multicast and broadcast stay local; everything else leaving the subnet is
                    // masqueraded (ports remapped into the unprivileged range, as libvirt does).
                    post.push(format!(
                        "{fam} saddr {subnet} {fam} daddr 224.0.0.0/24 return"
                    ));
                    post.push(format!(
                        "{fam} saddr {subnet} {fam} daddr 255.255.255.255 return"
                    ));
                    for proto in ["tcp", "udp"] {
                        post.push(format!(
                            "{out_dev}meta l4proto {proto} {fam} saddr {subnet} {fam} daddr != {subnet} masquerade to :1024-65535"
                        ));
                    }
                    post.push(format!(
                        "{out_dev}{fam} saddr {subnet} {fam} daddr != {subnet} masquerade"
                    ));
                }
            }
            fwd.push(format!("iifname \"{bridge}\" oifname \"{bridge}\" accept"));
            fwd.push(format!("iifname \"{bridge}\" reject"));
            fwd.push(format!("oifname \"{bridge}\" reject"));
        }
        _ => {
            // Isolated: guests talk to each other and to the host, never beyond.
            fwd.push(format!("iifname \"{bridge}\" oifname \"{bridge}\" accept"));
            fwd.push(format!("iifname \"{bridge}\" reject"));
            fwd.push(format!("oifname \"{bridge}\" reject"));
        }
    }
    let name = table(fam, bridge);
    let mut s = format!("table {name} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n");
    for r in &fwd {
        s.push_str(&format!("    {r}\n"));
    }
    s.push_str("  }\n");
    if !post.is_empty() {
        s.push_str(
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
        );
        for r in &post {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    Some(s)
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e} (install the nftables package)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Installs the network's firewall tables (replacing leftovers of an earlier run).
pub fn add_rules(net: &Network, bridge: &str) -> Result<(), NetworkError> {
    for v6 in [false, true] {
        let Some(rules) = ruleset(net, bridge, v6) else {
            continue;
        };
        let fam = if v6 { "ip6" } else { "ip" };
        let name = table(fam, bridge);
        // `add table` + `delete table` makes the delete succeed whether or not the table existed.
        let script = format!("add table {name}\ndelete table {name}\n{rules}");
        nft(&script).map_err(|e| {
            NetworkError::Host(format!(
                "cannot add the firewall rules of network '{}': {e}",
                net.name()
            ))
        })?;
    }
    Ok(())
}

/// Removes the network's firewall tables, if present.
pub fn remove_rules(bridge: &str) {
    for fam in ["ip", "ip6"] {
        let name = table(fam, bridge);
        let _ = nft(&format!("add table {name}\ndelete table {name}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rules_limited_to_the_subnet() {
        let net = Network::parse(
            "<network><name>n</name><forward mode='nat'/><bridge name='virbr9'/>\
             <ip address='192.168.50.1' prefix='24'/></network>",
        )
        .unwrap();
        let r = ruleset(&net, "virbr9", false).unwrap();
        assert!(r.starts_with("table ip ironvirt_virbr9 {"), "{r}");
        assert!(r.contains("iifname \"virbr9\" ip saddr 192.168.50.0/24 accept"));
        assert!(r.contains("ct state related,established accept"));
        assert!(r.contains("ip saddr 192.168.50.0/24 ip daddr != 192.168.50.0/24 masquerade"));
        assert!(ruleset(&net, "virbr9", true).is_none());
    }

    #[test]
    fn isolated_and_routed() {
        let iso =
            Network::parse("<network><name>n</name><ip address='10.0.0.1' prefix='24'/></network>")
                .unwrap();
        let r = ruleset(&iso, "br-x", false).unwrap();
        assert!(r.contains("iifname \"br-x\" reject") && !r.contains("masquerade"));
        assert!(r.contains("ip ironvirt_br_x"));
        let routed = Network::parse(
            "<network><name>n</name><forward mode='route' dev='eth1'/>\
             <ip address='10.0.0.1' prefix='24'/></network>",
        )
        .unwrap();
        let r = ruleset(&routed, "b", false).unwrap();
        assert!(r.contains("iifname \"b\" oifname \"eth1\" ip saddr 10.0.0.0/24 accept"));
        assert!(!r.contains("masquerade"));
        let open = Network::parse(
            "<network><name>n</name><forward mode='open'/><ip address='10.0.0.1' prefix='24'/></network>",
        )
        .unwrap();
        assert!(ruleset(&open, "b", false).is_none());
    }
}
