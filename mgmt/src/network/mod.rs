//! The network driver: libvirt's virtual networks (NAT, routed, isolated, open), networks on an
//! existing host bridge, and macvtap networks, kept in the connection's store and run in the
//! caller's network namespace.
//!
//! Store layout (beside the domain store, never inside libvirt's):
//! - `networks/NAME.xml`: persistent definitions; `networks/autostart/NAME.xml` links;
//! - `run/…/network/NAME.xml`: the live definition of an active network (its presence is what
//!   "active" means), `NAME.pid` dnsmasq's pid, `NAME.lock` the per-network lock;
//! - `data/dnsmasq/`: dnsmasq's configuration and hosts files, and the lease files (`BRIDGE.leases`),
//!   which survive restarts of the network and go with `net-undefine`.
//!
//! Concurrency as for domains: one lock per network, plus the driver lock for operations that add
//! or remove networks (always taken after the network lock).

mod dnsmasq;
pub mod domain;
mod error;
mod host;
pub mod leases;
pub mod xml;

use std::path::{Path, PathBuf};

pub use error::NetworkError;
pub use leases::Lease;
pub use xml::{ForwardMode, Network, NetworkXmlError};

use crate::store::{ensure_dir, write_atomic, FileLock, Paths};
use crate::xml::tree::Element;
use dnsmasq::DnsmasqFiles;

/// One network as `net-list` and `net-info` see it.
#[derive(Debug, Clone)]
pub struct NetworkRecord {
    pub name: String,
    pub uuid: String,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
    /// The live definition while active, else the persistent one.
    pub def: Network,
    /// The persistent definition (`net-dumpxml --inactive`).
    pub config: Option<Network>,
}

impl NetworkRecord {
    pub fn inactive_def(&self) -> &Network {
        self.config.as_ref().unwrap_or(&self.def)
    }
}

/// `net-update` commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateCommand {
    AddLast,
    AddFirst,
    Delete,
    Modify,
}

impl UpdateCommand {
    pub fn parse(s: &str) -> Option<UpdateCommand> {
        Some(match s {
            "add" | "add-last" => UpdateCommand::AddLast,
            "add-first" => UpdateCommand::AddFirst,
            "delete" => UpdateCommand::Delete,
            "modify" => UpdateCommand::Modify,
            _ => return None,
        })
    }
}

/// Which definitions a `net-update` changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateScope {
    pub live: bool,
    pub config: bool,
}

/// The XML of the network libvirt ships as `default`.
const DEFAULT_NETWORK: &str = "<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";

/// The network store of one connection.
pub struct Networks {
    config: PathBuf,
    run: PathBuf,
    state: PathBuf,
}

