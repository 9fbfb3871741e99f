//! The libvirt network document (`<network>`): a typed view over the element tree, like
//! [`crate::xml::Domain`]. The tree is what gets written back, so everything the model does not know
//! (`<portgroup>`, `<bandwidth>`, `<virtualport>`, SRV/TXT records, metadata, …) survives
//! `net-dumpxml` unchanged; changes (generated UUID, bridge name and MAC, `net-update`) are made in
//! the tree and the model is parsed again from it.

use std::net::{IpAddr, Ipv4Addr};

use uuid::Uuid;

use crate::xml::tree::{self, Document, Element, XmlError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkXmlError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("XML error: unexpected root element <{0}>, expecting <network>")]
    WrongRoot(String),
    #[error("XML error: missing network name element")]
    MissingName,
    #[error("XML error: name {0} cannot contain '/'")]
    NameWithSlash(String),
    #[error("internal error: malformed uuid element")]
    MalformedUuid,
    #[error("XML error: unknown forwarding type '{0}'")]
    UnknownForwardMode(String),
    #[error("XML error: Invalid {what} '{value}' in network '{network}'")]
    BadAddress {
        what: &'static str,
        value: String,
        network: String,
    },
    #[error("XML error: Network '{0}' IP address cannot have both a prefix and a netmask")]
    PrefixAndNetmask(String),
    #[error("XML error: Invalid ip prefix '{value}' in network '{network}'")]
    BadPrefix { value: String, network: String },
    #[error("XML error: Invalid bridge stp value '{0}' (must be 'on' or 'off')")]
    BadStp(String),
    #[error("XML error: Invalid delay value in network '{0}'")]
    BadDelay(String),
    #[error("XML error: Malformed mtu size '{0}'")]
    BadMtu(String),
    #[error("XML error: Cannot parse MAC address '{mac}' in network '{network}'")]
    BadMac { mac: String, network: String },
    #[error("XML error: Missing 'start' or 'end' attribute in dhcp range for network '{0}'")]
    RangeMissing(String),
    #[error("unsupported configuration: range {start} - {end} is not entirely within network {net}/{prefix}")]
    RangeOutside {
        start: String,
        end: String,
        net: String,
        prefix: u8,
    },
    #[error("internal error: range {start} - {end} is reversed")]
    RangeReversed { start: String, end: String },
    #[error(
        "XML error: Static host definition in IPv4 network '{0}' must have mac or name attribute"
    )]
    HostNeedsMacOrName(String),
    #[error("XML error: Missing IP address in static host definition for network '{0}'")]
    HostNeedsIp(String),
    #[error("XML error: Missing IP address in network '{0}' DNS HOST record")]
    DnsHostNeedsIp(String),
    #[error("XML error: Invalid forwarder IP address '{addr}' in network '{network}'")]
    BadForwarder { addr: String, network: String },
    #[error("XML error: Invalid bootp file or server attribute in network '{0}'")]
    BadBootp(String),
}

/// `<forward mode=…>`; no `<forward>` at all is an isolated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// No `<forward>`: host-only.
    None,
    Nat,
    Route,
    Open,
    Bridge,
    Private,
    Vepa,
    Passthrough,
    Hostdev,
}

