//! Domain interfaces: attach-interface, detach-interface, domif-setlink, domif-getlink, domifaddr,
//! and the live figures behind domifstat and domiflist (asked of the running VMM over its control
//! socket: TAP names, link state, counters).

use std::time::Duration;

use ironvirt_vmm::control::{Client, Request, Value};

use super::cmd;
use super::domain::lookup;
use super::network::networks;
use crate::cli::spec::{data, flag, opt_data, string};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::driver::{DomainRecord, RunFiles};
use crate::launch::interfaces::{format_mac, generate_mac, parse_mac};
use crate::xml::tree::{Element, Node};
use crate::xml::Domain;

const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// One interface of a running VM, as its VMM reports it.
#[derive(Debug, Clone, Default)]
pub struct LiveIface {
    pub name: String,
    pub mac: String,
    pub up: bool,
    /// rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs, tx_drop.
    pub stats: [(&'static str, i64); 8],
}

const STAT_KEYS: [&str; 8] = [
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_drop",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_drop",
];

fn control(ctl: &mut Ctl, r: &DomainRecord) -> Result<Client, CmdError> {
    let paths = ctl.conn()?.paths().clone();
    Client::connect(
        &RunFiles::new(&paths.run, &r.name).control(),
        CONTROL_TIMEOUT,
    )
    .map_err(|e| CmdError::msg(format!("internal error: {e}")))
}

/// The interfaces of a running domain (empty for an inactive one).
pub fn live_interfaces(ctl: &mut Ctl, r: &DomainRecord) -> Result<Vec<LiveIface>, CmdError> {
    if !r.is_active() {
        return Ok(Vec::new());
    }
    let reply = control(ctl, r)?
        .call(&Request::QueryNet)
        .map_err(|e| CmdError::msg(format!("internal error: {e}")))?;
    let list = reply
        .get("interfaces")
        .and_then(Value::as_array)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    Ok(list
        .iter()
        .map(|v| {
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut stats = [("", 0i64); 8];
            for (slot, k) in stats.iter_mut().zip(STAT_KEYS) {
                *slot = (k, v.get(k).and_then(Value::as_i64).unwrap_or(0));
            }
            LiveIface {
                name: s("name"),
                mac: s("mac"),
                up: v.get("up").and_then(Value::as_bool).unwrap_or(true),
                stats,
            }
        })
        .collect())
}

/// `domifstat`: the counters of the interface named by TAP name or MAC.
pub fn ifstat_text(ctl: &mut Ctl, r: &DomainRecord, dev: &str) -> Result<String, CmdError> {
    let live = live_interfaces(ctl, r)?;
    let iface = live
        .iter()
        .find(|i| i.name == dev || i.mac.eq_ignore_ascii_case(dev))
        .ok_or_else(|| {
            CmdError::ctx(
                format!("Failed to get interface stats {} {dev}", r.name),
                format!("invalid argument: invalid path, '{dev}' is not a known interface"),
            )
        })?;
    let mut s = String::new();
    for (k, v) in iface.stats {
        s.push_str(&format!("{dev} {k} {v}\n"));
    }
    Ok(s)
}

fn mac_of(el: &Element) -> Option<String> {
    el.child("mac")
        .and_then(|m| m.attr("address"))
        .map(str::to_lowercase)
}

/// Finds the `<interface>` of `def` that `key` (target dev or MAC) names; live TAP names count too.
fn find_iface<'a>(def: &'a Domain, live: &[LiveIface], key: &str) -> Option<&'a Element> {
    let by_live = live
        .iter()
        .find(|i| i.name == key)
        .map(|i| i.mac.to_lowercase());
    def.devices().filter(|d| d.name == "interface").find(|d| {
        let mac = mac_of(d);
        d.child("target").and_then(|t| t.attr("dev")) == Some(key)
            || mac.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(key))
            || (by_live.is_some() && mac == by_live)
    })
}

pub const DOMIF_SETLINK: Command = cmd(
    "domif-setlink",
    Group::Monitor,
    "set link state of a virtual interface",
    "Set link state of a domain's virtual interface. This command wraps usage of update-device command.",
    &[
        data("domain", "domain name, id or uuid"),
        data("interface", "interface device (MAC Address)"),
        data("state", "new state of the device"),
        flag("persistent", "persist interface state"),
        flag("config", "affect next boot"),
    ],
    domif_setlink,
);

