//! Networking: net-define, net-create, net-start, net-destroy, net-undefine, net-autostart,
//! net-list, net-info, net-dumpxml, net-edit, net-uuid, net-name, net-update, net-dhcp-leases.

use super::cmd;
use super::domain::read_file;
use crate::cli::format::{key_value, Table};
use crate::cli::spec::{data, flag, int, string, Args};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::network::{leases, NetworkError, NetworkRecord, Networks, UpdateCommand, UpdateScope};

/// The network store of the current connection.
pub(super) fn networks(ctl: &mut Ctl) -> Result<Networks, CmdError> {
    let paths = ctl.conn()?.paths().clone();
    Networks::open(&paths).map_err(|e| CmdError::msg(e.to_string()))
}

/// virsh's lookup: a failed one is "failed to get network", then libvirt's reason.
fn lookup(ctl: &mut Ctl, a: &Args) -> Result<(Networks, NetworkRecord), CmdError> {
    let key = a.get("network").unwrap_or_default().to_string();
    let nets = networks(ctl)?;
    match nets.lookup(&key) {
        Ok(r) => Ok((nets, r)),
        Err(e @ NetworkError::NoNetwork { .. }) => {
            Err(CmdError::ctx(format!("failed to get network '{key}'"), e))
        }
        Err(e) => Err(CmdError::msg(e.to_string())),
    }
}

/// `--validate`: libvirt's network schema through virt-xml-validate.
fn validate(file: &str, xml: &str) -> Result<(), String> {
    let tmp =
        std::env::temp_dir().join(format!("ironvirt-net-validate-{}.xml", std::process::id()));
    std::fs::write(&tmp, xml).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("virt-xml-validate")
        .arg(&tmp)
        .arg("network")
        .output();
    let _ = std::fs::remove_file(&tmp);
    match out {
        Err(e) => Err(format!("cannot run virt-xml-validate: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "XML document failed to validate against schema: Unable to validate doc against libvirt's network schema ({file})\n{}",
            String::from_utf8_lossy(&o.stderr).trim_end()
        )),
    }
}

const NETWORK: crate::cli::spec::Opt = data("network", "network name or uuid");

pub const NET_DEFINE: Command = cmd(
    "net-define",
    Group::Network,
    "define an inactive persistent virtual network or modify an existing persistent one from an XML file",
    "Define or modify a persistent virtual network.",
    &[
        data("file", "file containing an XML network description"),
        flag("validate", "validate the XML against the schema"),
    ],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default().to_string();
        let xml = read_file(&file)?;
        let fail = |e: &dyn std::fmt::Display| {
            CmdError::ctx(format!("Failed to define network from {file}"), e)
        };
        if a.flag("validate") {
            validate(&file, &xml).map_err(|e| fail(&e))?;
        }
        let r = networks(ctl)?.define(&xml).map_err(|e| fail(&e))?;
        ctl.print_extra(&format!("Network {} defined from {file}\n", r.name));
        Ok(())
    },
);

pub const NET_CREATE: Command = cmd(
    "net-create",
    Group::Network,
    "create a network from an XML file",
    "Create a network.",
    &[
        data("file", "file containing an XML network description"),
        flag("validate", "validate the XML against the schema"),
    ],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default().to_string();
        let xml = read_file(&file)?;
        let fail = |e: &dyn std::fmt::Display| {
            CmdError::ctx(format!("Failed to create network from {file}"), e)
        };
        if a.flag("validate") {
            validate(&file, &xml).map_err(|e| fail(&e))?;
        }
        let r = networks(ctl)?.create(&xml).map_err(|e| fail(&e))?;
        ctl.print_extra(&format!("Network {} created from {file}\n", r.name));
        Ok(())
    },
);

pub const NET_START: Command = cmd(
    "net-start",
    Group::Network,
    "start a (previously defined) inactive network",
    "Start a network.",
    &[NETWORK],
    |ctl, a| {
        let (nets, r) = lookup(ctl, a)?;
        nets.start(&r.name)
            .map_err(|e| CmdError::ctx(format!("Failed to start network {}", r.name), e))?;
        ctl.print_extra(&format!("Network {} started\n", r.name));
        Ok(())
    },
);

pub const NET_DESTROY: Command = cmd(
    "net-destroy",
    Group::Network,
    "destroy (stop) a network",
    "Forcefully stop a given network.",
    &[NETWORK],
    |ctl, a| {
        let (nets, r) = lookup(ctl, a)?;
        nets.destroy(&r.name)
            .map_err(|e| CmdError::ctx(format!("Failed to destroy network {}", r.name), e))?;
        ctl.print_extra(&format!("Network {} destroyed\n", r.name));
        Ok(())
    },
);

pub const NET_UNDEFINE: Command = cmd(
    "net-undefine",
    Group::Network,
    "undefine a persistent network",
    "Undefine the configuration for a persistent network.",
    &[NETWORK],
    |ctl, a| {
        let (nets, r) = lookup(ctl, a)?;
        nets.undefine(&r.name)
            .map_err(|e| CmdError::ctx(format!("Failed to undefine network {}", r.name), e))?;
        ctl.print_extra(&format!("Network {} has been undefined\n", r.name));
        Ok(())
    },
);