impl Networks {
    /// Opens the store; the first time (no network directory yet) it defines the `default` network,
    /// as libvirt does on its first start. Nothing is started.
    pub fn open(paths: &Paths) -> Result<Networks, NetworkError> {
        let run = paths
            .run
            .parent()
            .map(|p| p.join("network"))
            .unwrap_or_else(|| paths.run.join("network"));
        let nets = Networks {
            config: paths.networks.clone(),
            run,
            state: paths.data.join("dnsmasq"),
        };
        let first_use = !nets.config.exists();
        for dir in [&nets.config, &nets.run] {
            ensure_dir(dir).map_err(NetworkError::io("cannot create directory", dir))?;
        }
        // dnsmasq reads its hosts files as an unprivileged user: like libvirt's
        // /var/lib/libvirt/dnsmasq, this directory is world-readable.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&nets.state)
                .map_err(NetworkError::io("cannot create directory", &nets.state))?;
        }
        if first_use {
            let def = Network::parse(DEFAULT_NETWORK)?.with_driver_defaults(&[])?;
            // The default network's bridge is virbr0 whatever exists on the host: it is only a
            // definition until someone starts it.
            let def = def.edit(|root| {
                if let Some(b) = root.child_mut("bridge") {
                    b.set_attr("name", "virbr0");
                }
                Ok(())
            })?;
            nets.write_config(&def)?;
        }
        Ok(nets)
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.config.join(format!("{name}.xml"))
    }

    fn autostart_path(&self, name: &str) -> PathBuf {
        self.config.join("autostart").join(format!("{name}.xml"))
    }

    fn status_path(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.xml"))
    }

    fn dnsmasq_files(&self, net: &Network) -> DnsmasqFiles {
        DnsmasqFiles::new(
            &self.state,
            &self.run,
            net.name(),
            net.bridge_name().unwrap_or(net.name()),
        )
    }

    fn lock(&self, name: &str) -> Result<FileLock, NetworkError> {
        let p = self.run.join(format!("{name}.lock"));
        FileLock::exclusive(&p).map_err(NetworkError::io("cannot lock", &p))
    }

    fn driver_lock(&self) -> Result<FileLock, NetworkError> {
        let p = self.run.join(".driver-lock");
        FileLock::exclusive(&p).map_err(NetworkError::io("cannot lock", &p))
    }

    fn read(path: &Path) -> Result<Option<Network>, NetworkError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(Network::parse_bytes(&b)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NetworkError::io("cannot read", path)(e)),
        }
    }

    fn write_config(&self, def: &Network) -> Result<(), NetworkError> {
        let p = self.config_path(def.name());
        write_atomic(&p, def.to_xml().as_bytes()).map_err(NetworkError::io("cannot write", &p))
    }

    fn write_status(&self, def: &Network) -> Result<(), NetworkError> {
        let p = self.status_path(def.name());
        write_atomic(&p, def.to_xml().as_bytes()).map_err(NetworkError::io("cannot write", &p))
    }

    fn record(&self, name: &str) -> Result<Option<NetworkRecord>, NetworkError> {
        let config = Self::read(&self.config_path(name))?;
        let live = Self::read(&self.status_path(name))?;
        let autostart = self.autostart_path(name).exists();
        Ok(match (live, config) {
            (Some(l), config) => Some(NetworkRecord {
                name: name.to_string(),
                uuid: l.uuid_string(),
                active: true,
                persistent: config.is_some(),
                autostart,
                def: l,
                config,
            }),
            (None, Some(c)) => Some(NetworkRecord {
                name: name.to_string(),
                uuid: c.uuid_string(),
                active: false,
                persistent: true,
                autostart,
                def: c.clone(),
                config: Some(c),
            }),
            (None, None) => None,
        })
    }

    fn names_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".xml")
                            .filter(|n| !n.is_empty() && !n.starts_with('.'))
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<NetworkRecord>, NetworkError> {
        let mut names = Self::names_in(&self.config);
        names.extend(Self::names_in(&self.run));
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for n in names {
            if let Some(r) = self.record(&n)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A network by UUID or name, as virsh looks them up.
    pub fn lookup(&self, key: &str) -> Result<NetworkRecord, NetworkError> {
        if let Ok(u) = uuid::Uuid::parse_str(key) {
            let want = u.hyphenated().to_string();
            if let Some(r) = self.list()?.into_iter().find(|r| r.uuid == want) {
                return Ok(r);
            }
        }
        if !key.is_empty() && !key.contains('/') {
            if let Some(r) = self.record(key)? {
                return Ok(r);
            }
        }
        Err(NetworkError::NoNetwork {
            by: "name",
            key: key.to_string(),
        })
    }

    /// Name and UUID belong together; a bridge belongs to one virtual network.
    fn check_unique(&self, def: &Network) -> Result<(), NetworkError> {
        for r in self.list()? {
            if r.name == def.name() && r.uuid != def.uuid_string() {
                return Err(NetworkError::NameTaken {
                    name: r.name,
                    uuid: r.uuid,
                });
            }
            if r.uuid == def.uuid_string() && r.name != def.name() {
                return Err(NetworkError::UuidTaken {
                    other: r.name,
                    uuid: r.uuid,
                });
            }
            if r.name != def.name() && def.forward.mode.driver_bridge() {
                let theirs = [Some(&r.def), r.config.as_ref()];
                if let Some(b) = def.bridge_name() {
                    if theirs
                        .iter()
                        .flatten()
                        .any(|n| n.forward.mode.driver_bridge() && n.bridge_name() == Some(b))
                    {
                        return Err(NetworkError::BridgeInUse(b.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Bridge names other virtual networks use (for picking a free `virbrN`).
    fn taken_bridges(&self, except: &str) -> Result<Vec<String>, NetworkError> {
        Ok(self
            .list()?
            .iter()
            .filter(|r| r.name != except)
            .flat_map(|r| [Some(r.def.clone()), r.config.clone()])
            .flatten()
            .filter_map(|n| n.bridge_name().map(str::to_string))
            .collect())
    }

    fn complete(&self, xml: &str) -> Result<Network, NetworkError> {
        let def = Network::parse(xml)?;
        let taken = self.taken_bridges(def.name())?;
        // A redefinition keeps the bridge name and MAC the driver gave the network before.
        let def = match self.record(def.name())?.and_then(|r| r.config) {
            Some(old) if old.uuid() == def.uuid() || !has_uuid(xml) => {
                let keep_bridge = def.bridge_name().is_none() && old.bridge_name().is_some();
                let keep_mac = def.mac.is_none() && old.mac.is_some();
                def.edit(|root| {
                    if !has_uuid(xml) {
                        set_child_text(root, "uuid", &old.uuid_string());
                    }
                    if keep_bridge {
                        let mut b = Element::new("bridge");
                        b.set_attr("name", old.bridge_name().unwrap_or_default());
                        if root.child("bridge").is_none() {
                            root.insert_after(b, &["forward", "uuid", "name"]);
                        } else if let Some(el) = root.child_mut("bridge") {
                            el.set_attr("name", old.bridge_name().unwrap_or_default());
                        }
                    }
                    if keep_mac {
                        let mut m = Element::new("mac");
                        m.set_attr("address", old.mac.clone().unwrap_or_default());
                        root.insert_after(m, &["bridge", "forward", "uuid", "name"]);
                    }
                    Ok(())
                })?
            }
            _ => def,
        };
        Ok(def.with_driver_defaults(&taken)?)
    }

    /// `net-define`: defines (or redefines) a persistent network.
    pub fn define(&self, xml: &str) -> Result<NetworkRecord, NetworkError> {
        let name = Network::parse(xml)?.name().to_string();
        let _l = self.lock(&name)?;
        let _g = self.driver_lock()?;
        let def = self.complete(xml)?;
        self.check_unique(&def)?;
        self.write_config(&def)?;
        self.record(&name)?.ok_or(NetworkError::NoNetwork {
            by: "name",
            key: name,
        })
    }

    /// `net-create`: starts a transient network from XML.
    pub fn create(&self, xml: &str) -> Result<NetworkRecord, NetworkError> {
        let name = Network::parse(xml)?.name().to_string();
        let _l = self.lock(&name)?;
        let def = {
            let _g = self.driver_lock()?;
            let def = self.complete(xml)?;
            self.check_unique(&def)?;
            def
        };
        if self.status_path(&name).exists() {
            return Err(NetworkError::AlreadyActive);
        }
        self.bring_up(&def)?;
        self.record(&name)?.ok_or(NetworkError::NoNetwork {
            by: "name",
            key: name,
        })
    }

    /// `net-start`.
    pub fn start(&self, key: &str) -> Result<NetworkRecord, NetworkError> {
        let r = self.lookup(key)?;
        let _l = self.lock(&r.name)?;
        if self.status_path(&r.name).exists() {
            return Err(NetworkError::AlreadyActive);
        }
        let def = Self::read(&self.config_path(&r.name))?.ok_or(NetworkError::NoNetwork {
            by: "name",
            key: r.name.clone(),
        })?;
        self.bring_up(&def)?;
        self.record(&r.name)?.ok_or(NetworkError::NoNetwork {
            by: "name",
            key: r.name,
        })
    }

    /// Sets the host up for `def` and records it as active; on failure undoes what it did.
    fn bring_up(&self, def: &Network) -> Result<(), NetworkError> {
        match def.forward.mode {
            m if m.driver_bridge() => {
                let bridge = def
                    .bridge_name()
                    .ok_or_else(|| NetworkError::Host("network has no bridge name".into()))?
                    .to_string();
                let result = (|| {
                    host::create_bridge(def, &bridge)?;
                    if matches!(m, ForwardMode::Nat | ForwardMode::Route) {
                        host::enable_forwarding(def)?;
                    }
                    host::add_rules(def, &bridge)?;
                    if dnsmasq::needed(def) {
                        dnsmasq::start(def, &self.dnsmasq_files(def), &bridge)?;
                    }
                    self.write_status(def)
                })();
                if result.is_err() {
                    self.tear_down(def);
                }
                result
            }
            ForwardMode::Bridge if def.bridge_name().is_some() => {
                // An existing host bridge: nothing of ours to set up, but it must exist.
                let b = def.bridge_name().unwrap_or_default();
                if !ironvirt_devices::net::netlink::exists(b) {
                    return Err(NetworkError::Host(format!(
                        "bridge '{b}' of network '{}' does not exist",
                        def.name()
                    )));
                }
                self.write_status(def)
            }
            ForwardMode::Bridge
            | ForwardMode::Private
            | ForwardMode::Vepa
            | ForwardMode::Passthrough => {
                if def.forward.dev.is_none() {
                    return Err(NetworkError::Unsupported(format!(
                        "network '{}' needs <forward dev=…> or <forward><interface dev=…>: a {} network hands out macvtap devices on a host interface",
                        def.name(),
                        def.forward.mode.as_str()
                    )));
                }
                self.write_status(def)
            }
            ForwardMode::Hostdev => Err(NetworkError::Unsupported(
                "forward mode 'hostdev' (PCI passthrough of virtual functions) is not supported"
                    .into(),
            )),
            _ => Err(NetworkError::Unsupported(format!(
                "forward mode '{}' is not supported",
                def.forward.mode.as_str()
            ))),
        }
    }

    /// Removes everything `def` added to the host (idempotent).
    fn tear_down(&self, def: &Network) {
        if def.forward.mode.driver_bridge() {
            let files = self.dnsmasq_files(def);
            dnsmasq::stop(&files);
            files.remove_runtime();
            if let Some(b) = def.bridge_name() {
                host::remove_rules(b);
                host::delete_bridge(b);
            }
        }
        let _ = std::fs::remove_file(self.status_path(def.name()));
    }

    /// `net-destroy`: stops the network; a transient one disappears, with its leases.
    pub fn destroy(&self, key: &str) -> Result<NetworkRecord, NetworkError> {
        let r = self.lookup(key)?;
        let _l = self.lock(&r.name)?;
        if !self.status_path(&r.name).exists() {
            return Err(NetworkError::NotActive(r.name));
        }
        self.tear_down(&r.def);
        if !r.persistent {
            self.remove_state(&r.def);
        }
        Ok(r)
    }

    fn remove_state(&self, def: &Network) {
        let files = self.dnsmasq_files(def);
        files.remove_runtime();
        let _ = std::fs::remove_file(&files.leases);
    }

    /// `net-undefine`: forgets the persistent definition; an active network goes on as a
    /// transient one.
    pub fn undefine(&self, key: &str) -> Result<NetworkRecord, NetworkError> {
        let r = self.lookup(key)?;
        let _l = self.lock(&r.name)?;
        let _g = self.driver_lock()?;
        if !r.persistent {
            return Err(NetworkError::UndefineTransient);
        }
        let _ = std::fs::remove_file(self.autostart_path(&r.name));
        let p = self.config_path(&r.name);
        std::fs::remove_file(&p).map_err(NetworkError::io("cannot remove", &p))?;
        if !r.active {
            self.remove_state(&r.def);
        }
        Ok(r)
    }

    /// `net-autostart [--disable]`.
    pub fn set_autostart(&self, key: &str, enable: bool) -> Result<NetworkRecord, NetworkError> {
        let r = self.lookup(key)?;
        let _l = self.lock(&r.name)?;
        if !r.persistent {
            return Err(NetworkError::AutostartTransient);
        }
        crate::store::set_autostart_link(
            &self.config_path(&r.name),
            &self.autostart_path(&r.name),
            enable,
        )
        .map_err(|e| NetworkError::io(e.what, &e.path)(e.source))?;
        Ok(r)
    }

    /// `net-edit` writes back through this: a redefinition of the same network.
    pub fn redefine(&self, key: &str, xml: &str) -> Result<NetworkRecord, NetworkError> {
        let r = self.lookup(key)?;
        let def = Network::parse(xml)?;
        if def.name() != r.name && def.uuid() == r.def.uuid() {
            return Err(NetworkError::Invalid(format!(
                "cannot rename network '{}' to '{}' by editing its XML",
                r.name,
                def.name()
            )));
        }
        self.define(xml)
    }

    /// `net-update SECTION=ip-dhcp-host`: adds, deletes or modifies a static DHCP host in the live
    /// and/or persistent definition; the running dnsmasq re-reads its hosts file.
    pub fn update_dhcp_host(
        &self,
        key: &str,
        command: UpdateCommand,
        parent_index: Option<usize>,
        host_xml: &str,
        scope: UpdateScope,
    ) -> Result<NetworkRecord, NetworkError> {
        let r = self.lookup(key)?;
        let _l = self.lock(&r.name)?;
        let host = crate::xml::tree::parse(host_xml)
            .map_err(|e| NetworkError::Xml(NetworkXmlError::Xml(e)))?
            .root;
        if host.name != "host" {
            return Err(NetworkError::Invalid(format!(
                "can't update 'ip-dhcp-host' section of network '{}': unexpected element <{}>, expecting <host>",
                r.name, host.name
            )));
        }
        let (live, config) = match (scope.live, scope.config) {
            (false, false) => (r.active, !r.active),
            other => other,
        };
        if live && !r.active {
            return Err(NetworkError::NotActive(r.name));
        }
        if config && !r.persistent {
            return Err(NetworkError::Invalid(
                "cannot change persistent config of a transient network".into(),
            ));
        }
        let apply = |net: &Network| -> Result<Network, NetworkError> {
            let mut result = Ok(());
            let updated = net.edit(|root| {
                result = edit_dhcp_host(root, net.name(), command, parent_index, &host);
                Ok(())
            })?;
            result.map(|()| updated)
        };
        if config {
            if let Some(c) = &r.config {
                let new = apply(c)?;
                self.write_config(&new)?;
            }
        }
        if live {
            let new = apply(&r.def)?;
            self.write_status(&new)?;
            if new.forward.mode.driver_bridge() && dnsmasq::needed(&new) {
                let files = self.dnsmasq_files(&new);
                dnsmasq::write_hosts(&new, &files)?;
                dnsmasq::reload(&files);
            }
        }
        self.record(&r.name)?.ok_or(NetworkError::NoNetwork {
            by: "name",
            key: r.name,
        })
    }

    /// `net-dhcp-leases`: the current leases of an active network, by MAC.
    pub fn leases(&self, key: &str, mac: Option<&str>) -> Result<Vec<Lease>, NetworkError> {
        let r = self.lookup(key)?;
        if !r.active {
            return Err(NetworkError::NotActive(r.name));
        }
        let mut leases = self.leases_of(&r.def);
        if let Some(m) = mac {
            let m = m.to_lowercase();
            leases.retain(|l| l.mac.as_deref() == Some(m.as_str()));
        }
        leases.sort_by(|a, b| a.mac.cmp(&b.mac).then(a.ip.cmp(&b.ip)));
        Ok(leases)
    }

    fn leases_of(&self, def: &Network) -> Vec<Lease> {
        let files = self.dnsmasq_files(def);
        let text = std::fs::read_to_string(&files.leases).unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        leases::parse(&text, def, now)
    }

    /// Starts every autostart network that is not active; one result per network.
    pub fn autostart_all(&self) -> Vec<(String, Result<(), NetworkError>)> {
        let mut names = Self::names_in(&self.config.join("autostart"));
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let result = match self.lookup(&n) {
                    Ok(r) if r.active => Ok(()),
                    Ok(_) => self.start(&n).map(|_| ()),
                    Err(e) => Err(e),
                };
                (n, result)
            })
            .collect()
    }
}

fn has_uuid(xml: &str) -> bool {
    crate::xml::tree::parse(xml)
        .map(|d| d.root.child("uuid").is_some())
        .unwrap_or(false)
}

fn set_child_text(root: &mut Element, name: &str, text: &str) {
    match root.child_mut(name) {
        Some(el) => el.set_text(text),
        None => root.insert_after(Element::with_text(name, text), &["name"]),
    }
}

/// The `<ip>` element a DHCP host goes to: `--parent-index`, else the first one of the host's
/// address family with `<dhcp>`, else the first of that family.
fn dhcp_ip_index(root: &Element, parent_index: Option<usize>, host: &Element) -> Option<usize> {
    let ips: Vec<&Element> = root.children_named("ip").collect();
    if let Some(i) = parent_index {
        return (i < ips.len()).then_some(i);
    }
    let v6 = host.attr("ip").is_some_and(|a| a.contains(':')) || host.attr("id").is_some();
    let family_ok = |e: &&Element| {
        let is_v6 =
            e.attr("family") == Some("ipv6") || e.attr("address").is_some_and(|a| a.contains(':'));
        is_v6 == v6
    };
    ips.iter()
        .position(|e| family_ok(e) && e.child("dhcp").is_some())
        .or_else(|| ips.iter().position(family_ok))
}

fn edit_dhcp_host(
    root: &mut Element,
    network: &str,
    command: UpdateCommand,
    parent_index: Option<usize>,
    host: &Element,
) -> Result<(), NetworkError> {
    let fail = |why: String| {
        NetworkError::Invalid(format!(
            "can't update 'ip-dhcp-host' section of network '{network}': {why}"
        ))
    };
    let index = dhcp_ip_index(root, parent_index, host)
        .ok_or_else(|| fail("no matching IP address in network".into()))?;
    let Some(ip) = root.elements_mut().filter(|e| e.name == "ip").nth(index) else {
        return Err(fail("no matching IP address in network".into()));
    };
    if ip.child("dhcp").is_none() {
        ip.children
            .push(crate::xml::tree::Node::Element(Element::new("dhcp")));
    }
    let Some(dhcp) = ip.child_mut("dhcp") else {
        return Err(fail("no <dhcp> element".into()));
    };
    let shown = crate::xml::tree::Document {
        prolog: Vec::new(),
        root: host.clone(),
        epilog: Vec::new(),
    }
    .to_xml();
    let shown = shown.trim_end();
    let same_key = |h: &Element| {
        let eq = |a: &str| match (h.attr(a), host.attr(a)) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        };
        eq("mac") || eq("id") || (host.attr("mac").is_none() && eq("name"))
    };
    let conflicts = |h: &Element| {
        let eq = |a: &str| match (h.attr(a), host.attr(a)) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        };
        eq("mac") || eq("id") || eq("name") || eq("ip")
    };
    let pos = dhcp.children.iter().position(
        |n| matches!(n, crate::xml::tree::Node::Element(e) if e.name == "host" && same_key(e)),
    );
    match command {
        UpdateCommand::AddFirst | UpdateCommand::AddLast => {
            if dhcp.children_named("host").any(conflicts) {
                return Err(NetworkError::Invalid(format!(
                    "there is an existing dhcp host entry in network '{network}' that matches \"{shown}\""
                )));
            }
            let node = crate::xml::tree::Node::Element(host.clone());
            if command == UpdateCommand::AddFirst {
                let first = dhcp
                    .children
                    .iter()
                    .position(|n| matches!(n, crate::xml::tree::Node::Element(e) if e.name == "host"))
                    .unwrap_or(dhcp.children.len());
                dhcp.children.insert(first, node);
            } else {
                // After the last range/host, before <bootp>.
                let at = dhcp
                    .children
                    .iter()
                    .rposition(|n| matches!(n, crate::xml::tree::Node::Element(e) if e.name == "host" || e.name == "range"))
                    .map_or(0, |p| p + 1);
                dhcp.children.insert(at, node);
            }
        }
        UpdateCommand::Delete => {
            let exact = dhcp.children.iter().position(|n| {
                matches!(n, crate::xml::tree::Node::Element(e) if e.name == "host"
                    && same_key(e)
                    && ["name", "ip"].iter().all(|a| host.attr(a).is_none() || e.attr(a) == host.attr(a)))
            });
            match exact {
                Some(p) => {
                    dhcp.children.remove(p);
                }
                None => {
                    return Err(NetworkError::Invalid(format!(
                        "couldn't locate a matching dhcp host entry in network '{network}'"
                    )))
                }
            }
        }
        UpdateCommand::Modify => match pos {
            Some(p) => dhcp.children[p] = crate::xml::tree::Node::Element(host.clone()),
            None => {
                return Err(NetworkError::Invalid(format!(
                    "couldn't locate an existing dhcp host entry with \"mac='{}'\" in network '{network}'",
                    host.attr("mac").or(host.attr("id")).unwrap_or_default()
                )))
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests;