fn domif_setlink(ctl: &mut Ctl, a: &crate::cli::spec::Args) -> CmdResult {
    let r = lookup(ctl, a)?;
    let key = a.get("interface").unwrap_or_default().to_string();
    let state = a.get("state").unwrap_or_default();
    let up = match state {
        "up" => true,
        "down" => false,
        other => return Err(CmdError::msg(format!("invalid link state '{other}'"))),
    };
    let config = a.flag("config") || a.flag("persistent");
    if config {
        let def = r.inactive_def().clone();
        if find_iface(&def, &[], &key).is_none() {
            return Err(CmdError::msg(format!("interface ({key}) not found")));
        }
        let new = edit_interfaces(&def, |ifaces| {
            if let Some(i) = ifaces.iter_mut().find(|i| matches_key(i, &key)) {
                set_link_state(i, up);
            }
        })?;
        ctl.conn()?.redefine(&r.name, &new)?;
    }
    if !config || r.is_active() {
        if !r.is_active() {
            return Err(CmdError::ctx(
                "Failed to update interface link state",
                "Requested operation is not valid: domain is not running",
            ));
        }
        let live = live_interfaces(ctl, &r)?;
        let Some(target) = live
            .iter()
            .find(|i| i.name == key || i.mac.eq_ignore_ascii_case(&key))
            .map(|i| i.name.clone())
        else {
            return Err(CmdError::msg(format!("interface ({key}) not found")));
        };
        control(ctl, &r)?
            .call(&Request::SetLink { name: target, up })
            .map_err(|e| CmdError::ctx("Failed to update interface link state", e))?;
    }
    ctl.print_extra("Device updated successfully\n");
    Ok(())
}

fn matches_key(i: &Element, key: &str) -> bool {
    i.child("target").and_then(|t| t.attr("dev")) == Some(key)
        || mac_of(i).is_some_and(|m| m.eq_ignore_ascii_case(key))
}

fn set_link_state(i: &mut Element, up: bool) {
    let state = if up { "up" } else { "down" };
    match i.child_mut("link") {
        Some(l) => l.set_attr("state", state),
        None => {
            let mut l = Element::new("link");
            l.set_attr("state", state);
            i.children.push(Node::Element(l));
        }
    }
}

/// Applies `f` to the `<interface>` elements of a copy of `def`.
fn edit_interfaces(
    def: &Domain,
    f: impl FnOnce(&mut Vec<&mut Element>),
) -> Result<Domain, CmdError> {
    let mut doc = def.document().clone();
    if let Some(devices) = doc.root.child_mut("devices") {
        let mut ifaces: Vec<&mut Element> = devices
            .elements_mut()
            .filter(|d| d.name == "interface")
            .collect();
        f(&mut ifaces);
    }
    Domain::from_document(doc).map_err(|e| CmdError::msg(e.to_string()))
}