pub const NET_AUTOSTART: Command = cmd(
    "net-autostart",
    Group::Network,
    "autostart a network",
    "Configure a network to be automatically started at boot.",
    &[NETWORK, flag("disable", "disable autostarting")],
    |ctl, a| {
        let (nets, r) = lookup(ctl, a)?;
        let enable = !a.flag("disable");
        nets.set_autostart(&r.name, enable).map_err(|e| {
            let what = if enable {
                format!("failed to mark network {} as autostarted", r.name)
            } else {
                format!("failed to unmark network {} as autostarted", r.name)
            };
            CmdError::ctx(what, e)
        })?;
        let verb = if enable { "marked" } else { "unmarked" };
        ctl.print_extra(&format!("Network {} {verb} as autostarted\n", r.name));
        Ok(())
    },
);

pub const NET_LIST: Command = cmd(
    "net-list",
    Group::Network,
    "list networks",
    "Returns list of networks.",
    &[
        flag("inactive", "list inactive networks"),
        flag("all", "list inactive & active networks"),
        flag("persistent", "list persistent networks"),
        flag("transient", "list transient networks"),
        flag("autostart", "list networks with autostart enabled"),
        flag("no-autostart", "list networks with autostart disabled"),
        flag("uuid", "list uuid's only"),
        flag("name", "list network names only"),
        flag("table", "list table (default)"),
        flag("title", "show network title"),
    ],
    net_list,
);

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn net_list(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let all = a.flag("all");
    let inactive = a.flag("inactive");
    // Without --all/--inactive only active networks, as virsh.
    let state_ok = |r: &NetworkRecord| all || (inactive && !r.active) || (!inactive && r.active);
    let pers_ok = |r: &NetworkRecord| match (a.flag("persistent"), a.flag("transient")) {
        (true, false) => r.persistent,
        (false, true) => !r.persistent,
        _ => true,
    };
    let auto_ok = |r: &NetworkRecord| match (a.flag("autostart"), a.flag("no-autostart")) {
        (true, false) => r.autostart,
        (false, true) => !r.autostart,
        _ => true,
    };
    let nets = networks(ctl)?;
    let list = nets
        .list()
        .map_err(|e| CmdError::ctx("Failed to list networks", e))?;
    let shown: Vec<&NetworkRecord> = list
        .iter()
        .filter(|r| state_ok(r) && pers_ok(r) && auto_ok(r))
        .collect();
    if a.flag("name") || a.flag("uuid") {
        let mut s = String::new();
        for r in &shown {
            match (a.flag("uuid"), a.flag("name")) {
                (true, true) => s.push_str(&format!("{}  {}\n", r.uuid, r.name)),
                (true, false) => s.push_str(&format!("{}\n", r.uuid)),
                _ => s.push_str(&format!("{}\n", r.name)),
            }
        }
        ctl.print(&s);
        return Ok(());
    }
    let mut t = Table::new(&["Name", "State", "Autostart", "Persistent"]);
    for r in shown {
        t.row(vec![
            r.name.clone(),
            if r.active { "active" } else { "inactive" }.into(),
            yes_no(r.autostart),
            yes_no(r.persistent),
        ]);
    }
    let quiet = ctl.quiet;
    ctl.print(&t.render(quiet));
    Ok(())
}

pub const NET_INFO: Command = cmd(
    "net-info",
    Group::Network,
    "network information",
    "Returns basic information about the network",
    &[NETWORK],
    |ctl, a| {
        let (_, r) = lookup(ctl, a)?;
        let mut s = key_value("Name", &r.name, 15);
        s.push_str(&key_value("UUID", &r.uuid, 15));
        s.push_str(&key_value("Active", &yes_no(r.active), 15));
        s.push_str(&key_value("Persistent", &yes_no(r.persistent), 15));
        s.push_str(&key_value("Autostart", &yes_no(r.autostart), 15));
        if let Some(b) = r.def.bridge_name() {
            s.push_str(&key_value("Bridge", b, 15));
        }
        ctl.print(&s);
        Ok(())
    },
);

pub const NET_DUMPXML: Command = cmd(
    "net-dumpxml",
    Group::Network,
    "network information in XML",
    "Output the network information as an XML dump to stdout.",
    &[NETWORK, flag("inactive", "show inactive defined XML")],
    |ctl, a| {
        let (_, r) = lookup(ctl, a)?;
        let def = if a.flag("inactive") {
            r.inactive_def()
        } else {
            &r.def
        };
        ctl.print(&def.to_xml());
        Ok(())
    },
);

pub const NET_UUID: Command = cmd(
    "net-uuid",
    Group::Network,
    "convert a network name to network UUID",
    "Returns UUID of a network.",
    &[data("network", "network name")],
    |ctl, a| {
        let (_, r) = lookup(ctl, a)?;
        ctl.print(&format!("{}\n", r.uuid));
        Ok(())
    },
);

pub const NET_NAME: Command = cmd(
    "net-name",
    Group::Network,
    "convert a network UUID to network name",
    "Returns name of a network.",
    &[data("network", "network uuid")],
    |ctl, a| {
        let (_, r) = lookup(ctl, a)?;
        ctl.print(&format!("{}\n", r.name));
        Ok(())
    },
);