impl ForwardMode {
    pub fn parse(s: &str) -> Option<ForwardMode> {
        Some(match s {
            "nat" => ForwardMode::Nat,
            "route" => ForwardMode::Route,
            "open" => ForwardMode::Open,
            "bridge" => ForwardMode::Bridge,
            "private" => ForwardMode::Private,
            "vepa" => ForwardMode::Vepa,
            "passthrough" => ForwardMode::Passthrough,
            "hostdev" => ForwardMode::Hostdev,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ForwardMode::None => "none",
            ForwardMode::Nat => "nat",
            ForwardMode::Route => "route",
            ForwardMode::Open => "open",
            ForwardMode::Bridge => "bridge",
            ForwardMode::Private => "private",
            ForwardMode::Vepa => "vepa",
            ForwardMode::Passthrough => "passthrough",
            ForwardMode::Hostdev => "hostdev",
        }
    }

    /// Modes whose bridge the network driver creates and owns (libvirt's "virtual" networks).
    pub fn driver_bridge(&self) -> bool {
        matches!(
            self,
            ForwardMode::None | ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub mode: ForwardMode,
    /// `<forward dev=…>`: the only host interface traffic may leave by.
    pub dev: Option<String>,
    /// `<forward><interface dev=…>` entries (a pool of host NICs for bridge/macvtap modes).
    pub interfaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bridge {
    pub name: Option<String>,
    pub stp: Option<bool>,
    pub delay: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: IpAddr,
    pub end: IpAddr,
    /// `<lease expiry unit>` in seconds; `Some(0)` is "infinite".
    pub lease_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: Option<String>,
    /// DHCPv6 DUID.
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
    pub lease_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootp {
    pub file: String,
    pub server: Option<String>,
}

/// One `<ip>`: an address on the bridge, with optional DHCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDef {
    pub address: IpAddr,
    pub prefix: u8,
    pub ranges: Vec<DhcpRange>,
    pub hosts: Vec<DhcpHost>,
    pub bootp: Option<Bootp>,
    pub tftp_root: Option<String>,
    /// Whether the `<ip>` has a `<dhcp>` element at all.
    pub dhcp: bool,
}

impl IpDef {
    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }

    /// The network address (address with the host bits cleared).
    pub fn network(&self) -> IpAddr {
        mask(self.address, self.prefix)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.address.is_ipv4() && mask(a, self.prefix) == self.network()
    }

    /// The dotted netmask of an IPv4 address.
    pub fn netmask(&self) -> Option<Ipv4Addr> {
        self.is_ipv4()
            .then(|| Ipv4Addr::from(prefix_mask_v4(self.prefix)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    pub ip: IpAddr,
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsForwarder {
    pub addr: Option<IpAddr>,
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dns {
    /// `<dns enable='no'>` turns the DNS server off.
    pub enable: bool,
    pub forward_plain_names: Option<bool>,
    pub hosts: Vec<DnsHost>,
    pub forwarders: Vec<DnsForwarder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    doc: Document,
    name: String,
    uuid: Uuid,
    pub forward: Forward,
    pub bridge: Bridge,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// `<domain name=… localOnly=…>`.
    pub domain: Option<(String, bool)>,
    pub dns: Dns,
    pub ips: Vec<IpDef>,
}

impl Network {
    pub fn parse(xml: &str) -> Result<Network, NetworkXmlError> {
        Network::from_document(tree::parse(xml)?)
    }

    pub fn parse_bytes(bytes: &[u8]) -> Result<Network, NetworkXmlError> {
        Network::from_document(tree::parse_bytes(bytes)?)
    }

    pub fn from_document(mut doc: Document) -> Result<Network, NetworkXmlError> {
        let root = &doc.root;
        if root.name != "network" {
            return Err(NetworkXmlError::WrongRoot(root.name.clone()));
        }
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .ok_or(NetworkXmlError::MissingName)?;
        if name.contains('/') {
            return Err(NetworkXmlError::NameWithSlash(name));
        }
        let uuid = match root.child_text("uuid") {
            Some(t) => parse_uuid(&t)?,
            None => Uuid::new_v4(),
        };
        let forward = parse_forward(root)?;
        let bridge = parse_bridge(root, &name)?;
        let mac = match root.child("mac").and_then(|m| m.attr("address")) {
            Some(m) if crate::launch::interfaces::parse_mac(m).is_none() => {
                return Err(NetworkXmlError::BadMac {
                    mac: m.to_string(),
                    network: name,
                })
            }
            other => other.map(str::to_string),
        };
        let mtu = match root.child("mtu").and_then(|m| m.attr("size")) {
            Some(s) => Some(
                s.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|m| *m > 0)
                    .ok_or_else(|| NetworkXmlError::BadMtu(s.to_string()))?,
            ),
            None => None,
        };
        let domain = root.child("domain").and_then(|d| {
            d.attr("name")
                .map(|n| (n.to_string(), d.attr("localOnly") == Some("yes")))
        });
        let dns = parse_dns(root, &name)?;
        let ips = root
            .children_named("ip")
            .map(|ip| parse_ip(ip, &name))
            .collect::<Result<Vec<_>, _>>()?;
        write_uuid(&mut doc.root, uuid);
        Ok(Network {
            doc,
            name,
            uuid,
            forward,
            bridge,
            mac,
            mtu,
            domain,
            dns,
            ips,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    pub fn uuid_string(&self) -> String {
        self.uuid.hyphenated().to_string()
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn to_xml(&self) -> String {
        self.doc.to_xml()
    }

    /// The bridge guests' taps join: the driver's own for virtual networks, the host's for
    /// `forward mode='bridge'` with `<bridge name>`.
    pub fn bridge_name(&self) -> Option<&str> {
        self.bridge.name.as_deref()
    }

    /// The IPv4 `<ip>` that serves DHCP, if any (libvirt allows one per family).
    pub fn dhcp_ipv4(&self) -> Option<&IpDef> {
        self.ips
            .iter()
            .find(|ip| ip.is_ipv4() && (!ip.ranges.is_empty() || !ip.hosts.is_empty()))
    }

    /// Applies `edit` to the tree and parses the result again, so the model and the document
    /// never disagree.
    pub fn edit(
        &self,
        edit: impl FnOnce(&mut Element) -> Result<(), NetworkXmlError>,
    ) -> Result<Network, NetworkXmlError> {
        let mut doc = self.doc.clone();
        edit(&mut doc.root)?;
        Network::from_document(doc)
    }

    /// What libvirt's network driver fills in when it defines a virtual network: a bridge name
    /// (the first `virbrN` not in `taken`), STP on and no forward delay, and a MAC for the bridge.
    pub fn with_driver_defaults(&self, taken: &[String]) -> Result<Network, NetworkXmlError> {
        if !self.forward.mode.driver_bridge() {
            return Ok(self.clone());
        }
        let name_needed = self
            .bridge
            .name
            .as_deref()
            .is_none_or(|n| n.is_empty() || n.contains("%d"));
        let template = self
            .bridge
            .name
            .clone()
            .filter(|n| n.contains("%d"))
            .unwrap_or_else(|| "virbr%d".into());
        let mac_needed = self.mac.is_none();
        self.edit(|root| {
            if root.child("bridge").is_none() {
                root.insert_after(Element::new("bridge"), &["forward", "uuid", "name"]);
            }
            if let Some(b) = root.child_mut("bridge") {
                if name_needed {
                    let name = (0..)
                        .map(|i| template.replace("%d", &i.to_string()))
                        .find(|n| !taken.contains(n) && !ironvirt_devices::net::netlink::exists(n))
                        .unwrap_or_default();
                    b.set_attr("name", name);
                }
                if b.attr("stp").is_none() {
                    b.set_attr("stp", "on");
                }
                if b.attr("delay").is_none() {
                    b.set_attr("delay", "0");
                }
            }
            if mac_needed {
                let mut mac = Element::new("mac");
                mac.set_attr(
                    "address",
                    crate::launch::interfaces::format_mac(
                        &crate::launch::interfaces::generate_mac(),
                    ),
                );
                root.insert_after(mac, &["bridge", "forward", "uuid", "name"]);
            }
            Ok(())
        })
    }
}

fn parse_uuid(text: &str) -> Result<Uuid, NetworkXmlError> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NetworkXmlError::MalformedUuid);
    }
    Uuid::parse_str(&hex).map_err(|_| NetworkXmlError::MalformedUuid)
}

fn write_uuid(root: &mut Element, uuid: Uuid) {
    let text = uuid.hyphenated().to_string();
    match root.child_mut("uuid") {
        Some(el) => {
            if el.text() != text {
                el.set_text(text);
            }
        }
        None => root.insert_after(Element::with_text("uuid", text), &["name"]),
    }
}

fn parse_forward(root: &Element) -> Result<Forward, NetworkXmlError> {
    let Some(f) = root.child("forward") else {
        return Ok(Forward {
            mode: ForwardMode::None,
            dev: None,
            interfaces: Vec::new(),
        });
    };
    // libvirt: a <forward> without mode means NAT.
    let mode = match f.attr("mode") {
        None => ForwardMode::Nat,
        Some(m) => ForwardMode::parse(m)
            .ok_or_else(|| NetworkXmlError::UnknownForwardMode(m.to_string()))?,
    };
    let interfaces: Vec<String> = f
        .children_named("interface")
        .filter_map(|i| i.attr("dev").map(str::to_string))
        .collect();
    let dev = f
        .attr("dev")
        .map(str::to_string)
        .or_else(|| interfaces.first().cloned());
    Ok(Forward {
        mode,
        dev,
        interfaces,
    })
}

fn parse_bridge(root: &Element, network: &str) -> Result<Bridge, NetworkXmlError> {
    let Some(b) = root.child("bridge") else {
        return Ok(Bridge::default());
    };
    let stp = match b.attr("stp") {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(other) => return Err(NetworkXmlError::BadStp(other.to_string())),
    };
    let delay = match b.attr("delay") {
        None => None,
        Some(d) => Some(
            d.trim()
                .parse::<u32>()
                .map_err(|_| NetworkXmlError::BadDelay(network.to_string()))?,
        ),
    };
    Ok(Bridge {
        name: b.attr("name").map(str::to_string),
        stp,
        delay,
    })
}

fn parse_addr(text: &str, what: &'static str, network: &str) -> Result<IpAddr, NetworkXmlError> {
    text.trim()
        .parse::<IpAddr>()
        .map_err(|_| NetworkXmlError::BadAddress {
            what,
            value: text.to_string(),
            network: network.to_string(),
        })
}

fn prefix_mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn mask(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & prefix_mask_v4(prefix))),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// libvirt's default prefix for an IPv4 address given without netmask or prefix: its class.
fn class_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

fn lease_secs(el: &Element) -> Option<u64> {
    let lease = el.child("lease")?;
    let expiry: u64 = lease.attr("expiry")?.trim().parse().ok()?;
    let mult = match lease.attr("unit").unwrap_or("minutes") {
        "seconds" => 1,
        "hours" => 3600,
        _ => 60,
    };
    Some(expiry * mult)
}

fn parse_ip(ip: &Element, network: &str) -> Result<IpDef, NetworkXmlError> {
    let address = parse_addr(ip.attr("address").unwrap_or(""), "address", network)?;
    let prefix = match (ip.attr("prefix"), ip.attr("netmask")) {
        (Some(_), Some(_)) => return Err(NetworkXmlError::PrefixAndNetmask(network.to_string())),
        (Some(p), None) => {
            let max = if address.is_ipv4() { 32 } else { 128 };
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| NetworkXmlError::BadPrefix {
                    value: p.to_string(),
                    network: network.to_string(),
                })?
        }
        (None, Some(m)) => {
            let IpAddr::V4(m4) = parse_addr(m, "netmask", network)? else {
                return Err(NetworkXmlError::BadAddress {
                    what: "netmask",
                    value: m.to_string(),
                    network: network.to_string(),
                });
            };
            let bits = u32::from(m4);
            let ones = bits.leading_ones();
            if bits.checked_shl(ones).unwrap_or(0) != 0 {
                return Err(NetworkXmlError::BadAddress {
                    what: "netmask",
                    value: m.to_string(),
                    network: network.to_string(),
                });
            }
            ones as u8
        }
        (None, None) => match address {
            IpAddr::V4(a) => class_prefix(a),
            IpAddr::V6(_) => 64,
        },
    };
    let mut def = IpDef {
        address,
        prefix,
        ranges: Vec::new(),
        hosts: Vec::new(),
        bootp: None,
        tftp_root: ip
            .child("tftp")
            .and_then(|t| t.attr("root"))
            .map(str::to_string),
        dhcp: false,
    };
    let Some(dhcp) = ip.child("dhcp") else {
        return Ok(def);
    };
    def.dhcp = true;
    for r in dhcp.children_named("range") {
        let (Some(s), Some(e)) = (r.attr("start"), r.attr("end")) else {
            return Err(NetworkXmlError::RangeMissing(network.to_string()));
        };
        let start = parse_addr(s, "dhcp range 'start' address", network)?;
        let end = parse_addr(e, "dhcp range 'end' address", network)?;
        if !def.contains(start) || !def.contains(end) {
            return Err(NetworkXmlError::RangeOutside {
                start: s.to_string(),
                end: e.to_string(),
                net: def.address.to_string(),
                prefix,
            });
        }
        if start > end {
            return Err(NetworkXmlError::RangeReversed {
                start: s.to_string(),
                end: e.to_string(),
            });
        }
        def.ranges.push(DhcpRange {
            start,
            end,
            lease_secs: lease_secs(r),
        });
    }
    for h in dhcp.children_named("host") {
        let mac = h.attr("mac").map(str::to_string);
        if let Some(m) = &mac {
            if crate::launch::interfaces::parse_mac(m).is_none() {
                return Err(NetworkXmlError::BadMac {
                    mac: m.clone(),
                    network: network.to_string(),
                });
            }
        }
        let name = h.attr("name").map(str::to_string);
        if address.is_ipv4() && mac.is_none() && name.is_none() {
            return Err(NetworkXmlError::HostNeedsMacOrName(network.to_string()));
        }
        let ip = h
            .attr("ip")
            .map(|a| parse_addr(a, "host IP address", network))
            .transpose()?;
        def.hosts.push(DhcpHost {
            mac,
            id: h.attr("id").map(str::to_string),
            name,
            ip,
            lease_secs: lease_secs(h),
        });
    }
    if let Some(b) = dhcp.child("bootp") {
        let file = b
            .attr("file")
            .ok_or_else(|| NetworkXmlError::BadBootp(network.to_string()))?;
        def.bootp = Some(Bootp {
            file: file.to_string(),
            server: b.attr("server").map(str::to_string),
        });
    }
    Ok(def)
}

fn parse_dns(root: &Element, network: &str) -> Result<Dns, NetworkXmlError> {
    let Some(d) = root.child("dns") else {
        return Ok(Dns {
            enable: true,
            ..Dns::default()
        });
    };
    let mut dns = Dns {
        enable: d.attr("enable") != Some("no"),
        forward_plain_names: d.attr("forwardPlainNames").map(|v| v == "yes"),
        ..Dns::default()
    };
    for h in d.children_named("host") {
        let ip = h
            .attr("ip")
            .ok_or_else(|| NetworkXmlError::DnsHostNeedsIp(network.to_string()))?;
        dns.hosts.push(DnsHost {
            ip: parse_addr(ip, "DNS host IP address", network)?,
            hostnames: h
                .children_named("hostname")
                .map(|n| n.text().trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
        });
    }
    for f in d.children_named("forwarder") {
        let addr = match f.attr("addr") {
            Some(a) => {
                Some(
                    a.trim()
                        .parse::<IpAddr>()
                        .map_err(|_| NetworkXmlError::BadForwarder {
                            addr: a.to_string(),
                            network: network.to_string(),
                        })?,
                )
            }
            None => None,
        };
        dns.forwarders.push(DnsForwarder {
            addr,
            domain: f.attr("domain").map(str::to_string),
        });
    }
    Ok(dns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAT: &str = "<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
      <host mac='52:54:00:00:00:01' name='a' ip='192.168.122.10'/>
      <bootp file='pxe.img' server='192.168.122.1'/>
    </dhcp>
  </ip>
  <portgroup name='x'/>
</network>";

    #[test]
    fn nat_network() {
        let n = Network::parse(NAT).unwrap();
        assert_eq!(n.name(), "default");
        assert_eq!(n.forward.mode, ForwardMode::Nat);
        assert_eq!(n.bridge_name(), Some("virbr0"));
        let ip = &n.ips[0];
        assert_eq!(ip.prefix, 24);
        assert_eq!(ip.network().to_string(), "192.168.122.0");
        assert_eq!(ip.netmask(), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(ip.ranges.len(), 1);
        assert_eq!(ip.hosts[0].ip.unwrap().to_string(), "192.168.122.10");
        assert_eq!(ip.bootp.as_ref().unwrap().file, "pxe.img");
        // Unknown elements and the generated uuid are kept in the document.
        let xml = n.to_xml();
        assert!(xml.contains("<portgroup name='x'/>"));
        assert!(xml.contains(&format!("<uuid>{}</uuid>", n.uuid_string())));
        assert_eq!(Network::parse(&xml).unwrap().uuid(), n.uuid());
    }

    #[test]
    fn refusals_name_the_fault() {
        let e =
            Network::parse("<network><name>x</name><forward mode='nope'/></network>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: unknown forwarding type 'nope'");
        let e = Network::parse(
            "<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp>\
             <range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip></network>",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not entirely within"), "{e}");
        assert!(matches!(
            Network::parse("<network/>"),
            Err(NetworkXmlError::MissingName)
        ));
        assert!(matches!(
            Network::parse("<domain/>"),
            Err(NetworkXmlError::WrongRoot(_))
        ));
    }

    #[test]
    fn driver_defaults_fill_bridge_and_mac() {
        let n = Network::parse(
            "<network><name>iso</name><ip address='10.9.0.1' prefix='24'/></network>",
        )
        .unwrap();
        assert_eq!(n.forward.mode, ForwardMode::None);
        assert_eq!(n.ips[0].prefix, 24);
        let d = n
            .with_driver_defaults(&["virbr0".into(), "virbr1".into()])
            .unwrap();
        let b = d.bridge_name().unwrap();
        assert!(
            b.starts_with("virbr") && b != "virbr0" && b != "virbr1",
            "{b}"
        );
        assert_eq!(d.bridge.stp, Some(true));
        assert!(d.mac.as_deref().unwrap().starts_with("52:54:00:"));
        // A host bridge network is left alone.
        let h = Network::parse(
            "<network><name>h</name><forward mode='bridge'/><bridge name='br0'/></network>",
        )
        .unwrap();
        assert_eq!(h.with_driver_defaults(&[]).unwrap(), h);
    }

    #[test]
    fn class_default_prefix() {
        let n =
            Network::parse("<network><name>x</name><ip address='10.24.10.1'/></network>").unwrap();
        assert_eq!(n.ips[0].prefix, 8);
    }
}
