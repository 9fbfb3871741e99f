//! uri, version, hostname, nodeinfo, capabilities.

use super::cmd;
use crate::cli::format::key_value;
use crate::cli::spec::flag;
use crate::cli::{Command, Group};
use crate::host;

pub const URI: Command = cmd(
    "uri",
    Group::Host,
    "print the hypervisor canonical URI",
    "",
    &[],
    |ctl, _| {
        let uri = ctl.conn()?.uri().to_string();
        ctl.print(&format!("{uri}\n"));
        Ok(())
    },
);

pub const VERSION: Command = cmd(
    "version",
    Group::Host,
    "show version",
    "Display the system version information.",
    &[flag("daemon", "report daemon version too")],
    |ctl, a| {
        ctl.conn()?;
        let v = env!("CARGO_PKG_VERSION");
        let mut s = format!(
            "Compiled against library: ironvirt {v}\nUsing library: ironvirt {v}\nUsing API: QEMU {v}\nRunning hypervisor: ironvirt-vmm {v}\n"
        );
        if a.flag("daemon") {
            s.push_str(&format!("Running against daemon: ironvirt {v}\n"));
        }
        ctl.print(&s);
        Ok(())
    },
);

pub const HOSTNAME: Command = cmd(
    "hostname",
    Group::Host,
    "print the hypervisor hostname",
    "",
    &[],
    |ctl, _| {
        ctl.conn()?;
        ctl.print(&format!("{}\n", host::hostname()));
        Ok(())
    },
);

pub const NODEINFO: Command = cmd(
    "nodeinfo",
    Group::Host,
    "node information",
    "Returns basic information about the node.",
    &[],
    |ctl, _| {
        ctl.conn()?;
        let i = host::node_info();
        let mut s = String::new();
        for (k, v) in [
            ("CPU model", i.model.clone()),
            ("CPU(s)", i.cpus.to_string()),
            ("CPU frequency", format!("{} MHz", i.mhz)),
            ("CPU socket(s)", i.sockets.to_string()),
            ("Core(s) per socket", i.cores.to_string()),
            ("Thread(s) per core", i.threads.to_string()),
            ("NUMA cell(s)", i.nodes.to_string()),
            ("Memory size", format!("{} KiB", i.memory_kib)),
        ] {
            s.push_str(&key_value(k, &v, 20));
        }
        ctl.print(&s);
        Ok(())
    },
);

pub const CAPABILITIES: Command = cmd(
    "capabilities",
    Group::Host,
    "capabilities",
    "Returns capabilities of hypervisor/driver.",
    &[],
    |ctl, _| {
        ctl.conn()?;
        let vmm = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("ironvirt-vmm")))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/usr/bin/ironvirt-vmm".into());
        ctl.print(&host::capabilities(&vmm));
        Ok(())
    },
);