pub const NET_EDIT: Command = cmd(
    "net-edit",
    Group::Network,
    "edit XML configuration for a network",
    "Edit the XML configuration for a network.",
    &[NETWORK],
    |ctl, a| {
        let (nets, r) = lookup(ctl, a)?;
        let original = r.inactive_def().to_xml();
        let edited = super::editor::run_editor(&format!("net-{}", r.name), &original)?;
        if edited == original {
            ctl.print_extra(&format!(
                "Network {} XML configuration not changed.\n",
                r.name
            ));
            return Ok(());
        }
        let new = nets
            .redefine(&r.name, &edited)
            .map_err(|e| CmdError::msg(e.to_string()))?;
        ctl.print_extra(&format!("Network {} XML configuration edited.\n", new.name));
        Ok(())
    },
);

pub const NET_UPDATE: Command = cmd(
    "net-update",
    Group::Network,
    "update parts of an existing network's configuration",
    "Update part of an existing network's configuration.",
    &[
        NETWORK,
        data(
            "command",
            "type of update (add-first, add-last (add), delete, or modify)",
        ),
        data(
            "section",
            "which section of network configuration to update",
        ),
        data(
            "xml",
            "name of file containing xml (or, if it starts with '<', the complete text of the xml element to add/modify, or to be matched for search)",
        ),
        int(
            "parent-index",
            false,
            false,
            "which parent object to search through",
        ),
        flag("config", "affect next network startup"),
        flag("live", "affect running network"),
        flag("current", "affect current state of network"),
    ],
    net_update,
);

fn net_update(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let (nets, r) = lookup(ctl, a)?;
    let fail = |e: &dyn std::fmt::Display| {
        CmdError::ctx(format!("Failed to update network {}", r.name), e)
    };
    let command_text = a.get("command").unwrap_or_default();
    let command = UpdateCommand::parse(command_text)
        .ok_or_else(|| CmdError::msg(format!("unrecognized command name '{command_text}'")))?;
    let section = a.get("section").unwrap_or_default();
    const SECTIONS: &[&str] = &[
        "bridge",
        "domain",
        "ip",
        "ip-dhcp-host",
        "ip-dhcp-range",
        "forward",
        "forward-interface",
        "forward-pf",
        "portgroup",
        "dns-host",
        "dns-txt",
        "dns-srv",
    ];
    if !SECTIONS.contains(&section) {
        return Err(CmdError::msg(format!(
            "unrecognized section name '{section}'"
        )));
    }
    if section != "ip-dhcp-host" {
        return Err(fail(&format!(
            "Operation not supported: can't update '{section}' section of network '{}': only ip-dhcp-host can be updated",
            r.name
        )));
    }
    if a.flag("current") && (a.flag("live") || a.flag("config")) {
        return Err(CmdError::msg(
            "Options --current and --live are mutually exclusive",
        ));
    }
    let xml_arg = a.get("xml").unwrap_or_default();
    let xml = if xml_arg.starts_with('<') {
        xml_arg.to_string()
    } else {
        read_file(xml_arg)?
    };
    let parent_index = match a.get("parent-index") {
        Some(p) => Some(p.parse::<usize>().map_err(|_| {
            CmdError::msg(format!(
                "Numeric value '{p}' for <parent-index> option is malformed or out of range"
            ))
        })?),
        None => None,
    };
    let scope = UpdateScope {
        live: a.flag("live"),
        config: a.flag("config"),
    };
    nets.update_dhcp_host(&r.name, command, parent_index, &xml, scope)
        .map_err(|e| fail(&e))?;
    let msg = match (scope.config, scope.live) {
        (true, true) => "persistent config and live state",
        (true, false) => "persistent config",
        (false, true) => "live state",
        (false, false) if r.active => "live state",
        (false, false) => "persistent config",
    };
    ctl.print_extra(&format!("Updated network {} {msg}\n", r.name));
    Ok(())
}

pub const NET_DHCP_LEASES: Command = cmd(
    "net-dhcp-leases",
    Group::Network,
    "print lease info for a given network",
    "Print lease info for a given network",
    &[NETWORK, string("mac", "MAC address")],
    |ctl, a| {
        let (nets, r) = lookup(ctl, a)?;
        let leases = nets
            .leases(&r.name, a.get("mac"))
            .map_err(|e| CmdError::ctx(format!("Failed to get leases info for {}", r.name), e))?;
        let mut t = Table::new(&[
            "Expiry Time",
            "MAC address",
            "Protocol",
            "IP address",
            "Hostname",
            "Client ID or DUID",
        ]);
        for l in leases {
            t.row(vec![
                leases::format_time(l.expiry),
                l.mac.clone().unwrap_or_else(|| "-".into()),
                if l.ip.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
                format!("{}/{}", l.ip, l.prefix),
                l.hostname.clone().unwrap_or_else(|| "-".into()),
                l.client_id.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let quiet = ctl.quiet;
        ctl.print(&t.render(quiet));
        Ok(())
    },
);