pub const DOMIF_GETLINK: Command = cmd(
    "domif-getlink",
    Group::Monitor,
    "get link state of a virtual interface",
    "Get link state of a domain's virtual interface.",
    &[
        data("domain", "domain name, id or uuid"),
        data("interface", "interface device (MAC Address)"),
        flag("config", "Get persistent interface state"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let key = a.get("interface").unwrap_or_default().to_string();
        let state = if r.is_active() && !a.flag("config") {
            let live = live_interfaces(ctl, &r)?;
            live.iter()
                .find(|i| i.name == key || i.mac.eq_ignore_ascii_case(&key))
                .map(|i| i.up)
                .ok_or_else(|| CmdError::msg(format!("Interface ({key}) not found.")))?
        } else {
            let def = r.inactive_def();
            let iface = find_iface(def, &[], &key)
                .ok_or_else(|| CmdError::msg(format!("Interface ({key}) not found.")))?;
            iface.child("link").and_then(|l| l.attr("state")) != Some("down")
        };
        ctl.print(&format!("{key} {}\n", if state { "up" } else { "down" }));
        Ok(())
    },
);

pub const DOMIFADDR: Command = cmd(
    "domifaddr",
    Group::Monitor,
    "Get network interfaces' addresses for a running domain",
    "Get network interfaces' addresses for a running domain",
    &[
        data("domain", "domain name, id or uuid"),
        opt_data("interface", "network interface name"),
        flag("full", "always display names and MACs of interfaces"),
        string("source", "address source: 'lease', 'agent', or 'arp'"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let fail = |e: &dyn std::fmt::Display| {
            CmdError::ctx("Failed to query for interfaces addresses", e)
        };
        match a.get("source").unwrap_or("lease") {
            "lease" => {}
            "agent" | "arp" => {
                return Err(fail(&format!(
                    "Operation not supported: address source '{}' is not supported: ironvirt has no guest agent channel and keeps no ARP table; use --source lease",
                    a.get("source").unwrap_or_default()
                )))
            }
            other => {
                return Err(CmdError::msg(format!(
                    "Invalid --source value '{other}'"
                )))
            }
        }
        if !r.is_active() {
            return Err(fail(
                &"Requested operation is not valid: domain is not running",
            ));
        }
        let live = live_interfaces(ctl, &r)?;
        let nets = networks(ctl)?;
        let full = a.flag("full");
        let want = a.get("interface");
        let mut out = format!(
            " {:<10} {:<20} {:<8}     {}\n{}{}\n",
            "Name",
            "MAC address",
            "Protocol",
            "Address",
            "-".repeat(49),
            "-".repeat(30)
        );
        if ctl.quiet {
            out.clear();
        }
        for iface in r.def.devices().filter(|d| d.name == "interface") {
            let Some(mac) = mac_of(iface) else { continue };
            let name = live
                .iter()
                .find(|l| l.mac.eq_ignore_ascii_case(&mac))
                .map(|l| l.name.clone())
                .or_else(|| {
                    iface
                        .child("target")
                        .and_then(|t| t.attr("dev"))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "-".into());
            if want.is_some_and(|w| w != name && !w.eq_ignore_ascii_case(&mac)) {
                continue;
            }
            let Some(network) = iface.child("source").and_then(|s| s.attr("network")) else {
                continue;
            };
            let Ok(leases) = nets.leases(network, Some(&mac)) else {
                continue;
            };
            for (j, l) in leases.iter().enumerate() {
                let proto = if l.ip.is_ipv4() { "ipv4" } else { "ipv6" };
                let addr = format!("{proto:<12} {}/{}", l.ip, l.prefix);
                if full || j == 0 {
                    out.push_str(&format!(" {name:<10} {mac:<17}    {addr}\n"));
                } else {
                    out.push_str(&format!(" {:<10} {:<17}    {addr}\n", "-", "-"));
                }
            }
        }
        ctl.print(&out);
        Ok(())
    },
);

pub const ATTACH_INTERFACE: Command = cmd(
    "attach-interface",
    Group::Domain,
    "attach network interface",
    "Attach new network interface.",
    &[
        data("domain", "domain name, id or uuid"),
        data("type", "network interface type"),
        data("source", "source of network interface"),
        string("target", "target network name"),
        string("mac", "MAC address"),
        string("script", "script used to bridge network interface"),
        string("model", "model type"),
        string("alias", "custom alias name of interface device"),
        string("inbound", "control domain's incoming traffics"),
        string("outbound", "control domain's outgoing traffics"),
        flag("persistent", "make live change persistent"),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
        flag(
            "print-xml",
            "print XML document rather than attach the interface",
        ),
        flag(
            "managed",
            "libvirt will automatically detach/attach the device from/to host",
        ),
        string("source-mode", "mode attribute of <source/> element"),
    ],
    attach_interface,
);

/// Where changes go: (live, config), from --live/--config/--persistent/--current as virsh reads them.
fn affect(a: &crate::cli::spec::Args, active: bool) -> Result<(bool, bool), CmdError> {
    if a.flag("current") && (a.flag("live") || a.flag("config")) {
        return Err(CmdError::msg(
            "Options --current and --live are mutually exclusive",
        ));
    }
    let mut live = a.flag("live");
    let mut config = a.flag("config");
    if a.flag("persistent") {
        config = true;
        live |= active;
    }
    if !live && !config {
        live = active;
        config = !active;
    }
    Ok((live, config))
}

fn attach_interface(ctl: &mut Ctl, a: &crate::cli::spec::Args) -> CmdResult {
    let r = lookup(ctl, a)?;
    let kind = a.get("type").unwrap_or_default();
    let source = a.get("source").unwrap_or_default();
    let fail = |e: &dyn std::fmt::Display| CmdError::ctx("Failed to attach interface", e);
    let mut iface = Element::new("interface");
    iface.set_attr("type", kind);
    let mac = match a.get("mac") {
        Some(m) => {
            let parsed =
                parse_mac(m).ok_or_else(|| CmdError::msg(format!("Bad MAC address '{m}'")))?;
            format_mac(&parsed)
        }
        None => format_mac(&generate_mac()),
    };
    let mut src = Element::new("source");
    match kind {
        "network" => src.set_attr("network", source),
        "bridge" => src.set_attr("bridge", source),
        "direct" => {
            src.set_attr("dev", source);
            src.set_attr("mode", a.get("source-mode").unwrap_or("vepa"));
        }
        "ethernet" => {}
        other => {
            return Err(CmdError::msg(format!(
                "No support for {other} in command 'attach-interface'"
            )))
        }
    }
    let mut mac_el = Element::new("mac");
    mac_el.set_attr("address", mac);
    iface.children.push(Node::Element(mac_el));
    if kind != "ethernet" {
        iface.children.push(Node::Element(src));
    }
    if let Some(t) = a.get("target") {
        let mut el = Element::new("target");
        el.set_attr("dev", t);
        iface.children.push(Node::Element(el));
    }
    let mut model = Element::new("model");
    model.set_attr("type", a.get("model").unwrap_or("virtio"));
    iface.children.push(Node::Element(model));
    if let Some(alias) = a.get("alias") {
        let mut el = Element::new("alias");
        el.set_attr("name", alias);
        iface.children.push(Node::Element(el));
    }
    if a.flag("print-xml") {
        let xml = crate::xml::tree::Document {
            prolog: Vec::new(),
            root: iface,
            epilog: Vec::new(),
        }
        .to_xml();
        ctl.print(&xml);
        return Ok(());
    }
    let (live, config) = affect(a, r.is_active())?;
    if live {
        return Err(fail(
            &"Operation not supported: live attach of device 'interface' is not supported: ironvirt has no device hotplug yet (use --config and restart the domain)",
        ));
    }
    if config {
        if !r.persistent {
            return Err(fail(
                &"Requested operation is not valid: cannot change persistent config of a transient domain",
            ));
        }
        let mut doc = r.inactive_def().document().clone();
        if doc.root.child("devices").is_none() {
            doc.root
                .children
                .push(Node::Element(Element::new("devices")));
        }
        if let Some(devices) = doc.root.child_mut("devices") {
            devices.insert_after(
                iface,
                &["interface", "filesystem", "controller", "disk", "emulator"],
            );
        }
        let def = Domain::from_document(doc).map_err(|e| fail(&e))?;
        ctl.conn()?.redefine(&r.name, &def).map_err(|e| fail(&e))?;
    }
    ctl.print_extra("Interface attached successfully\n");
    Ok(())
}

pub const DETACH_INTERFACE: Command = cmd(
    "detach-interface",
    Group::Domain,
    "detach network interface",
    "Detach network interface.",
    &[
        data("domain", "domain name, id or uuid"),
        data("type", "network interface type"),
        string("mac", "MAC address"),
        flag("persistent", "make live change persistent"),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let kind = a.get("type").unwrap_or_default().to_string();
        let mac = a.get("mac").map(str::to_lowercase);
        let fail = |e: &dyn std::fmt::Display| CmdError::ctx("Failed to detach interface", e);
        let (live, config) = affect(a, r.is_active())?;
        let def = if config {
            r.inactive_def().clone()
        } else {
            r.def.clone()
        };
        let matching: Vec<usize> = def
            .devices()
            .filter(|d| d.name == "interface")
            .enumerate()
            .filter(|(_, d)| {
                d.attr("type") == Some(kind.as_str())
                    && mac
                        .as_deref()
                        .is_none_or(|m| mac_of(d).as_deref() == Some(m))
            })
            .map(|(i, _)| i)
            .collect();
        match (matching.len(), &mac) {
            (0, Some(m)) => {
                return Err(fail(&format!(
                    "No interface found whose type is {kind} and MAC address is {m}"
                )))
            }
            (0, None) => return Err(fail(&format!("No interface found whose type is {kind}"))),
            (n, None) if n > 1 => {
                return Err(fail(&format!(
                    "Domain has {n} interfaces. Please specify which one to detach using --mac"
                )))
            }
            _ => {}
        }
        if live {
            return Err(fail(
                &"Operation not supported: live detach of device 'interface' is not supported: ironvirt has no device hotplug yet (use --config and restart the domain)",
            ));
        }
        if !r.persistent {
            return Err(fail(
                &"Requested operation is not valid: cannot change persistent config of a transient domain",
            ));
        }
        let target = matching[0];
        let mut doc = def.document().clone();
        if let Some(devices) = doc.root.child_mut("devices") {
            let mut seen = 0usize;
            devices.children.retain(|n| match n {
                Node::Element(e) if e.name == "interface" => {
                    let keep = seen != target;
                    seen += 1;
                    keep
                }
                _ => true,
            });
        }
        let new = Domain::from_document(doc).map_err(|e| fail(&e))?;
        ctl.conn()?.redefine(&r.name, &new).map_err(|e| fail(&e))?;
        ctl.print_extra("Interface detached successfully\n");
        Ok(())
    },
);
